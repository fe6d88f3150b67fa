package fake

import (
	"context"
	"errors"
	"strings"

	"path/filepath"
	"testing"
	"time"

	"github.com/polyvisor/polyvisor/internal/driver"

	"github.com/polyvisor/polyvisor/internal/driver/drivertest"
	"github.com/polyvisor/polyvisor/internal/guest"
	"github.com/polyvisor/polyvisor/pkg/api"
)

// The fake passes the conformance suite every driver passes, without root.
func TestConformance(t *testing.T) {
	host := NewHost()
	t.Cleanup(host.Close)
	d := New(Options{Host: host})
	dir := t.TempDir()
	drivertest.Run(t, drivertest.Fixture{
		Driver:   d,
		Restart:  func() driver.Driver { return New(Options{Host: host}) },
		RootDisk: 1 << 30,
		Definition: func(name string) *guest.Definition {
			return &guest.Definition{
				SchemaVersion: guest.SchemaVersion, Name: name, Type: guest.TypeContainer, Class: Name,
				Template: "busybox", CPUs: 1, Memory: 64 << 20, Processes: 10, Rootfs: guest.RootfsOverlay,
				Disks:  []guest.Disk{{Name: "root", Size: 1 << 30}},
				Status: guest.Status{State: api.StateStopped},
			}
		},
		GuestDir: func(name string) string { return filepath.Join(dir, name) },
	})
}

// What the fake declares is what it implements.
func TestCapabilitiesAgreeWithInterfaces(t *testing.T) {
	if err := driver.CheckCapabilities(New(Options{})); err != nil {
		t.Error(err)
	}
}

// A driver made over the host of another (a daemon restart) recovers its
// running guests; one whose handle has another version is refused.
func TestRecoverAfterARestart(t *testing.T) {
	host := NewHost()
	t.Cleanup(host.Close)
	first := New(Options{Host: host})
	def := &guest.Definition{Name: "web", Disks: []guest.Disk{{Name: "root", Size: 1 << 30}}}
	if err := first.Create(t.Context(), t.TempDir(), def); err != nil {
		t.Fatal(err)
	}
	status, err := first.Start(t.Context(), def)
	if err != nil {
		t.Fatal(err)
	}
	def.Status = status
	second := New(Options{Host: host})
	if err := second.Recover(t.Context(), def); err != nil {
		t.Errorf("recover after a restart: %v", err)
	}
	old := *def
	old.Status.HandleVersion = HandleVersion + 1
	if err := second.Recover(t.Context(), &old); err == nil {
		t.Error("a handle of an unknown version was recovered")
	}
	if err := second.Stop(t.Context(), def, time.Second); err != nil {
		t.Fatal(err)
	}
	if exit, err := second.Cleanup(t.Context(), def); err != nil || exit == nil {
		t.Errorf("cleanup after stop: %+v, %v", exit, err)
	}
}

// A failure injected into a method is returned until cleared; a held call
// waits for its release.
func TestInjectedFailuresAndHolds(t *testing.T) {
	d := New(Options{Fail: map[string]error{"Create": api.ErrInvalid}})
	t.Cleanup(d.Close)
	def := &guest.Definition{Name: "web"}
	if err := d.Create(t.Context(), t.TempDir(), def); err == nil {
		t.Fatal("the injected failure was not returned")
	}
	d.SetFail("Create", nil)
	gate := d.Hold("Create")
	done := make(chan error, 1)
	go func() { done <- d.Create(t.Context(), t.TempDir(), def) }()
	<-gate.Entered()
	select {
	case <-done:
		t.Fatal("a held call went on before its release")
	case <-time.After(50 * time.Millisecond):
	}
	gate.Release()
	if err := <-done; err != nil || !d.Has("web") {
		t.Errorf("released call: %v, guest kept %v", err, d.Has("web"))
	}
}

// The fake's shell runs what conformance scripts ask of a guest.
func TestShell(t *testing.T) {
	st := &state{files: map[string]string{}, disks: map[string]guest.Size{"root": 1 << 30}}
	for _, tc := range []struct {
		script string
		code   int
		out    string
	}{
		{"echo conformance; exit 4", 4, "conformance\n"},
		{"echo one > /pv-mark && sync", 0, ""},
		{"cat /pv-mark", 0, "one\n"},
		{"cat /nope && echo not-reached", 1, ""},
		{"df -Pk / | tail -n 1", 0, "fake 1048576 0 1048576 0% /\n"},
		{"rm -rf /", 127, ""},
	} {
		var out, errOut strings.Builder
		code := st.sh(tc.script, driver.Stdio{Stdout: &out, Stderr: &errOut})
		if code != tc.code || out.String() != tc.out {
			t.Errorf("sh -c %q: code %d, output %q (stderr %q), want %d %q", tc.script, code, out.String(), errOut.String(), tc.code, tc.out)
		}
	}
}

// A delayed method waits its delay, and gives up when its context ends.
func TestDelayHonoursTheContext(t *testing.T) {
	d := New(Options{Delay: map[string]time.Duration{"Create": time.Hour}})
	t.Cleanup(d.Close)
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	if err := d.Create(ctx, t.TempDir(), &guest.Definition{Name: "web"}); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("delayed Create: %v, want the context's deadline", err)
	}
	if d.Has("web") {
		t.Error("a Create that gave up recorded the guest")
	}
}
