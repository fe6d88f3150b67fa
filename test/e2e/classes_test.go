package e2e

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/polyvisor/polyvisor/internal/layout"
	"github.com/polyvisor/polyvisor/internal/template"
	"github.com/polyvisor/polyvisor/pkg/api"
)

// TestClassesListEveryDriverAndEngineChoosesOne: GET /1.0/classes lists
// every driver with its type, default and capabilities; --engine picks
// a driver of the guest's type, and one that is not refuses in one line;
// host check shows what each class can do.
func TestClassesListEveryDriverAndEngineChoosesOne(t *testing.T) {
	requireRoot(t)
	d := env.main
	classes, err := d.Client().Classes(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]api.Class{}
	for _, c := range classes {
		byName[c.Name] = c
	}
	ctr, vm, uml, bochs := byName["container"], byName["qemu"], byName["uml"], byName["bochs"]
	if len(classes) != 4 || ctr.Type != "container" || !ctr.Default || vm.Type != "vm" || !vm.Default ||
		uml.Type != "uml" || !uml.Default || bochs.Type != "vm" || bochs.Default {
		t.Fatalf("classes: %+v", classes)
	}
	if c := ctr.Capabilities; !c.CopyRunning || !c.Privileged || !slices.Contains(c.Arches, template.HostArch()) || !slices.Equal(c.ExportFormats, []string{"tar"}) {
		t.Errorf("container capabilities: %+v", c)
	}
	if c := vm.Capabilities; c.CopyRunning || !c.Snapshots || !slices.Contains(c.ExportFormats, "ova") || !slices.Contains(c.Arches, template.HostArch()) {
		t.Errorf("qemu capabilities: %+v", c)
	}
	if ctr.Verdict.Class != "container" || !ctr.Verdict.Works {
		t.Errorf("container verdict: %+v", ctr.Verdict)
	}
	expectError(t, d, `engine "qemu": no such engine for type container; use one of container`, "launch", "busybox", "e2e-x", "--engine", "qemu")
	expectError(t, d, `engine "uml": no such engine for type vm; use one of bochs, qemu`, "create", "busybox", "e2e-x", "--type", "vm", "--engine", "uml")
	if g := launch(t, d, "busybox", "e2e-engine", "--engine", "container"); g.Driver != "container" || g.Class != "container" || g.State != api.StateRunning {
		t.Errorf("launched with --engine container: driver %q, class %q, state %s", g.Driver, g.Class, g.State)
	}
	table := d.Must(t, "host", "check")
	if !regexp.MustCompile(`(?m)^container\s+\S+\s+tar\s+exec, console, .*copy running`).MatchString(table) {
		t.Errorf("host check shows no capabilities of the container class:\n%s", table)
	}
}

// TestAGuestIsRecoveredFromItsHandle: after a daemon restart, a guest
// whose definition predates handles (a handle version, no handle) is
// adopted as before; one whose handle is of a version this polyvisor does
// not know is refused with its version named, and left running.
func TestAGuestIsRecoveredFromItsHandle(t *testing.T) {
	requireRoot(t)
	d := ownDaemon(t)
	d.Must(t, "launch", "busybox", "legacy")
	d.Must(t, "launch", "busybox", "future")
	future := info(t, d, "future")
	l := layout.New(d.StateDir)
	d.Kill()
	edit := func(name string, fn func(string) string) {
		path := filepath.Join(l.GuestDir(name), "guest.yaml")
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(data), "handle: ") {
			t.Fatalf("%s's guest.yaml has no handle:\n%s", name, data)
		}
		if err := os.WriteFile(path, []byte(fn(string(data))), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	edit("legacy", func(s string) string { return regexp.MustCompile(`(?m)^\s*handle: .*\n`).ReplaceAllString(s, "") })
	edit("future", func(s string) string {
		return regexp.MustCompile(`(?m)handleVersion: \d+$`).ReplaceAllString(s, "handleVersion: 99")
	})
	if err := d.Restart(); err != nil {
		t.Fatal(err)
	}
	if out := d.Must(t, "exec", "legacy", "--", "echo", "adopted"); out != "adopted\n" {
		t.Errorf("exec into the guest without a handle: %q", out)
	}
	if g := info(t, d, "future"); g.State != api.StateRunning || g.PID != future.PID || !alive(future.PID) {
		t.Errorf("the guest of an unknown handle version after restart: %+v (pid before %d)", g, future.PID)
	}
	if !strings.Contains(d.Log(), "handle version 99") {
		t.Errorf("the daemon's log does not name the unknown handle version:\n%s", d.Log())
	}
	d.Must(t, "stop", "legacy", "--force")
	d.Must(t, "stop", "future", "--force")
	if alive(future.PID) {
		t.Error("stop of the guest of an unknown handle left its init running")
	}
}
