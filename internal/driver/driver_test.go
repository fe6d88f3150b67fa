package driver_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/polyvisor/polyvisor/internal/driver"
	"github.com/polyvisor/polyvisor/internal/driver/container"
	"github.com/polyvisor/polyvisor/internal/guest"
	"github.com/polyvisor/polyvisor/pkg/api"
)

// stub is the least driver there is: a name and a type, and nothing it
// can do beyond the required methods.
type stub struct {
	name, typ string
	caps      api.Capabilities
}

func (s *stub) Name() string                                    { return s.name }
func (s *stub) Type() string                                    { return s.typ }
func (s *stub) Capabilities() api.Capabilities                  { return s.caps }
func (s *stub) Check(context.Context) api.ClassVerdict          { return api.ClassVerdict{Class: s.name} }
func (s *stub) Define(*guest.Definition, api.GuestCreate) error { return nil }
func (s *stub) View(_ *guest.Definition, g *api.Guest)          { g.Class = s.name }
func (s *stub) Recover(context.Context, *guest.Definition) error {
	return nil
}
func (s *stub) Create(context.Context, string, *guest.Definition) error { return nil }
func (s *stub) Start(context.Context, *guest.Definition) (guest.Status, error) {
	return guest.Status{}, nil
}
func (s *stub) Stop(context.Context, *guest.Definition, time.Duration) error { return nil }
func (s *stub) Cleanup(context.Context, *guest.Definition) (*api.Exit, error) {
	return nil, nil
}
func (s *stub) Delete(context.Context, *guest.Definition) error { return nil }

func TestRegistryFindsDriversByTypeAndName(t *testing.T) {
	reg := driver.NewRegistry()
	reg.Register(container.New(container.Options{}))
	if d, err := reg.ForType(guest.TypeContainer, ""); err != nil || d.Name() != "container" {
		t.Errorf("ForType(container) = %v, %v", d, err)
	}
	if _, err := reg.Get("container"); err != nil {
		t.Error(err)
	}
	if _, err := reg.ForType(guest.TypeVM, ""); !errors.Is(err, api.ErrNotAvailable) {
		t.Errorf("ForType(vm) = %v, want ErrNotAvailable", err)
	}
	if _, err := reg.Get("bochs"); !errors.Is(err, api.ErrNotAvailable) {
		t.Errorf("Get(bochs) = %v, want ErrNotAvailable", err)
	}
	if all := reg.All(); len(all) != 1 || reg.Types()[0] != "container" {
		t.Errorf("All() = %v, Types() = %v", all, reg.Types())
	}
}

// TestTwoDriversServeOneType: the first driver registered for a type is
// its default, engine picks another, and an engine that does not exist or
// serves another type is refused in one line naming engine and the
// engines there are.
func TestTwoDriversServeOneType(t *testing.T) {
	reg := driver.NewRegistry()
	qemu, bochs := &stub{name: "qemu", typ: guest.TypeVM}, &stub{name: "bochs", typ: guest.TypeVM}
	ctr := &stub{name: "container", typ: guest.TypeContainer}
	reg.Register(qemu)
	reg.Register(ctr)
	reg.Register(bochs)
	for _, c := range []struct {
		typ, engine string
		want        driver.Driver
	}{
		{guest.TypeVM, "", qemu},
		{guest.TypeVM, "qemu", qemu},
		{guest.TypeVM, "bochs", bochs},
		{guest.TypeContainer, "", ctr},
	} {
		if d, err := reg.ForType(c.typ, c.engine); err != nil || d != c.want {
			t.Errorf("ForType(%s, %q) = %v, %v; want %s", c.typ, c.engine, d, err, c.want.Name())
		}
	}
	if !reg.IsDefault(qemu) || reg.IsDefault(bochs) || !reg.IsDefault(ctr) {
		t.Errorf("defaults: qemu %v, bochs %v, container %v; want true, false, true", reg.IsDefault(qemu), reg.IsDefault(bochs), reg.IsDefault(ctr))
	}
	if got := strings.Join(reg.Engines(guest.TypeVM), ","); got != "bochs,qemu" {
		t.Errorf("Engines(vm) = %s, want bochs,qemu", got)
	}
	for _, engine := range []string{"uml", "container"} {
		_, err := reg.ForType(guest.TypeVM, engine)
		if !errors.Is(err, api.ErrInvalid) || !strings.Contains(err.Error(), `engine "`+engine+`"`) ||
			!strings.Contains(err.Error(), "bochs, qemu") || strings.Contains(err.Error(), "\n") {
			t.Errorf("ForType(vm, %s) = %v, want one line naming the engine and bochs, qemu", engine, err)
		}
	}
	if got := len(reg.All()); got != 3 || reg.All()[0].Name() != "bochs" {
		t.Errorf("All() = %d drivers, first %s; want 3, bochs first", got, reg.All()[0].Name())
	}
}

// TestCapabilitiesAgreeWithInterfaces: a driver that declares an ability
// it does not implement, or implements one it does not declare, is told.
func TestCapabilitiesAgreeWithInterfaces(t *testing.T) {
	if err := driver.CheckCapabilities(&stub{name: "plain"}); err != nil {
		t.Errorf("a driver declaring nothing: %v", err)
	}
	err := driver.CheckCapabilities(&stub{name: "boaster", caps: api.Capabilities{Snapshots: true, Export: true}})
	if err == nil || !strings.Contains(err.Error(), "snapshots declared true, implemented false") || !strings.Contains(err.Error(), "export declared true") {
		t.Errorf("a driver declaring what it lacks: %v", err)
	}
	if err := driver.CheckCapabilities(container.New(container.Options{})); err != nil {
		t.Error(err)
	}
}
