package monitor_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/polyvisor/polyvisor/internal/hostreq"
	"github.com/polyvisor/polyvisor/internal/monitor"
	"github.com/polyvisor/polyvisor/internal/testgate"
)

// fakeDaemonEnv makes the test binary act as the daemon: start a monitor
// the way the daemon does, print "MONITORPID READYLINE", then die by
// SIGKILL without waiting for the monitor, as a crashing daemon would.
const fakeDaemonEnv = "POLYVISOR_TEST_FAKE_DAEMON"

func TestMain(m *testing.M) {
	if os.Getenv(fakeDaemonEnv) == "1" {
		fakeDaemon(os.Args[len(os.Args)-1])
		return
	}
	os.Exit(m.Run())
}

func fakeDaemon(argvJSON string) {
	var argv []string
	if err := json.Unmarshal([]byte(argvJSON), &argv); err != nil {
		fmt.Println("0 fake daemon:", err)
		os.Exit(1)
	}
	cmd, readyLine, err := startMonitorCmd(argv)
	if err != nil {
		fmt.Println("0 fake daemon:", err)
		os.Exit(1)
	}
	fmt.Printf("%d %s", cmd.Process.Pid, readyLine)
	syscall.Kill(os.Getpid(), syscall.SIGKILL)
}

// startMonitorCmd starts argv as the daemon starts a monitor (new session,
// /dev/null stdio, ready pipe as fd 3) and returns the ready line.
func startMonitorCmd(argv []string) (*exec.Cmd, string, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return nil, "", err
	}
	defer r.Close()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	cmd.ExtraFiles = []*os.File{w}
	err = cmd.Start()
	w.Close()
	if err != nil {
		return nil, "", err
	}
	line, err := bufio.NewReader(r).ReadString('\n')
	if err != nil {
		return cmd, "", fmt.Errorf("read ready line: %w", err)
	}
	return cmd, line, nil
}

func requireRootAndRunc(t *testing.T) string {
	t.Helper()
	testgate.RequireRoot(t, "needs root to run containers with runc")
	hostreq.Need(t, hostreq.StaticBusybox) // the guest's rootfs
	return hostreq.Need(t, "runc")
}

// buildMonitor builds polyvisor-monitor into a temporary directory.
func buildMonitor(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "polyvisor-monitor")
	out, err := exec.Command("go", "build", "-o", bin, "github.com/polyvisor/polyvisor/cmd/polyvisor-monitor").CombinedOutput()
	if err != nil {
		t.Fatalf("build polyvisor-monitor: %v\n%s", err, out)
	}
	return bin
}

// testGuest is one monitored container made for a test, with everything
// needed to check on it and clean it up.
type testGuest struct {
	t   *testing.T
	cfg monitor.Config
	bin string
}

// newTestGuest makes a busybox bundle running args on a terminal, and
// registers the cleanup of everything a monitor may leave when a test
// fails: the monitor, the container, its cgroups.
func newTestGuest(t *testing.T, args []string, logMax int64) *testGuest {
	t.Helper()
	runc := requireRootAndRunc(t)
	base := t.TempDir()
	id := fmt.Sprintf("pvt-%d-%d", os.Getpid(), time.Now().UnixNano()%1e9)
	g := &testGuest{t: t, bin: buildMonitor(t), cfg: monitor.Config{
		ID:       id,
		Bundle:   filepath.Join(base, "bundle"),
		Runc:     runc,
		RuncRoot: filepath.Join(base, "runc"),
		Dir:      filepath.Join(base, "run"),
		Log:      filepath.Join(base, "console.log"),
		LogMax:   logMax,
	}}
	for _, d := range []string{g.cfg.RuncRoot, g.cfg.Dir} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	makeBundle(t, g.cfg.Bundle, id, args)
	t.Cleanup(g.cleanup)
	return g
}

func (g *testGuest) argv() []string {
	return append([]string{g.bin}, g.cfg.Args()...)
}

// cleanup kills the monitor if it is still running (matching its command
// line, so a reused pid is never hit), deletes the container and removes
// its cgroups.
func (g *testGuest) cleanup() {
	if g.t.Failed() {
		if log, err := os.ReadFile(filepath.Join(g.cfg.Dir, monitor.LogName)); err == nil {
			g.t.Logf("monitor.log:\n%s", log)
		}
	}
	for _, pid := range pidsOf(g.bin) {
		syscall.Kill(pid, syscall.SIGKILL)
	}
	exec.Command(g.cfg.Runc, "--root", g.cfg.RuncRoot, "delete", "--force", g.cfg.ID).Run()
	for _, dir := range cgroupDirs(g.cfg.ID) {
		os.Remove(dir)
		os.Remove(filepath.Dir(dir)) // polyvisor-test, if no other test uses it
	}
}

// pidsOf returns the processes running the executable bin.
func pidsOf(bin string) []int {
	var pids []int
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if exe, err := os.Readlink(filepath.Join("/proc", e.Name(), "exe")); err == nil && exe == bin {
			pids = append(pids, pid)
		}
	}
	return pids
}

// cgroupDirs returns where runc puts the cgroup "/polyvisor-test/ID": one
// directory per v1 hierarchy, or one under a v2 root.
func cgroupDirs(id string) []string {
	var dirs []string
	roots, _ := filepath.Glob("/sys/fs/cgroup/*")
	roots = append(roots, "/sys/fs/cgroup")
	for _, root := range roots {
		dirs = append(dirs, filepath.Join(root, "polyvisor-test", id))
	}
	return dirs
}

// makeBundle writes an OCI bundle: a rootfs holding the host's static
// busybox with a symlink per applet, and a config.json running args on a
// terminal in new pid, mount, ipc and uts namespaces.
func makeBundle(t *testing.T, dir, id string, args []string) {
	t.Helper()
	rootfs := filepath.Join(dir, "rootfs")
	for _, d := range []string{"bin", "proc", "dev", "sys", "tmp"} {
		if err := os.MkdirAll(filepath.Join(rootfs, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	busybox, err := os.ReadFile("/bin/busybox")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(rootfs, "bin", "busybox"), busybox, 0o755); err != nil {
		t.Fatal(err)
	}
	applets, err := exec.Command("/bin/busybox", "--list").Output()
	if err != nil {
		t.Fatalf("busybox --list: %v", err)
	}
	for _, applet := range strings.Fields(string(applets)) {
		if applet == "busybox" {
			continue
		}
		if err := os.Symlink("busybox", filepath.Join(rootfs, "bin", applet)); err != nil {
			t.Fatal(err)
		}
	}
	config := map[string]any{
		"ociVersion": "1.0.2",
		"process": map[string]any{
			"terminal": true,
			"user":     map[string]any{"uid": 0, "gid": 0},
			"args":     args,
			"env":      []string{"PATH=/bin", "TERM=xterm", "HOME=/"},
			"cwd":      "/",
		},
		"root":     map[string]any{"path": "rootfs"},
		"hostname": "guest",
		"mounts": []map[string]any{
			{"destination": "/proc", "type": "proc", "source": "proc"},
			{"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": []string{"nosuid", "strictatime", "mode=755", "size=65536k"}},
			{"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": []string{"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"}},
			{"destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": []string{"nosuid", "nodev"}},
		},
		"linux": map[string]any{
			"namespaces": []map[string]any{
				{"type": "pid"}, {"type": "mount"}, {"type": "ipc"}, {"type": "uts"},
			},
			"cgroupsPath": "/polyvisor-test/" + id,
		},
	}
	data, err := json.MarshalIndent(config, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "config.json"), data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// processGone reports whether pid has exited: no such process, or a zombie
// that its new parent (not this test) has yet to reap.
func processGone(pid int) bool {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	_, rest, _ := strings.Cut(string(stat), ") ")
	return strings.HasPrefix(rest, "Z") || strings.HasPrefix(rest, "X")
}

// parentOf returns pid's parent pid.
func parentOf(t *testing.T, pid int) int {
	t.Helper()
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	_, rest, _ := strings.Cut(string(stat), ") ")
	fields := strings.Fields(rest)
	ppid, _ := strconv.Atoi(fields[1])
	return ppid
}

// waitFor polls cond every 20 ms until it holds or timeout passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// smapsRollup returns the named fields of /proc/PID/smaps_rollup, in KiB.
func smapsRollup(t *testing.T, pid int) map[string]int {
	t.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
	if err != nil {
		t.Fatal(err)
	}
	fields := map[string]int{}
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) == 3 && f[2] == "kB" {
			fields[strings.TrimSuffix(f[0], ":")], _ = strconv.Atoi(f[1])
		}
	}
	return fields
}
