package cgroup

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// TestKillFreezesThenKillsAForkingTree puts a shell that keeps forking
// into a cgroup of its own and kills the cgroup: every process must be
// frozen when the signals go out, and none may be left alive after.
func TestKillFreezesThenKillsAForkingTree(t *testing.T) {
	requireRoot(t)
	if Mode() == "v2" {
		t.Skip("cgroup v2 host: Kill writes cgroup.kill and freezes nothing; TestKillEndsEveryProcess covers it")
	}
	path := fmt.Sprintf("/polyvisor-test-kill-%d", os.Getpid())
	dir := filepath.Join(Root, "freezer", path)
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { Remove(path) })
	cmd, start := forker(t)
	if err := os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte(strconv.Itoa(cmd.Process.Pid)), 0); err != nil {
		t.Fatal(err)
	}
	start()
	waitForMembers(t, dir, 20)

	var states []string
	var seen int
	err := kill(t.Context(), path, func(dir string, pids []int) {
		states = append(states, readValue(t, filepath.Join(dir, "freezer.state")))
		seen += len(pids)
	})
	if err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	if len(states) == 0 || states[0] != "FROZEN" {
		t.Errorf("freezer states when the signals went out: %v, want FROZEN first", states)
	}
	if seen < 20 {
		t.Errorf("only %d processes listed while frozen, want the shell and its children", seen)
	}
	if got := readValue(t, filepath.Join(dir, "freezer.state")); got != "THAWED" {
		t.Errorf("freezer.state %s after Kill, want THAWED so that the killed can die", got)
	}
	waitEmpty(t, dir)
}

// TestKillEndsEveryProcess: whatever the host's cgroup version, nothing
// of a cgroup lives on after Kill, and a cgroup that is not there is not
// an error.
func TestKillEndsEveryProcess(t *testing.T) {
	requireRoot(t)
	path := fmt.Sprintf("/polyvisor-test-kill2-%d", os.Getpid())
	if err := Kill(t.Context(), path); err != nil {
		t.Fatalf("Kill of a cgroup that does not exist: %v", err)
	}
	if err := Create(path, Limits{}); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(Root, path)
	if Mode() != "v2" {
		dir = filepath.Join(Root, "freezer", path)
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() { Remove(path) })
	cmd, start := forker(t)
	if err := os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte(strconv.Itoa(cmd.Process.Pid)), 0); err != nil {
		t.Fatal(err)
	}
	start()
	waitForMembers(t, dir, 5)
	if err := Kill(t.Context(), path); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err == nil {
		t.Error("the shell ended cleanly; it should have been killed")
	}
	waitEmpty(t, dir)
}

// forker starts a shell that, once start is called, forks children that
// sleep, as fast as it can, up to a bound; it is killed when the test
// ends if still running.
func forker(t *testing.T) (*exec.Cmd, func()) {
	t.Helper()
	cmd := exec.Command("sh", "-c", `read go; i=0; while [ $i -lt 3000 ]; do sleep 600 & i=$((i+1)); done; wait`)
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill() })
	return cmd, func() {
		io.WriteString(in, "go\n")
		in.Close()
	}
}

// waitForMembers waits until dir's cgroup holds at least n processes.
func waitForMembers(t *testing.T, dir string, n int) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		pids, err := listProcs(dir)
		if err != nil {
			t.Fatal(err)
		}
		if len(pids) >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the cgroup holds %d processes, want %d", len(pids), n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// waitEmpty fails the test if dir's cgroup still holds a live process
// once the killed ones have had time to be reaped by their new parent.
func waitEmpty(t *testing.T, dir string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for anyAlive(dir) {
		if time.Now().After(deadline) {
			pids, _ := listProcs(dir)
			t.Fatalf("processes still alive in the cgroup after Kill: %v", pids)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
