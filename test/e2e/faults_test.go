package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/polyvisor/polyvisor/internal/guest"
	"github.com/polyvisor/polyvisor/internal/layout"
	"github.com/polyvisor/polyvisor/internal/testenv"
	"github.com/polyvisor/polyvisor/pkg/api"
)

func jsonUnmarshal(s string, v any) error { return json.Unmarshal([]byte(s), v) }

// guestDirEntries lists everything in the guests directory, leftovers included.
func guestDirEntries(t *testing.T, d *testenv.Daemon) []string {
	t.Helper()
	entries, err := os.ReadDir(layout.New(d.StateDir).GuestsDir())
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

// expectError runs a command that must fail with one line naming want.
func expectError(t *testing.T, d *testenv.Daemon, want string, args ...string) {
	t.Helper()
	out, errOut, code := d.Run(args...)
	if code == 0 {
		t.Errorf("polyvisor %s succeeded: %s", strings.Join(args, " "), out)
		return
	}
	msg := strings.TrimSpace(errOut)
	if strings.Count(msg, "\n") > 0 || !strings.HasPrefix(msg, "Error: ") || !strings.Contains(msg, want) {
		t.Errorf("polyvisor %s: stderr %q, want one 'Error:' line containing %q", strings.Join(args, " "), errOut, want)
	}
}

func TestBadInputGetsOneClearLineAndLeavesNothing(t *testing.T) {
	requireRoot(t)
	d := env.main
	launch(t, d, "busybox", "e2e-dup")
	before := guestDirEntries(t, d)
	expectError(t, d, "template nosuch", "launch", "nosuch", "e2e-x")
	expectError(t, d, "already exists", "launch", "busybox", "e2e-dup")
	expectError(t, d, "memory", "launch", "busybox", "e2e-x", "--memory", "lots")
	expectError(t, d, "memory", "launch", "busybox", "e2e-x", "--memory", "1KiB")
	expectError(t, d, "cpus", "launch", "busybox", "e2e-x", "--cpus", "-1")
	expectError(t, d, "--cpus 0: give at least 1 CPU", "launch", "busybox", "e2e-x", "--cpus", "0")
	expectError(t, d, "--processes 0: give at least 1 process", "create", "busybox", "e2e-x", "--processes", "0")
	expectError(t, d, "memory 99999TiB: the host has", "launch", "busybox", "e2e-x", "--memory", "99999TiB")
	expectError(t, d, "memory 99999TiB: the host has", "config", "set", "e2e-dup", "memory=99999TiB")
	// An administrator who means to overcommit says so.
	host, err := guest.HostMemory()
	if err != nil {
		t.Fatal(err)
	}
	twiceTheHost := 2 * host >> 20 << 20
	d.Must(t, "config", "set", "e2e-dup", "memory="+twiceTheHost.String(), "--force")
	if g := info(t, d, "e2e-dup"); g.Memory != int64(twiceTheHost) {
		t.Errorf("forced memory: info says %d, want %s", g.Memory, twiceTheHost)
	}
	d.Must(t, "config", "set", "e2e-dup", "memory=256MiB")
	expectError(t, d, "cpus 0: give at least 1 CPU", "config", "set", "e2e-dup", "cpus=0")
	expectError(t, d, "processes 0: give at least 1 process", "config", "set", "e2e-dup", "processes=0")
	expectError(t, d, "name", "launch", "busybox", "Bad_Name")
	expectError(t, d, "type", "launch", "busybox", "e2e-x", "--type", "zone")
	expectError(t, d, `idmap "private": use isolated`, "launch", "busybox", "e2e-x", "--idmap", "private")
	expectError(t, d, "idmap: only unprivileged containers have an id map; drop --idmap", "launch", "busybox", "e2e-x", "--idmap", "shared", "--privileged")
	expectError(t, d, "unknown key \"colour\"", "config", "set", "e2e-dup", "colour=blue")
	expectError(t, d, "running", "delete", "e2e-dup")
	expectError(t, d, "not found", "info", "e2e-nosuch")
	expectError(t, d, "--format", "list", "--format", "xml")
	d.Must(t, "stop", "e2e-dup", "--force")
	expectError(t, d, "not running", "exec", "e2e-dup", "--", "true")
	expectError(t, d, "not running", "console", "e2e-dup")
	expectError(t, d, "template busybox is used by e2e-dup", "template", "delete", "busybox")
	after := guestDirEntries(t, d)
	if strings.Join(before, ",") != strings.Join(after, ",") {
		t.Errorf("failed commands changed the guests dir: %v -> %v", before, after)
	}
	gs, _ := d.Guests()
	for _, g := range gs {
		if g.Name == "e2e-x" {
			t.Errorf("a failed launch left guest %s", g.Name)
		}
	}
}

func TestUnreachableDaemonIsOneLine(t *testing.T) {
	requireRoot(t)
	ghost := &testenv.Daemon{Socket: filepath.Join(t.TempDir(), "none.sock"), BinDir: env.bin}
	expectError(t, ghost, "cannot reach the polyvisor daemon", "list")
}

// TestInjectedFaultsLeaveNothingHalfMade breaks launch at each named
// point and checks that no guest, mount, cgroup, runtime state, run dir or
// monitor process remains.
func TestInjectedFaultsLeaveNothingHalfMade(t *testing.T) {
	requireRoot(t)
	for _, point := range []string{"create-after-disks", "after-rootfs", "before-monitor", "start-after-boot"} {
		t.Run(point, func(t *testing.T) {
			d := ownDaemon(t, "--inject-fault", point)
			expectError(t, d, "injected fault at "+point, "launch", "busybox", "half")
			l := layout.New(d.StateDir)
			if entries := guestDirEntries(t, d); len(entries) != 0 {
				t.Errorf("guests dir holds %v", entries)
			}
			if mounted(t, filepath.Join(l.GuestDir("half"), "rootfs")) {
				t.Error("rootfs left mounted")
			}
			if dirs := existing(testenv.CgroupDirs(l.CgroupParent() + "/half")); len(dirs) > 0 {
				t.Errorf("cgroups left: %v", dirs)
			}
			if _, err := os.Stat(filepath.Join(l.RuncRoot(), "half")); err == nil {
				t.Error("runtime state left")
			}
			if _, err := os.Stat(l.GuestRunDir("half")); err == nil {
				t.Error("run dir left")
			}
			if n := countMonitors(t, l.GuestRunDir("half")); n > 0 {
				t.Errorf("%d monitor processes of the guest left", n)
			}
			// The name is free again.
			if gs, _ := d.Guests(); len(gs) != 0 {
				t.Errorf("list shows %v", gs)
			}
		})
	}
}

// countMonitors counts the polyvisor-monitor processes of one guest: their
// command lines name its run dir. The supervisor that runs containers is
// no guest's, and may linger once the guest is gone.
func countMonitors(t *testing.T, guestRunDir string) int {
	t.Helper()
	cmdlines, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	n := 0
	for _, c := range cmdlines {
		data, err := os.ReadFile(c)
		if err != nil {
			continue
		}
		args := strings.Split(string(data), "\x00")
		if filepath.Base(args[0]) == "polyvisor-monitor" && slices.ContainsFunc(args, func(a string) bool {
			return a == guestRunDir || strings.HasPrefix(a, guestRunDir+"/")
		}) {
			n++
		}
	}
	return n
}

// TestGuestsOutliveKilledDaemon is the crash story: kill -9 the daemon,
// guests keep running and keep their console; a new daemon adopts them,
// and cleans what belongs to guests that died meanwhile.
func TestGuestsOutliveKilledDaemon(t *testing.T) {
	requireRoot(t)
	d := ownDaemon(t)
	d.Must(t, "launch", "busybox", "survivor")
	d.Must(t, "launch", "busybox", "casualty")
	survivor, casualty := info(t, d, "survivor"), info(t, d, "casualty")

	d.Kill()
	if !alive(survivor.PID) || !alive(survivor.MonitorPID) {
		t.Fatal("killing the daemon killed a guest or its monitor")
	}
	// While no daemon watches, one guest dies.
	if p, err := os.FindProcess(casualty.PID); err == nil {
		p.Kill()
	}
	if err := d.Restart(); err != nil {
		t.Fatal(err)
	}
	after := info(t, d, "survivor")
	if after.State != api.StateRunning || after.PID != survivor.PID {
		t.Errorf("survivor after restart: %+v", after)
	}
	if out := d.Must(t, "exec", "survivor", "--", "echo", "adopted"); out != "adopted\n" {
		t.Errorf("exec into adopted guest: %q", out)
	}
	dead := info(t, d, "casualty")
	if dead.State != api.StateStopped {
		t.Errorf("casualty after restart: %+v", dead)
	}
	l := layout.New(d.StateDir)
	if mounted(t, filepath.Join(l.GuestDir("casualty"), "rootfs")) {
		t.Error("the dead guest's rootfs is still mounted after reconcile")
	}
	if dirs := existing(testenv.CgroupDirs(l.CgroupParent() + "/casualty")); len(dirs) > 0 {
		t.Errorf("the dead guest's cgroups survive reconcile: %v", dirs)
	}
	// The adopted guest is still watched: its end is noticed.
	d.Must(t, "stop", "survivor", "--force")
	if alive(survivor.PID) {
		t.Error("stop of an adopted guest left init running")
	}
}

// TestContainersOutliveTheirSupervisor: one supervisor runs a daemon's
// containers; killed with SIGKILL, it takes no guest with it. The guests
// go on, exec still works, a new supervisor takes them over with their
// consoles (which the daemon, restarted meanwhile, kept a copy of), the
// next launch runs under it too, and a guest of the dead one stops (its
// exit unknown), starts again and is deleted without leftovers.
func TestContainersOutliveTheirSupervisor(t *testing.T) {
	requireRoot(t)
	d := ownDaemon(t)
	d.Must(t, "launch", "busybox", "sup-a")
	d.Must(t, "launch", "busybox", "sup-b")
	a, b := info(t, d, "sup-a"), info(t, d, "sup-b")
	if a.MonitorPID == 0 || a.MonitorPID != b.MonitorPID {
		t.Fatalf("the containers' monitors are %d and %d, want one supervisor for both", a.MonitorPID, b.MonitorPID)
	}
	// A daemon that restarts takes back its copies of the consoles from
	// the running supervisor: the hand-over below depends on them.
	d.Kill()
	if err := d.Restart(); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(a.MonitorPID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); alive(a.MonitorPID); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the supervisor survived SIGKILL for 10 s")
		}
	}
	time.Sleep(300 * time.Millisecond) // a guest dying of it would be gone by now
	if !alive(a.PID) || !alive(b.PID) {
		t.Fatal("killing the supervisor ended a guest")
	}
	if out := d.Must(t, "exec", "sup-b", "--", "echo", "still-here"); out != "still-here\n" {
		t.Errorf("exec into a guest of the dead supervisor: %q", out)
	}
	// The daemon kept a copy of each console and handed both guests to a
	// new supervisor: the consoles never hung up, and answer again.
	var log string
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		d.RunInput("echo after-$((6*7))\n\x01q", "console", "sup-a")
		if log = d.Must(t, "console", "sup-a", "--log"); strings.Contains(log, "after-42") {
			break
		}
	}
	if !strings.Contains(log, "after-42") {
		t.Errorf("sup-a's console after its supervisor's death: the log lacks the command's output:\n%s", log)
	}
	if g := info(t, d, "sup-a"); g.MonitorPID == a.MonitorPID || !alive(g.MonitorPID) {
		t.Errorf("sup-a after its supervisor's death: monitor %d (the dead one was %d)", g.MonitorPID, a.MonitorPID)
	}

	d.Must(t, "launch", "busybox", "sup-c")
	c := info(t, d, "sup-c")
	if c.MonitorPID == a.MonitorPID || !alive(c.MonitorPID) {
		t.Errorf("after the supervisor's death, sup-c's monitor is %d (the dead one was %d)", c.MonitorPID, a.MonitorPID)
	}
	d.Must(t, "stop", "sup-a")
	if g := info(t, d, "sup-a"); g.State != api.StateStopped || alive(a.PID) {
		t.Errorf("sup-a after its stop: %+v", g)
	}
	d.Must(t, "start", "sup-a")
	if g := info(t, d, "sup-a"); g.State != api.StateRunning || g.MonitorPID != c.MonitorPID {
		t.Errorf("sup-a started again: %+v, want it under the new supervisor %d", g, c.MonitorPID)
	}
	d.Must(t, "delete", "--force", "sup-a", "sup-b", "sup-c")
	l := layout.New(d.StateDir)
	for _, name := range []string{"sup-a", "sup-b", "sup-c"} {
		if mounted(t, filepath.Join(l.GuestDir(name), "rootfs")) {
			t.Errorf("%s's rootfs is still mounted after its delete", name)
		}
		if dirs := existing(testenv.CgroupDirs(l.CgroupParent() + "/" + name)); len(dirs) > 0 {
			t.Errorf("%s's cgroups survive its delete: %v", name, dirs)
		}
	}
	if alive(b.PID) {
		t.Error("sup-b's init survived its delete")
	}
}

// TestBrokenDefinitionIsKeptAndReported: a guest.yaml with an unknown key
// is refused with the key named, and nothing is deleted.
func TestBrokenDefinitionIsKeptAndReported(t *testing.T) {
	requireRoot(t)
	d := ownDaemon(t)
	d.Must(t, "create", "busybox", "edited")
	path := filepath.Join(layout.New(d.StateDir).GuestDir("edited"), "guest.yaml")
	d.Kill()
	data, _ := os.ReadFile(path)
	os.WriteFile(path, append(data, []byte("colour: blue\n")...), 0o640)
	if err := d.Restart(); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(d.Log(), `unknown key \"colour\"`) {
		t.Errorf("daemon log does not name the unknown key:\n%s", d.Log())
	}
	if _, err := os.Stat(path); err != nil {
		t.Errorf("the broken definition was removed: %v", err)
	}
	gs, err := d.Guests()
	if err != nil || len(gs) != 1 || gs[0].State != api.StateBroken || !strings.Contains(gs[0].Error, `unknown key "colour"`) {
		t.Errorf("list shows %+v, %v; want edited as broken, naming the key", gs, err)
	}
	expectError(t, d, `unknown key "colour"`, "info", "edited")
	expectError(t, d, "already exists", "launch", "busybox", "edited")
	// It goes only when asked with --force.
	expectError(t, d, "delete --force edited", "delete", "edited")
	d.Must(t, "delete", "edited", "--force")
	if entries := guestDirEntries(t, d); len(entries) != 0 {
		t.Errorf("delete --force of a broken guest left %v", entries)
	}
	if gs, err := d.Guests(); err != nil || len(gs) != 0 {
		t.Errorf("list after delete --force shows %+v, %v", gs, err)
	}
}

// TestMisleadingHandEditsLoadBroken: a definition whose name is not its
// directory's (a copied directory), or whose template is a path, is kept
// and listed as broken; deleting the copy leaves the original whole.
func TestMisleadingHandEditsLoadBroken(t *testing.T) {
	requireRoot(t)
	d := ownDaemon(t)
	d.Must(t, "create", "busybox", "first")
	d.Must(t, "create", "busybox", "second")
	l := layout.New(d.StateDir)
	d.Kill()
	data, err := os.ReadFile(filepath.Join(l.GuestDir("first"), "guest.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(l.GuestDir("copied"), 0o711)
	os.WriteFile(filepath.Join(l.GuestDir("copied"), "guest.yaml"), data, 0o640)
	second := filepath.Join(l.GuestDir("second"), "guest.yaml")
	data, _ = os.ReadFile(second)
	os.WriteFile(second, []byte(strings.Replace(string(data), "template: busybox", "template: ../../etc", 1)), 0o640)
	if err := d.Restart(); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"first": "", "copied": `differs from its directory "copied"`, "second": `template "../../etc"`}
	gs, err := d.Guests()
	if err != nil || len(gs) != len(want) {
		t.Fatalf("list: %+v, %v", gs, err)
	}
	for _, g := range gs {
		if broken := g.State == api.StateBroken; broken != (want[g.Name] != "") || !strings.Contains(g.Error, want[g.Name]) {
			t.Errorf("%s: state %s, error %q; want broken: %q", g.Name, g.State, g.Error, want[g.Name])
		}
	}
	d.Must(t, "delete", "copied", "--force")
	if g := info(t, d, "first"); g.State != api.StateStopped {
		t.Errorf("first after deleting its copy: %+v", g)
	}
	if entries := guestDirEntries(t, d); strings.Join(entries, ",") != "first,second" {
		t.Errorf("guests dir after deleting the copy: %v", entries)
	}
}
