package e2e

import (
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/polyvisor/polyvisor/internal/driver/qemu"
	"github.com/polyvisor/polyvisor/internal/layout"
	"github.com/polyvisor/polyvisor/internal/testenv"
	"github.com/polyvisor/polyvisor/pkg/api"
)

// procStatus reads the fields of /proc/PID/status.
func procStatus(t *testing.T, pid int) map[string]string {
	t.Helper()
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		t.Fatal(err)
	}
	fields := map[string]string{}
	for _, line := range strings.Split(string(data), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok {
			fields[k] = strings.TrimSpace(v)
		}
	}
	return fields
}

// checkConfined fails the test for each way the VM's QEMU is not confined:
// it must run as polyvisor's QEMU user (real, effective, saved and file
// system ids) with no capability left, under QEMU's seccomp sandbox, in
// the guest's cgroup with its limits, and its sockets must be root's alone.
func checkConfined(t *testing.T, d *testenv.Daemon, g api.Guest) {
	t.Helper()
	status := procStatus(t, g.PID)
	want := "(no such user)"
	if u, err := user.Lookup(qemu.User); err == nil {
		want = strings.Join([]string{u.Uid, u.Uid, u.Uid, u.Uid}, "\t")
	}
	if status["Uid"] != want {
		t.Errorf("QEMU %d runs with uids %q, want %s's %q", g.PID, status["Uid"], qemu.User, want)
	}
	if strings.HasPrefix(status["Gid"], "0") || strings.Contains(status["Gid"], "\t0") {
		t.Errorf("QEMU %d runs with gids %q, root's among them", g.PID, status["Gid"])
	}
	for _, capSet := range []string{"CapEff", "CapPrm", "CapInh", "CapAmb"} {
		if status[capSet] != "0000000000000000" {
			t.Errorf("QEMU %d has %s %s, want none", g.PID, capSet, status[capSet])
		}
	}
	if status["Seccomp"] != "2" {
		t.Errorf("QEMU %d: Seccomp %q, want 2 (a filter: QEMU's -sandbox)", g.PID, status["Seccomp"])
	}

	l := layout.New(d.StateDir)
	cgroup := l.GuestCgroup(g.Name)
	data, err := os.ReadFile("/proc/" + strconv.Itoa(g.PID) + "/cgroup")
	if err != nil {
		t.Fatal(err)
	}
	in := map[string]bool{}
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) == 3 && parts[2] == cgroup {
			in[parts[1]] = true
		}
	}
	if !(in["memory"] && in["cpu"] || in[""]) {
		t.Errorf("QEMU %d is not in cgroup %s for memory and cpu:\n%s", g.PID, cgroup, data)
	}
	limit := strconv.FormatInt(g.Memory+qemu.MemoryOverhead(g.Accel), 10)
	if got := readTrimmed(t, cgroupFile(d, g.Name, "memory", "memory.limit_in_bytes")); got != limit {
		t.Errorf("memory.limit_in_bytes %s, want the guest's %d bytes and QEMU's %s overhead: %s", got, g.Memory, g.Accel, limit)
	}
	if got := readTrimmed(t, cgroupFile(d, g.Name, "cpu", "cpu.cfs_quota_us")); got != strconv.Itoa(g.CPUs*100000) {
		t.Errorf("cpu.cfs_quota_us %s, want %d cpus' worth of 100000 us", got, g.CPUs)
	}

	for _, sock := range []string{"qmp.sock", "agent.sock", "console.sock"} {
		var st syscall.Stat_t
		path := filepath.Join(l.GuestRunDir(g.Name), sock)
		if err := syscall.Stat(path, &st); err != nil {
			t.Errorf("%s: %v", sock, err)
			continue
		}
		if st.Mode&0o777 != 0o600 || st.Uid != 0 {
			t.Errorf("%s: mode %o owner %d, want 0600 root's", sock, st.Mode&0o777, st.Uid)
		}
	}
}

func readTrimmed(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Errorf("%v", err)
	}
	return strings.TrimSpace(string(data))
}

// TestAVMsQEMUIsConfined: a VM's QEMU runs unprivileged, sandboxed and
// limited, and the guest still does all it did as root: exec, snapshots
// over QMP, stop and start, a daemon restart that adopts it, delete --force;
// its cgroup goes when it stops.
func TestAVMsQEMUIsConfined(t *testing.T) {
	requireRoot(t)
	d := ownDaemonWithVM(t)
	g := launch(t, d, "busybox", "confined", "--type", "vm", "--memory", "256MiB", "--cpus", "1")
	checkConfined(t, d, g)

	// What QEMU does after dropping root: writes to its disks, internal
	// snapshots over QMP, a live grow of its disk.
	d.Must(t, "exec", g.Name, "--", "sh", "-c", "echo one > /root/mark; sync")
	d.Must(t, "snapshot", "create", g.Name, "s1")
	d.Must(t, "exec", g.Name, "--", "sh", "-c", "echo two > /root/mark; sync")
	if out := d.Must(t, "config", "set", g.Name, "disk.root.size=200MiB"); !strings.Contains(out, "applied live") {
		t.Errorf("growing the confined VM's disk said: %s", out)
	}
	d.Must(t, "snapshot", "create", g.Name, "s2")
	d.Must(t, "snapshot", "delete", g.Name, "s2")

	l := layout.New(d.StateDir)
	cgroup := l.GuestCgroup(g.Name)
	d.Must(t, "stop", g.Name, "--timeout", "30s")
	if alive(g.PID) {
		t.Fatal("QEMU still runs after stop")
	}
	if dirs := existing(testenv.CgroupDirs(cgroup)); len(dirs) > 0 {
		t.Errorf("a stopped VM's cgroup is left: %v", dirs)
	}
	d.Must(t, "snapshot", "restore", g.Name, "s1")
	d.Must(t, "start", g.Name)
	if out := d.Must(t, "exec", g.Name, "--", "cat", "/root/mark"); out != "one\n" {
		t.Errorf("after restoring s1 the mark reads %q", out)
	}

	// A daemon restart adopts the confined QEMU.
	g = info(t, d, g.Name)
	d.Kill()
	if err := d.Restart(); err != nil {
		t.Fatal(err)
	}
	if out := d.Must(t, "exec", g.Name, "--", "echo", "adopted"); out != "adopted\n" {
		t.Errorf("exec after a daemon restart: %q", out)
	}
	checkConfined(t, d, info(t, d, g.Name))

	d.Must(t, "delete", "--force", g.Name)
	if alive(g.PID) {
		t.Error("QEMU still runs after delete --force")
	}
	if dirs := existing(testenv.CgroupDirs(cgroup)); len(dirs) > 0 {
		t.Errorf("a deleted VM's cgroup is left: %v", dirs)
	}
}
