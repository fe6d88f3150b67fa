package drivertest

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/polyvisor/polyvisor/internal/driver"
	"github.com/polyvisor/polyvisor/internal/guest"
	"github.com/polyvisor/polyvisor/internal/idmap"
	"github.com/polyvisor/polyvisor/internal/procutil"
	"github.com/polyvisor/polyvisor/pkg/api"
)

// The optional abilities run on one guest (and one copy of it) that the
// subtests share, as boots are what the suite's time goes to (a TCG VM
// takes seconds each). Each subtest brings the guest to the state it
// needs, so a failure in one does not cascade into the next.

// Names of the optional abilities, as the suite reports them.
const (
	abilitySnapshots = "snapshots"
	abilityCopy      = "copy"
	abilityResize    = "disk resize"
	abilityTreeRead  = "tree read"
	abilitySweep     = "sweep"
	abilityExec      = "exec"
)

// declared says whether d's Capabilities declare ability, and whether
// they speak of it at all (sweeping is not a capability users see).
func declared(d driver.Driver, ability string) (has, known bool) {
	c := d.Capabilities()
	switch ability {
	case abilitySnapshots:
		return c.Snapshots, true
	case abilityCopy:
		return c.Copy, true
	case abilityResize:
		return c.DiskResize, true
	case abilityTreeRead:
		return c.TreeRead, true
	case abilityExec:
		return c.Exec, true
	}
	return false, false
}

// implements checks that d's declaration of ability agrees with what it
// implements (ok, from a type assertion), and says whether to go on.
func implements(t *testing.T, d driver.Driver, ability string, ok bool) bool {
	t.Helper()
	if has, known := declared(d, ability); known && has != ok {
		t.Errorf("%s: the driver declares %v but implements %v", ability, has, ok)
	}
	if !ok {
		t.Logf("%s: the driver does not implement it; nothing more to check", ability)
	}
	return ok
}

// adopt takes over a live guest as a restarted daemon does.
func adopt(ctx context.Context, d driver.Driver, def *guest.Definition) error {
	return d.Recover(ctx, def)
}

// shared is the guest the abilities' subtests share, and its copy.
type shared struct {
	f    Fixture
	def  *guest.Definition
	copy *guest.Definition // made by the Copy subtest; nil before
	// mark is what the guest's /pv-mark holds (exec drivers only).
	mark string
}

const markFile = "pv-mark"

func runAbilities(t *testing.T, f Fixture) {
	def := f.Definition("conf-abil")
	if f.RootDisk > 0 {
		def.Disks = []guest.Disk{{Name: "root", Size: f.RootDisk}}
	}
	s := &shared{f: f, def: createDef(t, f, def)}
	// The copy lives until the suite ends: the restart subtest uses it.
	t.Cleanup(func() {
		if s.copy != nil {
			removeGuest(t, f, s.copy)
		}
	})
	s.ensureRunning(t)
	s.setMark(t, "first")
	t.Run("Snapshots", s.testSnapshots)
	t.Run("DiskResize", s.testResize)
	t.Run("Copy", s.testCopy)
	t.Run("TreeRead", s.testTreeRead)
	t.Run("SweepAndAdoptAfterRestart", s.testRestart)
}

// ensureRunning starts the shared guest if it does not run.
func (s *shared) ensureRunning(t *testing.T) {
	t.Helper()
	if !initOf(s.def).Alive() {
		start(t, s.f, s.def)
	}
}

// ensureStopped stops the shared guest and releases what it held.
func (s *shared) ensureStopped(t *testing.T) {
	t.Helper()
	stopAndClean(t, s.f.Driver, s.def)
}

func stopAndClean(t *testing.T, d driver.Driver, def *guest.Definition) {
	t.Helper()
	ctx := context.Background()
	if err := d.Stop(ctx, def, 20*time.Second); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if _, err := d.Cleanup(ctx, def); err != nil {
		t.Fatalf("Cleanup: %v", err)
	}
	def.Status = guest.Status{State: api.StateStopped, LastExit: def.Status.LastExit}
}

func initOf(def *guest.Definition) procutil.Identity {
	return procutil.Identity{PID: def.Status.InitPID, Start: def.Status.InitStart}
}

// sh runs script in the running guest through d; ok is false when d does
// not exec, and then nothing ran.
func sh(t *testing.T, d driver.Driver, def *guest.Definition, script string) (out string, ok bool) {
	t.Helper()
	execer, ok := d.(driver.Execer)
	if !ok {
		return "", false
	}
	var b, e strings.Builder
	code, err := execer.Exec(context.Background(), def, api.ExecRequest{Command: []string{"sh", "-c", script}}, driver.Stdio{Stdout: &b, Stderr: &e})
	if err != nil || code != 0 {
		t.Fatalf("exec %q in %s: code %d, err %v, stderr %q", script, def.Name, code, err, e.String())
	}
	return b.String(), true
}

// setMark writes /pv-mark in the running guest.
func (s *shared) setMark(t *testing.T, mark string) {
	t.Helper()
	if _, ok := sh(t, s.f.Driver, s.def, "echo "+mark+" > /"+markFile+" && sync"); ok {
		s.mark = mark
	}
}

// checkMark checks that def's running guest holds want in /pv-mark.
func checkMark(t *testing.T, d driver.Driver, def *guest.Definition, want string) {
	t.Helper()
	if want == "" {
		return
	}
	if got, ok := sh(t, d, def, "cat /"+markFile); ok && got != want+"\n" {
		t.Errorf("%s's /%s holds %q, want %q", def.Name, markFile, got, want+"\n")
	}
}

// snapshotDir is where the daemon keeps a guest's snapshot.
func (s *shared) snapshotDir(t *testing.T, def *guest.Definition, snap string) string {
	t.Helper()
	dir := filepath.Join(s.f.GuestDir(def.Name), "snapshots", snap)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	return dir
}

// testSnapshots takes snapshots of the running and the stopped guest,
// restores one when stopped (and is refused while running), deletes one,
// and checks that a failed snapshot leaves nothing.
func (s *shared) testSnapshots(t *testing.T) {
	d := s.f.Driver
	snap, ok := d.(driver.Snapshotter)
	if !implements(t, d, abilitySnapshots, ok) {
		return
	}
	ctx := context.Background()
	s.ensureRunning(t)
	before := s.mark

	// A failure (here: the request is cancelled) leaves nothing of the
	// snapshot and the guest running as before (not paused or frozen).
	failed := s.snapshotDir(t, s.def, "broken")
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := snap.CreateSnapshot(cancelled, s.def, "broken", failed); err == nil {
		t.Error("CreateSnapshot with a cancelled context succeeded")
	}
	checkNothingOf(t, snap, s.def, "broken", failed)
	checkMark(t, d, s.def, before)

	live := s.snapshotDir(t, s.def, "live")
	info, err := snap.CreateSnapshot(ctx, s.def, "live", live)
	if err != nil {
		t.Fatalf("CreateSnapshot of the running guest: %v", err)
	}
	if info.Kind == "" {
		t.Errorf("CreateSnapshot of the running guest: info %+v has no kind", info)
	}
	checkMark(t, d, s.def, before) // it runs on
	s.setMark(t, "after-live")

	s.ensureStopped(t)
	cold := s.snapshotDir(t, s.def, "cold")
	if _, err := snap.CreateSnapshot(ctx, s.def, "cold", cold); err != nil {
		t.Fatalf("CreateSnapshot of the stopped guest: %v", err)
	}
	if _, err := snap.CreateSnapshot(cancelled, s.def, "broken", failed); err == nil {
		t.Error("CreateSnapshot of the stopped guest with a cancelled context succeeded")
	}
	checkNothingOf(t, snap, s.def, "broken", failed)

	if err := snap.RestoreSnapshot(ctx, s.def, "live", live); err != nil {
		t.Fatalf("RestoreSnapshot of the stopped guest: %v", err)
	}
	if err := snap.DeleteSnapshot(ctx, s.def, "cold", cold); err != nil {
		t.Fatalf("DeleteSnapshot: %v", err)
	}
	os.RemoveAll(cold) // the daemon's part
	if err := snap.RestoreSnapshot(ctx, s.def, "cold", cold); !errors.Is(err, api.ErrNotFound) {
		t.Errorf("RestoreSnapshot of a deleted snapshot: %v, want ErrNotFound", err)
	}

	s.ensureRunning(t)
	s.mark = before
	checkMark(t, d, s.def, before) // what the guest held when "live" was taken
	if err := snap.RestoreSnapshot(ctx, s.def, "live", live); !errors.Is(err, api.ErrConflict) {
		t.Errorf("RestoreSnapshot of the running guest: %v, want ErrConflict", err)
	}
	checkMark(t, d, s.def, before)
}

// checkNothingOf checks that a failed snapshot left nothing: its
// directory is empty and, the guest stopped, nothing is there to restore.
func checkNothingOf(t *testing.T, snap driver.Snapshotter, def *guest.Definition, name, dir string) {
	t.Helper()
	if entries, err := os.ReadDir(dir); err != nil || len(entries) > 0 {
		t.Errorf("a failed snapshot left %v in its directory (%v)", entries, err)
	}
	if initOf(def).Alive() {
		return // a running guest's restore is refused whatever is there
	}
	if err := snap.RestoreSnapshot(context.Background(), def, name, dir); !errors.Is(err, api.ErrNotFound) {
		t.Errorf("RestoreSnapshot of a failed snapshot: %v, want ErrNotFound", err)
	}
}

// rootKiB is the size of the running guest's root file system, as the
// guest sees it; 0 when the driver does not exec.
func rootKiB(t *testing.T, d driver.Driver, def *guest.Definition) int64 {
	t.Helper()
	out, ok := sh(t, d, def, "df -Pk / | tail -n 1")
	if !ok {
		return 0
	}
	fields := strings.Fields(out)
	if len(fields) < 2 {
		t.Fatalf("df -Pk /: %q", out)
	}
	kib, err := strconv.ParseInt(fields[1], 10, 64)
	if err != nil {
		t.Fatalf("df -Pk /: %q: %v", out, err)
	}
	return kib
}

// testResize grows the running guest's root disk and sees the guest's
// file system grow (now or at its next start, as the driver says), then
// checks that the stopped guest's disk does not shrink.
func (s *shared) testResize(t *testing.T) {
	d := s.f.Driver
	resizer, ok := d.(driver.DiskResizer)
	if !implements(t, d, abilityResize, ok) {
		return
	}
	ctx := context.Background()
	s.ensureRunning(t)
	disk, ok := s.def.Disk("root")
	if !ok || disk.Size == 0 {
		t.Fatalf("the guest's root disk has no size to grow (%+v); give the fixture a RootDisk", s.def.Disks)
	}
	was := disk.Size
	before := rootKiB(t, d, s.def)
	disk.Size += 64 << 20
	applied, err := resizer.ResizeDisk(ctx, s.def, "root")
	if err != nil {
		t.Fatalf("ResizeDisk of the running guest: %v", err)
	}
	switch applied {
	case "live":
	case "next-start":
		s.ensureStopped(t)
		s.ensureRunning(t)
	default:
		t.Fatalf("ResizeDisk said %q, want live or next-start", applied)
	}
	if after := rootKiB(t, d, s.def); after <= before {
		t.Errorf("root file system of %d KiB after growing the disk by 64 MiB (%s), %d before", after, applied, before)
	}
	checkMark(t, d, s.def, s.mark)

	s.ensureStopped(t)
	grown := disk.Size
	disk.Size = was
	if _, err := resizer.ResizeDisk(ctx, s.def, "root"); err == nil {
		t.Error("ResizeDisk shrank the stopped guest's disk")
	}
	disk.Size = grown
}

// testCopy copies the guest (running, where the class copies running
// guests) and checks that the copy holds its files and none of its
// snapshots. The copy stays running: the restart subtest crashes it.
func (s *shared) testCopy(t *testing.T) {
	d := s.f.Driver
	copier, ok := d.(driver.Copier)
	if !implements(t, d, abilityCopy, ok) {
		return
	}
	ctx := context.Background()
	s.ensureRunning(t)
	def := s.f.Definition("conf-copy")
	def.Disks = nil
	dir := s.f.GuestDir(def.Name)
	staging := dir + ".staging"
	if err := os.MkdirAll(staging, 0o711); err != nil {
		t.Fatal(err)
	}
	err := copier.Copy(ctx, s.def, staging, def)
	if err == nil && !d.Capabilities().CopyRunning {
		t.Errorf("Copy copied a running source, but the driver declares it cannot (CopyRunning false)")
	}
	if errors.Is(err, api.ErrConflict) {
		// A class that cannot copy a running guest refuses it, and
		// says so in its capabilities.
		if d.Capabilities().CopyRunning {
			t.Errorf("Copy refused a running source, but the driver declares CopyRunning: %v", err)
		}
		t.Logf("Copy refuses a running source: %v", err)
		os.RemoveAll(staging)
		if err := os.MkdirAll(staging, 0o711); err != nil {
			t.Fatal(err)
		}
		s.ensureStopped(t)
		err = copier.Copy(ctx, s.def, staging, def)
	}
	if err != nil {
		os.RemoveAll(staging)
		t.Fatalf("Copy: %v", err)
	}
	if err := os.Rename(staging, dir); err != nil {
		t.Fatal(err)
	}
	s.copy = def
	if len(def.Disks) == 0 {
		t.Error("Copy recorded no disks in the copy's definition")
	}
	if snap, ok := d.(driver.Snapshotter); ok {
		// The copy has none of the source's snapshots: "live" is not there.
		if err := snap.RestoreSnapshot(ctx, def, "live", s.snapshotDir(t, def, "live")); !errors.Is(err, api.ErrNotFound) {
			t.Errorf("RestoreSnapshot of the source's snapshot on the copy: %v, want ErrNotFound", err)
		}
		os.RemoveAll(filepath.Join(dir, "snapshots"))
	}
	start(t, s.f, def)
	checkMark(t, d, def, s.mark)
}

// testTreeRead reads the stopped guest's tree: it holds the guest's
// files, seen with the guest's ids; a running guest's is refused.
func (s *shared) testTreeRead(t *testing.T) {
	d := s.f.Driver
	reader, ok := d.(driver.TreeReader)
	if !implements(t, d, abilityTreeRead, ok) {
		return
	}
	ctx := context.Background()
	s.ensureStopped(t)
	called := false
	err := reader.ReadRootTree(ctx, s.def, func(root string, toGuest idmap.ShiftFunc) error {
		called = true
		r, err := os.OpenRoot(root)
		if err != nil {
			return err
		}
		defer r.Close()
		if s.mark != "" {
			data, err := r.ReadFile(markFile)
			if err != nil {
				return err
			}
			if string(data) != s.mark+"\n" {
				t.Errorf("the lent tree's /%s holds %q, want %q", markFile, data, s.mark+"\n")
			}
		}
		fi, err := r.Stat(".")
		if err != nil {
			return err
		}
		st := fi.Sys().(*syscall.Stat_t)
		uid := st.Uid
		if toGuest != nil {
			if uid, _, err = toGuest(st.Uid, st.Gid); err != nil {
				return err
			}
		}
		if uid != 0 {
			t.Errorf("the lent tree's root is owned by %d as the guest sees it, want 0", uid)
		}
		return nil
	})
	if err != nil || !called {
		t.Fatalf("ReadRootTree of the stopped guest: %v (fn called: %v)", err, called)
	}
	if mounted := mountsUnder(s.f.GuestDir(s.def.Name)); len(mounted) > 0 {
		t.Errorf("ReadRootTree left mounts: %v", mounted)
	}
	s.ensureRunning(t)
	err = reader.ReadRootTree(ctx, s.def, func(string, idmap.ShiftFunc) error { return nil })
	if !errors.Is(err, api.ErrConflict) {
		t.Errorf("ReadRootTree of the running guest: %v, want ErrConflict", err)
	}
}

// mountsUnder lists the mount points in dir.
func mountsUnder(dir string) []string {
	data, _ := os.ReadFile("/proc/self/mountinfo")
	prefix := filepath.Clean(dir) + "/"
	var points []string
	for _, line := range strings.Split(string(data), "\n") {
		fields := strings.Fields(line)
		if len(fields) > 4 && strings.HasPrefix(fields[4], prefix) {
			points = append(points, fields[4])
		}
	}
	return points
}

// testRestart plays a daemon restart: the old driver instance is dropped
// and a guest (the copy, or one of its own) ends while no daemon watches,
// killed with its monitor so nothing releases what it held. A new driver
// instance over the same state sweeps what the ended guest left and
// leaves the running guest's things alone, adopts the running guest,
// execs in it, and stops and cleans it up.
func (s *shared) testRestart(t *testing.T) {
	if s.f.Restart == nil {
		t.Fatal("the fixture has no Restart: give one that makes a new driver over the same state, as a restarted daemon does")
	}
	ctx := context.Background()
	s.ensureRunning(t)
	crashed := s.copy
	if crashed == nil {
		crashed = create(t, s.f, "conf-crash")
	}
	if !initOf(crashed).Alive() {
		start(t, s.f, crashed)
	}
	liveDir, crashedDir := s.f.GuestDir(s.def.Name), s.f.GuestDir(crashed.Name)
	liveObjects, crashedObjects := s.f.hostObjects(s.def), s.f.hostObjects(crashed)
	for _, p := range append(append([]string{}, liveObjects...), crashedObjects...) {
		if _, err := os.Lstat(p); err != nil {
			t.Fatalf("HostObjects lists %s, which a running guest does not have: %v", p, err)
		}
	}
	liveMounts := mountsUnder(liveDir)

	kill(t, procutil.Identity{PID: crashed.Status.MonitorPID, Start: crashed.Status.MonitorStart})
	kill(t, initOf(crashed))

	d := s.f.Restart()
	if sweeper, ok := d.(driver.Sweeper); implements(t, d, abilitySweep, ok) {
		if err := sweeper.Sweep(ctx, map[string]bool{s.def.Name: true}); err != nil {
			t.Errorf("Sweep: %v", err)
		}
		if m := mountsUnder(crashedDir); len(m) > 0 {
			t.Errorf("Sweep left the ended guest's mounts: %v", m)
		}
		for _, p := range crashedObjects {
			if _, err := os.Lstat(p); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("Sweep left the ended guest's %s (%v)", p, err)
			}
		}
		for _, p := range liveObjects {
			if _, err := os.Lstat(p); err != nil {
				t.Errorf("Sweep took the running guest's %s: %v", p, err)
			}
		}
		if m := mountsUnder(liveDir); strings.Join(m, " ") != strings.Join(liveMounts, " ") {
			t.Errorf("Sweep changed the running guest's mounts: %v, were %v", m, liveMounts)
		}
	}
	if _, err := d.Cleanup(ctx, crashed); err != nil {
		t.Errorf("Cleanup of the ended guest by the new driver: %v", err)
	}
	crashed.Status = guest.Status{State: api.StateStopped}

	if err := adopt(ctx, d, s.def); err != nil {
		t.Fatalf("adopt the running guest: %v", err)
	}
	if !initOf(s.def).Alive() {
		t.Fatal("the running guest died on adoption")
	}
	if _, ok := d.(driver.Execer); implements(t, d, abilityExec, ok) {
		sh(t, d, s.def, "true")
		checkMark(t, d, s.def, s.mark)
	}
	init := initOf(s.def)
	stopAndClean(t, d, s.def)
	if init.Alive() {
		t.Error("the adopted guest runs on after Stop through the new driver")
	}
	for _, p := range liveObjects {
		if _, err := os.Lstat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("Cleanup through the new driver left the guest's %s (%v)", p, err)
		}
	}
	if m := mountsUnder(liveDir); len(m) > 0 {
		t.Errorf("Cleanup through the new driver left mounts: %v", m)
	}
}

// kill ends a process with SIGKILL and waits for it to go; a zero
// identity (a driver with no such process) is skipped.
func kill(t *testing.T, p procutil.Identity) {
	t.Helper()
	if p.PID == 0 || !p.Alive() {
		return
	}
	if err := p.Signal(syscall.SIGKILL); err != nil {
		t.Fatalf("kill %d: %v", p.PID, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := p.Wait(ctx); err != nil {
		t.Fatalf("wait for %d to end: %v", p.PID, err)
	}
}
