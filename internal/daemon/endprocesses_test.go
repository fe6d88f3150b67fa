package daemon

import (
	"os/exec"
	"path/filepath"
	"slices"
	"testing"

	"github.com/polyvisor/polyvisor/internal/procutil"
)

// TestEndProcessesOfKillsAndWaits: a process left by an interrupted
// operation (found by its run dir on its command line) is killed, and
// endProcessesOf returns only once it has ended.
func TestEndProcessesOfKillsAndWaits(t *testing.T) {
	d := testDaemon(t)
	// sh waits in its read builtin: one process, no child to orphan.
	cmd := exec.Command("sh", "-c", "read line", "sh", filepath.Join(d.layout.GuestRunDir("web"), "qmp.sock"))
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
	left, err := procutil.Identify(cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
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
