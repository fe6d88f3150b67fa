// Package drivertest is the conformance suite every guest driver passes:
// the lifecycle the daemon relies on, run against the real driver. A new
// class adds one test that calls Run with its fixture.
package drivertest

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/polyvisor/polyvisor/internal/driver"
	"github.com/polyvisor/polyvisor/internal/guest"
	"github.com/polyvisor/polyvisor/internal/procutil"
	"github.com/polyvisor/polyvisor/pkg/api"
)

// Fixture is what the suite needs from a driver's test.
type Fixture struct {
	Driver driver.Driver
	// Definition returns a valid, not yet created definition named name,
	// whose template exists.
	Definition func(name string) *guest.Definition
	// GuestDir is where the daemon keeps the named guest's directory.
	GuestDir func(name string) string
	// Restart returns a new driver over the same host state, as a
	// restarted daemon makes; the suite adopts and sweeps through it.
	Restart func() driver.Driver
	// RootDisk, when set, is the root disk size the abilities' guest asks
	// for (as launch --disk does), so that a class whose disk grows only
	// when it has a size (a container's quota) can show its resize.
	RootDisk guest.Size
	// HostObjects, when set, lists what the driver holds on the host for
	// a running guest outside its directory (runtime state, run dir,
	// cgroup): paths that exist while it runs and are gone once it is
	// cleaned up or swept. Mounts in the guest's directory are checked
	// without it. A driver with no host objects leaves it nil.
	HostObjects func(name string) []string
}

func (f Fixture) hostObjects(def *guest.Definition) []string {
	if f.HostObjects == nil {
		return nil
	}
	return f.HostObjects(def.Name)
}

// Run runs the conformance suite.
func Run(t *testing.T, f Fixture) {
	t.Run("Check", func(t *testing.T) { testCheck(t, f) })
	t.Run("Lifecycle", func(t *testing.T) { testLifecycle(t, f) })
	t.Run("StopEscalatesToKill", func(t *testing.T) { testStopKills(t, f) })
	t.Run("EndedGuestIsReleased", func(t *testing.T) { testEndedGuest(t, f) })
	t.Run("Abilities", func(t *testing.T) { runAbilities(t, f) })
}

func testCheck(t *testing.T, f Fixture) {
	v := f.Driver.Check(context.Background())
	if v.Class != f.Driver.Name() || v.Reason == "" || v.Duration == "" {
		t.Errorf("Check() = %+v: want the class, a reason and a duration", v)
	}
	if !v.Works {
		t.Fatalf("the class does not work on this host: %s", v.Reason)
	}
}

// create makes the guest as the daemon does (staging dir, then rename) and
// registers its removal.
func create(t *testing.T, f Fixture, name string) *guest.Definition {
	t.Helper()
	return createDef(t, f, f.Definition(name))
}

// createDef is create for a definition the test has changed.
func createDef(t *testing.T, f Fixture, def *guest.Definition) *guest.Definition {
	t.Helper()
	ctx := context.Background()
	dir := f.GuestDir(def.Name)
	staging := dir + ".staging"
	if err := os.MkdirAll(staging, 0o711); err != nil {
		t.Fatal(err)
	}
	if err := f.Driver.Create(ctx, staging, def); err != nil {
		os.RemoveAll(staging)
		t.Fatalf("Create: %v", err)
	}
	if err := os.Rename(staging, dir); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { removeGuest(t, f, def) })
	return def
}

// removeGuest stops and deletes a guest made by createDef, as the daemon
// does.
func removeGuest(t *testing.T, f Fixture, def *guest.Definition) {
	ctx := context.Background()
	f.Driver.Stop(ctx, def, 0)
	f.Driver.Cleanup(ctx, def)
	if err := f.Driver.Delete(ctx, def); err != nil {
		t.Errorf("Delete: %v", err)
	}
	os.RemoveAll(f.GuestDir(def.Name))
}

// start boots the guest and records its status in def, as the daemon does.
func start(t *testing.T, f Fixture, def *guest.Definition) procutil.Identity {
	t.Helper()
	status, err := f.Driver.Start(context.Background(), def)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	def.Status = status
	init := procutil.Identity{PID: status.InitPID, Start: status.InitStart}
	if status.State != api.StateRunning || !init.Alive() || status.HandleVersion == 0 {
		t.Fatalf("after Start: status %+v, init alive %v", status, init.Alive())
	}
	return init
}

func testLifecycle(t *testing.T, f Fixture) {
	ctx := context.Background()
	def := create(t, f, "conf-life")
	if len(def.Disks) == 0 {
		t.Error("Create recorded no disks")
	}
	init := start(t, f, def)
	if execer, ok := f.Driver.(driver.Execer); ok {
		var out strings.Builder
		code, err := execer.Exec(ctx, def, api.ExecRequest{Command: []string{"sh", "-c", "echo conformance; exit 4"}}, driver.Stdio{Stdout: &out, Stderr: &out})
		if err != nil || code != 4 || out.String() != "conformance\n" {
			t.Errorf("Exec: code %d, err %v, output %q", code, err, out.String())
		}
	}
	if err := f.Driver.Stop(ctx, def, 20*time.Second); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if init.Alive() {
		t.Fatal("init alive after Stop")
	}
	if _, err := f.Driver.Cleanup(ctx, def); err != nil {
		t.Errorf("Cleanup: %v", err)
	}
	if _, err := f.Driver.Cleanup(ctx, def); err != nil {
		t.Errorf("second Cleanup (must be idempotent): %v", err)
	}
	again := start(t, f, def)
	if again == init {
		t.Error("a restarted guest has the same process identity")
	}
	if execer, ok := f.Driver.(driver.Execer); ok {
		f.Driver.Stop(ctx, def, 0)
		f.Driver.Cleanup(ctx, def)
		var out strings.Builder
		_, err := execer.Exec(ctx, def, api.ExecRequest{Command: []string{"true"}}, driver.Stdio{Stdout: &out, Stderr: &out})
		if !errors.Is(err, api.ErrNotRunning) {
			t.Errorf("Exec on a stopped guest: %v, want ErrNotRunning", err)
		}
	}
}

func testStopKills(t *testing.T, f Fixture) {
	ctx := context.Background()
	def := create(t, f, "conf-kill")
	init := start(t, f, def)
	began := time.Now()
	if err := f.Driver.Stop(ctx, def, 0); err != nil {
		t.Fatalf("Stop with no grace: %v", err)
	}
	if init.Alive() || time.Since(began) > 15*time.Second {
		t.Errorf("Stop with no grace: init alive %v after %v", init.Alive(), time.Since(began))
	}
	exit, err := f.Driver.Cleanup(ctx, def)
	if err != nil {
		t.Fatalf("Cleanup: %v", err)
	}
	if exit == nil || exit.ExitedAt.IsZero() {
		t.Errorf("Cleanup reported no exit record: %+v", exit)
	}
}

func testEndedGuest(t *testing.T, f Fixture) {
	ctx := context.Background()
	def := create(t, f, "conf-ended")
	init := start(t, f, def)
	// The guest ends on its own (here: killed from outside).
	if err := init.Signal(9); err != nil {
		t.Fatal(err)
	}
	waitCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := init.Wait(waitCtx); err != nil {
		t.Fatal(err)
	}
	exit, err := f.Driver.Cleanup(ctx, def)
	if err != nil {
		t.Fatalf("Cleanup of an ended guest: %v", err)
	}
	if exit == nil || exit.Signal != 9 {
		t.Errorf("exit record %+v, want signal 9", exit)
	}
	// Whatever the driver made at start is gone: nothing mounted in the guest dir.
	mounts, _ := os.ReadFile("/proc/self/mountinfo")
	if strings.Contains(string(mounts), filepath.Clean(f.GuestDir(def.Name))+"/") {
		t.Error("something is still mounted in the guest's directory after Cleanup")
	}
}
