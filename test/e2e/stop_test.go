package e2e

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/polyvisor/polyvisor/internal/layout"
	"github.com/polyvisor/polyvisor/internal/procutil"
	"github.com/polyvisor/polyvisor/internal/template"
	"github.com/polyvisor/polyvisor/internal/testenv"
	"github.com/polyvisor/polyvisor/pkg/api"
)

// Signals a container's init is seen to end by (api.Exit.Signal).
const (
	// sigPowerOff: reboot(2) with RB_POWER_OFF in a child pid namespace
	// ends its init as if by SIGINT: the guest powered itself off.
	sigPowerOff = 2
	sigKill     = 9
)

// TestStopRunsTheGuestsShutdownActionsFirst: `polyvisor stop` asks init to
// power off, the guest's own ::shutdown: action runs while the guest's
// other processes still do, then the guest powers itself off (not killed,
// not busybox's own two sleeping seconds), and nothing of it is left.
func TestStopRunsTheGuestsShutdownActionsFirst(t *testing.T) {
	requireRoot(t)
	d := env.main
	tmpl := shutdownTemplate(t, d, "stop-actions", "::shutdown:pidof sleep > /shutdown-saw")
	g := launch(t, d, tmpl, "e2e-stop-actions")
	d.Must(t, "exec", g.Name, "--", "sh", "-c", "setsid sleep 1000 </dev/null >/dev/null 2>&1 &")
	procs := guestProcesses(t, d, g)

	d.Must(t, "stop", g.Name)
	after := info(t, d, g.Name)
	if after.State != api.StateStopped || after.LastExit == nil || after.LastExit.Signal != sigPowerOff {
		t.Errorf("after stop: state %s, last exit %+v; want stopped, init ended by the guest's own poweroff (signal %d)", after.State, after.LastExit, sigPowerOff)
	}
	nothingLeft(t, d, g, procs)

	d.Must(t, "start", g.Name)
	saw := strings.TrimSpace(d.Must(t, "exec", g.Name, "--", "cat", "/shutdown-saw"))
	if _, err := strconv.Atoi(strings.Fields(saw + " x")[0]); err != nil {
		t.Errorf("the shutdown action saw no sleep still running (%q): the guest's processes were killed before its shutdown actions ran", saw)
	}
}

// TestStopKillsAGuestThatDoesNotPowerOff: a guest whose shutdown never
// ends (here a ::shutdown: action that hangs) was asked, and is killed
// once the timeout has passed; nothing of it is left.
func TestStopKillsAGuestThatDoesNotPowerOff(t *testing.T) {
	requireRoot(t)
	d := env.main
	tmpl := shutdownTemplate(t, d, "stop-hang", `::shutdown:/bin/sh -c "echo asked > /asked; exec sleep 1000"`)
	g := launch(t, d, tmpl, "e2e-stop-hang")
	procs := guestProcesses(t, d, g)

	d.Must(t, "stop", "--timeout", "2s", g.Name)
	after := info(t, d, g.Name)
	if after.State != api.StateStopped || after.LastExit == nil || after.LastExit.Signal != sigKill {
		t.Errorf("after stop: state %s, last exit %+v; want stopped, init killed (signal %d)", after.State, after.LastExit, sigKill)
	}
	nothingLeft(t, d, g, procs)

	d.Must(t, "start", g.Name)
	if out := d.Must(t, "exec", g.Name, "--", "cat", "/asked"); out != "asked\n" {
		t.Errorf("the guest's shutdown action left %q: it was never asked to power off before the kill", out)
	}
}

// TestStopForceKillsWithoutAsking: `stop --force` sends the guest no
// request (its shutdown actions do not run), kills every process of it
// (the cgroup is frozen first; internal/cgroup's
// TestKillFreezesThenKillsAForkingTree proves the freeze), and leaves
// nothing.
func TestStopForceKillsWithoutAsking(t *testing.T) {
	requireRoot(t)
	d := env.main
	tmpl := shutdownTemplate(t, d, "stop-force", "::shutdown:echo ran > /shutdown-ran")
	g := launch(t, d, tmpl, "e2e-stop-force")
	// A tree of processes that keeps forking, for the freeze to hold.
	d.Must(t, "exec", g.Name, "--", "sh", "-c", "setsid sh -c 'while :; do sleep 1000 & sleep 0.01; done' </dev/null >/dev/null 2>&1 &")
	procs := guestProcesses(t, d, g)

	d.Must(t, "stop", "--force", g.Name)
	after := info(t, d, g.Name)
	if after.State != api.StateStopped || after.LastExit == nil || after.LastExit.Signal != sigKill {
		t.Errorf("after stop --force: state %s, last exit %+v; want stopped, init killed (signal %d)", after.State, after.LastExit, sigKill)
	}
	nothingLeft(t, d, g, procs)

	d.Must(t, "start", g.Name)
	if out, _, code := d.Run("exec", g.Name, "--", "cat", "/shutdown-ran"); code == 0 {
		t.Errorf("the shutdown action ran under --force (%q): the guest was asked before it was killed", out)
	}
}

// TestStopOfAGuestFromAnOlderTemplate: a template built before its inittab
// ended the shutdown with a poweroff still stops by itself (busybox init's
// own sequence), within the default timeout, and leaves nothing.
func TestStopOfAGuestFromAnOlderTemplate(t *testing.T) {
	requireRoot(t)
	d := env.main
	tmpl := shutdownTemplate(t, d, "stop-older", "")
	file := inittabOf(d, tmpl)
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	older := strings.Replace(string(data), template.ShutdownEnd, "", 1)
	if older == string(data) {
		t.Fatalf("%s has no %q lines to remove", file, template.ShutdownEnd)
	}
	if err := os.WriteFile(file, []byte(older), 0); err != nil {
		t.Fatal(err)
	}
	g := launch(t, d, tmpl, "e2e-stop-older")
	procs := guestProcesses(t, d, g)

	d.Must(t, "stop", g.Name)
	after := info(t, d, g.Name)
	if after.State != api.StateStopped || after.LastExit == nil || after.LastExit.Signal == sigKill {
		t.Errorf("after stop: state %s, last exit %+v; want stopped, init ended by itself (not killed)", after.State, after.LastExit)
	}
	nothingLeft(t, d, g, procs)
}

// shutdownTemplate builds busybox as template name, with action (if any)
// added to its inittab just before the lines that power the guest off, as
// a guest's own shutdown work would be; the template is deleted when the
// test ends.
func shutdownTemplate(t *testing.T, d *testenv.Daemon, name, action string) string {
	t.Helper()
	d.Must(t, "template", "build", "busybox", "--name", name)
	t.Cleanup(func() { d.Run("template", "delete", name) })
	if action == "" {
		return name
	}
	file := inittabOf(d, name)
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	last := template.ShutdownEnd
	if !strings.HasSuffix(string(data), last) {
		t.Fatalf("%s does not end with %q:\n%s", file, last, data)
	}
	edited := strings.TrimSuffix(string(data), last) + action + "\n" + last
	// WriteFile keeps the file's owner, the template's id map.
	if err := os.WriteFile(file, []byte(edited), 0); err != nil {
		t.Fatal(err)
	}
	return name
}

func inittabOf(d *testenv.Daemon, tmpl string) string {
	return filepath.Join(layout.New(d.StateDir).TemplatesDir(), tmpl, "rootfs", "etc", "inittab")
}

// guestProcesses identifies g's init, its own monitor and every process in
// its cgroup: what its stop ends.
func guestProcesses(t *testing.T, d *testenv.Daemon, g api.Guest) []procutil.Identity {
	t.Helper()
	var procs []procutil.Identity
	pids := []int{g.PID, ownMonitor(g)}
	for _, dir := range testenv.CgroupDirs(layout.New(d.StateDir).GuestCgroup(g.Name)) {
		data, err := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
		if err != nil {
			continue
		}
		for _, f := range strings.Fields(string(data)) {
			if pid, err := strconv.Atoi(f); err == nil {
				pids = append(pids, pid)
			}
		}
	}
	for _, pid := range pids {
		// One that ended since the listing (a short-lived child) is not
		// the guest's any more.
		if id, err := procutil.Identify(pid); err == nil {
			procs = append(procs, id)
		}
	}
	if len(procs) < 4 {
		t.Fatalf("guest %s: only %v found running (monitor, init, shell, ...)", g.Name, procs)
	}
	return procs
}

// nothingLeft fails the test if a process of g seen before the stop still
// runs, or its cgroups or root mount remain.
func nothingLeft(t *testing.T, d *testenv.Daemon, g api.Guest, procs []procutil.Identity) {
	t.Helper()
	for _, p := range procs {
		if p.Alive() {
			t.Errorf("process %d of guest %s still runs after stop", p.PID, g.Name)
		}
	}
	l := layout.New(d.StateDir)
	if dirs := existing(testenv.CgroupDirs(l.GuestCgroup(g.Name))); len(dirs) > 0 {
		t.Errorf("cgroups of guest %s left after stop: %v", g.Name, dirs)
	}
	if mounted(t, filepath.Join(l.GuestDir(g.Name), "rootfs")) {
		t.Errorf("root tree of guest %s still mounted after stop", g.Name)
	}
}
