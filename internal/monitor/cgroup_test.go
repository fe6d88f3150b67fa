package monitor_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/polyvisor/polyvisor/internal/cgroup"
	"github.com/polyvisor/polyvisor/internal/hostreq"
	"github.com/polyvisor/polyvisor/internal/monitor"
	"github.com/polyvisor/polyvisor/internal/testgate"
)

// TestACommandGuestIsBornInItsCgroup: with --cgroup, the command (QEMU)
// starts inside the cgroup and under umask 0177, and the monitor itself
// does not stay in the cgroup.
func TestACommandGuestIsBornInItsCgroup(t *testing.T) {
	testgate.RequireRoot(t, "needs root to make cgroups")
	sh := hostreq.Need(t, "sh")
	path := fmt.Sprintf("/polyvisor-test-monitor-%d/vm", os.Getpid())
	t.Cleanup(func() { cgroup.Remove(path); cgroup.Remove(filepath.Dir(path)) })
	if err := cgroup.Create(path, cgroup.Limits{Memory: 64 << 20, CPUs: 1}); err != nil {
		t.Fatal(err)
	}
	base := t.TempDir()
	cfg := monitor.Config{
		ID: "vm", Dir: filepath.Join(base, "run"), Log: filepath.Join(base, "console.log"), LogMax: monitor.DefaultLogMax,
		ReadySocket: filepath.Join(base, "run", "ready"), Cgroup: path,
		Command: []string{sh, "-c", "cat /proc/self/cgroup > cgroup; umask > umask; : > ready; exec sleep 60"},
	}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		t.Fatal(err)
	}
	cmd, line, err := startMonitorCmd(append([]string{buildMonitor(t)}, cfg.Args()...))
	if err != nil {
		t.Fatal(err)
	}
	pid, err := monitor.ParseReady(line)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		syscall.Kill(pid, syscall.SIGKILL)
		waitFor(t, 10*time.Second, "the monitor to exit", func() bool { return processGone(cmd.Process.Pid) })
		cmd.Wait()
	})
	if data, _ := os.ReadFile(filepath.Join(cfg.Dir, "cgroup")); !strings.Contains(string(data), ":"+path+"\n") {
		t.Errorf("the command started outside %s:\n%s", path, data)
	}
	if data, _ := os.ReadFile(filepath.Join(cfg.Dir, "umask")); strings.TrimSpace(string(data)) != "0177" {
		t.Errorf("the command's umask is %q, want 0177", data)
	}
	self, err := os.ReadFile("/proc/" + strconv.Itoa(cmd.Process.Pid) + "/cgroup")
	if err != nil || strings.Contains(string(self), path) {
		t.Errorf("the monitor stayed in the guest's cgroup (%v):\n%s", err, self)
	}
}
