package daemon

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/polyvisor/polyvisor/internal/cgroup"
	"github.com/polyvisor/polyvisor/internal/procutil"
	"github.com/polyvisor/polyvisor/internal/testgate"
)

// TestEndProcessesOfKillsAndWaits: a process left by an interrupted
// operation (found by its run dir on its command line) is killed, and
// endProcessesOf returns only once it has ended.
func TestEndProcessesOfKillsAndWaits(t *testing.T) {
	d := testDaemon(t)
	left := reader(t, filepath.Join(d.layout.GuestRunDir("web"), "qmp.sock"))
	other := sleeper(t, filepath.Join(d.layout.GuestRunDir("db"), "qmp.sock"))

	killed, err := d.endProcessesOf("web")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(killed, left.PID) {
		t.Errorf("killed %v, want %d among them", killed, left.PID)
	}
	if left.Alive() {
		t.Errorf("process %d still runs after endProcessesOf returned", left.PID)
	}
	if slices.Contains(killed, other.Process.Pid) {
		t.Errorf("endProcessesOf(web) killed %d, a process of db", other.Process.Pid)
	}
	// Nothing left: a second call has nothing to kill.
	if killed, err := d.endProcessesOf("web"); err != nil || len(killed) != 0 {
		t.Errorf("second endProcessesOf = %v, %v; want nothing killed", killed, err)
	}
}

// TestEndProcessesOfKillsAFrozenGuest: a forced stop or delete freezes the
// guest's cgroup before it kills, so a daemon killed in between leaves the
// guest frozen; the next daemon, ending what that operation left, must
// still end its processes (a frozen process dies of SIGKILL only once its
// cgroup is thawed).
func TestEndProcessesOfKillsAFrozenGuest(t *testing.T) {
	testgate.RequireRoot(t, "freezing a cgroup")
	d := testDaemon(t)
	left := reader(t)
	freezeInto(t, d.layout.GuestCgroup("web"), left.PID)

	if _, err := d.endProcessesOf("web"); err != nil {
		t.Fatal(err)
	}
	if left.Alive() {
		t.Errorf("process %d of the frozen guest still runs after endProcessesOf returned", left.PID)
	}
}

// reader starts a shell waiting in its read builtin (one process, no child
// to orphan) with args on its command line, ended and reaped at the test's
// end.
func reader(t *testing.T, args ...string) procutil.Identity {
	t.Helper()
	cmd := exec.Command("sh", append([]string{"-c", "read line", "sh"}, args...)...)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		stdin.Close()
		cmd.Process.Kill()
		cmd.Wait()
	})
	id, err := procutil.Identify(cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// freezeInto moves pid into a new cgroup at path and freezes it, as a
// forced stop interrupted after its freeze leaves a guest; the cgroup is
// thawed and removed at the test's end.
func freezeInto(t *testing.T, path string, pid int) {
	t.Helper()
	dir, state, frozen := filepath.Join(cgroup.Root, path), "cgroup.freeze", "1"
	if cgroup.Mode() != "v2" {
		dir, state, frozen = filepath.Join(cgroup.Root, "freezer", path), "freezer.state", "FROZEN"
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		thawed := map[string]string{"cgroup.freeze": "0", "freezer.state": "THAWED"}[state]
		os.WriteFile(filepath.Join(dir, state), []byte(thawed), 0)
		for _, d := range []string{dir, filepath.Dir(dir)} {
			for i := 0; i < 100 && syscall.Rmdir(d) == syscall.EBUSY; i++ {
				time.Sleep(10 * time.Millisecond) // until its last process is reaped
			}
		}
	})
	if err := os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, state), []byte(frozen), 0); err != nil {
		t.Fatal(err)
	}
	for i := 0; ; i++ {
		data, _ := os.ReadFile(filepath.Join(dir, state))
		if strings.TrimSpace(string(data)) == frozen {
			return
		}
		if i == 200 {
			t.Fatalf("%s never froze: %s", dir, data)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
