package evaluate

import (
	"errors"
	"testing"

	"github.com/polyvisor/polyvisor/internal/arch"
	"github.com/polyvisor/polyvisor/internal/evaluation/benchreport"
	"github.com/polyvisor/polyvisor/internal/template"
)

func TestEveryClassMakesItsOwnKindOfGuest(t *testing.T) {
	host := arch.Host().Debian
	cases := map[string]struct {
		typ, engine, isolation, template, tmplType, arch string
		slow                                             bool
	}{
		benchreport.Container:            {template.TypeContainer, "", "", "busybox", template.TypeContainer, host, false},
		benchreport.Chroot:               {template.TypeContainer, "", "chroot", "busybox", template.TypeContainer, host, false},
		benchreport.VM:                   {template.TypeVM, "", "", "busybox", template.TypeVM, host, false},
		benchreport.UML:                  {"uml", "", "", "busybox", template.TypeContainer, host, false},
		benchreport.Bochs:                {template.TypeVM, "bochs", "", "busybox-bios", template.TypeVM, host, true},
		benchreport.EmulationOf("s390x"): {template.TypeVM, "", "", "busybox", template.TypeVM, "s390x", false},
	}
	for class, want := range cases {
		s := specOf(class)
		if s.arch.Debian == "" {
			t.Errorf("%s: no arch", class)
		}
		if s.typ != want.typ || s.engine != want.engine || s.isolation != want.isolation || s.template != want.template ||
			s.tmplType != want.tmplType || s.arch.Debian != want.arch || s.slow != want.slow {
			t.Errorf("%s: %+v, want %+v", class, s, want)
		}
	}
	for _, class := range Classes {
		if s := specOf(class); s.arch.Debian == "" || s.verdict == "" {
			t.Errorf("class %s has no guest spec: %+v", class, s)
		}
	}
}

func TestASlowClassLivesOnceOnItsProbeGuest(t *testing.T) {
	ok := func() error { return nil }
	l := newSlowLife()
	if err := l.begin(ok, ok); err != nil {
		t.Fatal(err)
	}
	figs := l.end(ok, ok)
	if len(figs) != 4 {
		t.Fatalf("%d figures, want provision, boot, stop, delete", len(figs))
	}
	for _, f := range figs {
		if len(f.Runs) != 1 || f.Error != "" {
			t.Errorf("%s: runs %v error %q", f.Name, f.Runs, f.Error)
		}
	}
	// A boot that fails ends the life: no stop or delete is tried, and
	// each figure says why it has no value.
	l = newSlowLife()
	if err := l.begin(ok, func() error { return errors.New("no console prompt within 6m") }); err == nil {
		t.Fatal("a failed boot began a life")
	}
	figs = l.end(func() error { t.Error("stop tried after a failed boot"); return nil }, ok)
	if figs[0].Error != "" || len(figs[0].Runs) != 1 || figs[1].Error != "no console prompt within 6m" || figs[2].Error == "" || figs[3].Error == "" {
		t.Errorf("figures after a failed boot: %+v", figs)
	}
}
