package cgroup

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/polyvisor/polyvisor/internal/hostreq"
	"github.com/polyvisor/polyvisor/internal/testgate"
)

func requireRoot(t *testing.T) {
	t.Helper()
	testgate.RequireRoot(t, "making cgroups needs root")
}

// cgroupOf returns the lines of /proc/PID/cgroup.
func cgroupOf(t *testing.T, pid int) string {
	t.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

func readValue(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(data))
}

// TestCreateJoinRemove makes a cgroup with limits, starts a child in it
// through Join, leaves it, and removes it once the child has ended.
func TestCreateJoinRemove(t *testing.T) {
	requireRoot(t)
	parent := fmt.Sprintf("/polyvisor-test-cgroup-%d", os.Getpid())
	path := parent + "/g1"
	t.Cleanup(func() { Remove(path); Remove(parent) })
	if err := Create(path, Limits{Memory: 300 << 20, CPUs: 2}); err != nil {
		t.Fatal(err)
	}
	if Mode() == "v2" {
		if got := readValue(t, filepath.Join(Root, path, "memory.max")); got != fmt.Sprint(300<<20) {
			t.Errorf("memory.max %s", got)
		}
		if got := readValue(t, filepath.Join(Root, path, "cpu.max")); got != "200000 100000" {
			t.Errorf("cpu.max %s", got)
		}
	} else {
		if got := readValue(t, filepath.Join(Root, "memory", path, "memory.limit_in_bytes")); got != fmt.Sprint(300<<20) {
			t.Errorf("memory.limit_in_bytes %s", got)
		}
		if SwapAccounting() {
			if got := readValue(t, filepath.Join(Root, "memory", path, "memory.memsw.limit_in_bytes")); got != fmt.Sprint(300<<20) {
				t.Errorf("memory.memsw.limit_in_bytes %s", got)
			}
		}
		if got := readValue(t, filepath.Join(Root, "cpu", path, "cpu.cfs_quota_us")); got != "200000" {
			t.Errorf("cpu.cfs_quota_us %s", got)
		}
	}

	before := cgroupOf(t, os.Getpid())
	leave, err := Join(path)
	if err != nil {
		t.Fatal(err)
	}
	child := exec.Command(hostreq.Need(t, "sleep"), "60")
	startErr := child.Start()
	if err := leave(); err != nil {
		t.Fatal(err)
	}
	if startErr != nil {
		t.Fatal(startErr)
	}
	defer child.Wait()
	defer child.Process.Kill()
	if after := cgroupOf(t, os.Getpid()); after != before {
		t.Errorf("the process did not go back where it was:\nbefore\n%s\nafter\n%s", before, after)
	}
	if in := cgroupOf(t, child.Process.Pid); !strings.Contains(in, ":"+path+"\n") {
		t.Errorf("the child is not in %s:\n%s", path, in)
	}
	if err := Remove(path); err == nil {
		t.Error("a cgroup holding a process was removed")
	}
	if names := Children(parent); len(names) != 1 || names[0] != "g1" {
		t.Errorf("children of %s: %v", parent, names)
	}
	child.Process.Kill()
	child.Wait()
	removed, err := RemoveOrphans(parent, map[string]bool{})
	if err != nil || len(removed) != 1 || removed[0] != path {
		t.Errorf("sweeping an ended guest's cgroup: removed %v, %v", removed, err)
	}
	for _, dir := range dirs(path) {
		if _, err := os.Stat(dir); err == nil {
			t.Errorf("%s is left", dir)
		}
	}
}

func TestJoinAMissingCgroupFails(t *testing.T) {
	requireRoot(t)
	before := cgroupOf(t, os.Getpid())
	if _, err := Join(fmt.Sprintf("/polyvisor-test-absent-%d", os.Getpid())); err == nil {
		t.Fatal("joined a cgroup that does not exist")
	}
	if after := cgroupOf(t, os.Getpid()); after != before {
		t.Errorf("a failed join moved the process:\n%s", after)
	}
}

func TestCreateRefusesAnOlderCgroupInUse(t *testing.T) {
	requireRoot(t)
	path := fmt.Sprintf("/polyvisor-test-busy-%d", os.Getpid())
	t.Cleanup(func() { Remove(path) })
	if err := Create(path, Limits{Memory: 64 << 20}); err != nil {
		t.Fatal(err)
	}
	leave, err := Join(path)
	if err != nil {
		t.Fatal(err)
	}
	child := exec.Command(hostreq.Need(t, "sleep"), "60")
	startErr := child.Start()
	leave()
	if startErr != nil {
		t.Fatal(startErr)
	}
	defer child.Wait()
	defer child.Process.Kill()
	if err := Create(path, Limits{Memory: 64 << 20}); err == nil || !strings.Contains(err.Error(), "still in use") {
		t.Errorf("a cgroup in use was made again: %v", err)
	}
	if in := cgroupOf(t, child.Process.Pid); !strings.Contains(in, ":"+path+"\n") {
		t.Errorf("a refused Create moved or removed the older cgroup's process:\n%s", in)
	}
}
