package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestChrootJail runs a busybox guest as the original jail: a chroot of
// its tree as a non-root host user, under its limits, sharing what info
// says it shares and nothing more; and refuses what a jail cannot have.
func TestChrootJail(t *testing.T) {
	requireRoot(t)
	d := env.main
	expectError(t, d, "isolation \"jail\": use namespaces (the default) or chroot", "create", "busybox", "e2e-jail-bad", "--isolation", "jail")
	expectError(t, d, "drop --idmap shared", "create", "busybox", "e2e-jail-bad", "--isolation", "chroot", "--idmap", "shared")
	expectError(t, d, "drop --privileged", "create", "busybox", "e2e-jail-bad", "--isolation", "chroot", "--privileged")
	expectError(t, d, "joins no network; drop --network", "create", "busybox", "e2e-jail-bad", "--isolation", "chroot", "--network", "polyvisor0")
	if _, _, code := d.Run("info", "e2e-jail-bad"); code == 0 {
		t.Error("a refused jail was created")
	}

	g := launch(t, d, "busybox", "e2e-jail", "--isolation", "chroot", "--memory", "64MiB", "--processes", "40")
	c := g.Confinement
	if c == nil || c.Isolation != "chroot" || !slices.Equal(c.Namespaces, []string{"mount"}) || len(c.Capabilities) != 0 || len(c.NotIsolated) < 4 || len(g.Networks) != 0 {
		t.Fatalf("info of a jail: confinement %+v, networks %v", c, g.Networks)
	}
	if g.IDMap == nil || g.IDMap.HostUID == 0 {
		t.Fatalf("info of a jail: idmap %+v, want a host range of its own", g.IDMap)
	}
	uid := strconv.Itoa(int(g.IDMap.HostUID))

	// It runs as a non-root host user with no capabilities...
	if id := strings.TrimSpace(d.Must(t, "exec", g.Name, "--", "id", "-u")); id != uid {
		t.Errorf("exec id -u = %s, want the jail's host uid %s", id, uid)
	}
	if capEff := d.Must(t, "exec", g.Name, "--", "grep", "CapEff", "/proc/self/status"); !strings.Contains(capEff, "0000000000000000") {
		t.Errorf("a jail's capabilities: %s", capEff)
	}
	if s, err := os.Stat(fmt.Sprintf("/proc/%d", g.PID)); err != nil {
		t.Fatalf("the jail's init %d is not a host process: %v", g.PID, err)
	} else if st, ok := s.Sys().(*syscall.Stat_t); !ok || strconv.Itoa(int(st.Uid)) != uid {
		t.Errorf("the jail's init runs as host uid %v, want %s", s.Sys(), uid)
	}
	// ...inside its tree, which it owns but cannot leave...
	d.Must(t, "exec", g.Name, "--", "touch", "/etc/written-by-jail")
	if _, _, code := d.Run("exec", g.Name, "--", "ls", "/var/lib/polyvisor"); code == 0 {
		t.Error("the jail sees a host directory outside its tree")
	}
	// ...sharing the host's pids, hostname and network, as info says.
	if _, _, code := d.Run("exec", g.Name, "--", "test", "-d", fmt.Sprintf("/proc/%d", d.PID())); code != 0 {
		t.Error("a jail does not see the host's processes, which info says it shares")
	}
	host, _ := os.Hostname()
	if name := strings.TrimSpace(d.Must(t, "exec", g.Name, "--", "hostname")); name != host {
		t.Errorf("a jail's hostname %q, want the host's %q", name, host)
	}
	if _, _, code := d.Run("exec", g.Name, "--", "kill", "-0", strconv.Itoa(d.PID())); code == 0 {
		t.Error("the jail may signal the daemon, a root process")
	}

	// Its limits hold: the cgroups its init is in carry them.
	if got := cgroupValue(t, g.PID, "memory", "memory.limit_in_bytes"); got != strconv.Itoa(64<<20) {
		t.Errorf("memory limit %s, want %d", got, 64<<20)
	}
	if got := cgroupValue(t, g.PID, "pids", "pids.max"); got != "40" {
		t.Errorf("pids limit %s, want 40", got)
	}

	began := time.Now()
	d.Must(t, "stop", g.Name)
	if took := time.Since(began); took > 8*time.Second {
		t.Errorf("a jail's polite stop took %s: its shell did not end on the hang-up", took)
	}
	if err := syscall.Kill(g.PID, 0); err == nil {
		t.Errorf("the jail's init %d outlived its stop", g.PID)
	}
}

// cgroupValue reads a cgroup v1 controller's file of the cgroup pid is in.
func cgroupValue(t *testing.T, pid int, controller, file string) string {
	t.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) == 3 && slices.Contains(strings.Split(parts[1], ","), controller) {
			v, err := os.ReadFile(filepath.Join("/sys/fs/cgroup", controller, parts[2], file))
			if err != nil {
				t.Fatal(err)
			}
			return strings.TrimSpace(string(v))
		}
	}
	t.Fatalf("process %d is in no %s cgroup: %s", pid, controller, data)
	return ""
}
