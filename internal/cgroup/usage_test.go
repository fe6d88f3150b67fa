package cgroup

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/polyvisor/polyvisor/internal/hostreq"
)

// A cgroup's usage is what its members did: a busy shell's CPU time, and
// memory held by it; a cgroup that is not there is an error.
func TestReadUsageCountsWhatMembersDo(t *testing.T) {
	requireRoot(t)
	path := fmt.Sprintf("/polyvisor-test-usage-%d", os.Getpid())
	t.Cleanup(func() { Remove(path) })
	if err := Create(path, Limits{Memory: 256 << 20, CPUs: 1}); err != nil {
		t.Fatal(err)
	}
	idle, err := ReadUsage(path)
	if err != nil {
		t.Fatal(err)
	}
	if idle.CPU != 0 || idle.Memory != 0 {
		t.Fatalf("an empty cgroup's usage: %+v", idle)
	}
	leave, err := Join(path)
	if err != nil {
		t.Fatal(err)
	}
	// A shell that busies itself a while and holds 32 MiB in a variable.
	busy := exec.Command(hostreq.Need(t, "sh"), "-c", `x=$(head -c 33554432 /dev/zero | tr '\0' a); i=0; while [ $i -lt 300000 ]; do i=$((i+1)); done; sleep 30`)
	startErr := busy.Start()
	if err := leave(); err != nil {
		t.Fatal(err)
	}
	if startErr != nil {
		t.Fatal(startErr)
	}
	defer func() { busy.Process.Kill(); busy.Wait() }()
	deadline := time.Now().Add(30 * time.Second)
	var u Usage
	for time.Now().Before(deadline) {
		if u, err = ReadUsage(path); err != nil {
			t.Fatal(err)
		}
		if u.CPU > 100*time.Millisecond && u.Memory > 32<<20 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if u.CPU <= 100*time.Millisecond || u.Memory <= 32<<20 {
		t.Fatalf("usage of a busy shell holding 32 MiB: %+v", u)
	}
	if _, err := ReadUsage(path + "-gone"); err == nil {
		t.Fatal("the usage of a missing cgroup read without an error")
	}
}

// Both layouts of the files are read as the kernel writes them: v1's
// cpuacct and memory hierarchies, v2's one directory.
func TestUsageFilesOfBothVersions(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(filepath.Join(dir, name)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("cpuacct/cpuacct.usage", "2500000000\n")
	write("memory/memory.usage_in_bytes", "104857600\n")
	write("memory/memory.stat", "cache 4096\ninactive_file 1\ntotal_inactive_file 20971520\n")
	v1, err := readUsageV1(filepath.Join(dir, "cpuacct"), filepath.Join(dir, "memory"))
	if err != nil || v1.CPU != 2500*time.Millisecond || v1.Memory != 80<<20 {
		t.Errorf("v1 usage: %+v, %v; want 2.5s and 80 MiB", v1, err)
	}
	write("v2/cpu.stat", "usage_usec 1500000\nuser_usec 1000000\nsystem_usec 500000\n")
	write("v2/memory.current", "52428800\n")
	write("v2/memory.stat", "anon 1000\ninactive_file 10485760\n")
	v2, err := readUsageV2(filepath.Join(dir, "v2"))
	if err != nil || v2.CPU != 1500*time.Millisecond || v2.Memory != 40<<20 {
		t.Errorf("v2 usage: %+v, %v; want 1.5s and 40 MiB", v2, err)
	}
	write("bad/cpu.stat", "usage_usec 1\n")
	write("bad/memory.current", "lots\n")
	if _, err := readUsageV2(filepath.Join(dir, "bad")); err == nil {
		t.Error("a memory.current that is not a number read without an error")
	}
}
