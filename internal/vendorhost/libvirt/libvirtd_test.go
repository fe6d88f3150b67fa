package libvirt

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/polyvisor/polyvisor/internal/libvirtd"
)

// testDaemon is the test's private libvirtd (internal/libvirtd: mount and
// network namespaces of its own, every file under its directory).
type testDaemon struct {
	*libvirtd.Daemon
	dir     string
	stopped bool
}

// socket is the daemon's read-write socket.
func (d *testDaemon) socket() string { return d.Socket() }

// startTestDaemon starts libvirtd with QEMU (only qemu-system-x86_64 and
// qemu-img on its PATH) and LXC, stopped by t.Cleanup with every domain it
// still runs.
func startTestDaemon(t *testing.T, ctx context.Context) *testDaemon {
	t.Helper()
	// Alone with the host's machine cgroup until the checks of stop.
	release, err := libvirtd.Exclusive(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(release)
	dir, err := os.MkdirTemp("", "pv-lvd-") // short: unix socket paths
	if err != nil {
		t.Fatal(err)
	}
	ld, err := libvirtd.Start(ctx, libvirtd.Options{Dir: dir, Programs: []string{"qemu-system-x86_64", "qemu-img"}, LXC: true})
	if err != nil {
		os.RemoveAll(dir)
		t.Fatal(err)
	}
	d := &testDaemon{Daemon: ld, dir: dir}
	t.Cleanup(func() { d.stop(t) })
	return d
}

// stop destroys what still runs (by killing the processes of the daemon's
// namespaces, by pid), stops libvirtd, removes the cgroups libvirt made
// and the directory, and fails the test if a process, cgroup or mount is
// left.
func (d *testDaemon) stop(t *testing.T) {
	if d.stopped {
		return
	}
	d.stopped = true
	nss := d.Namespaces()
	d.KillGuests()
	if err := d.Stop(); err != nil {
		t.Error(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	var left []string
	for {
		left = d.Processes(nss)
		if len(left) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if len(left) > 0 {
		t.Errorf("processes left by the test's libvirtd: %q", left)
	}
	// qemu-ID-NAME.libvirt-qemu, lxc-PID-NAME.libvirt-lxc
	if err := d.RemoveCgroups(func(domain string) bool { return strings.HasPrefix(domain, testPrefix) }); err != nil {
		t.Errorf("cgroups: %v", err)
	}
	mounts, _ := os.ReadFile("/proc/self/mountinfo")
	if bytes.Contains(mounts, []byte(d.dir)) {
		t.Errorf("mounts under %s are left on the host", d.dir)
	}
	if t.Failed() {
		data, _ := os.ReadFile(filepath.Join(d.dir, "libvirtd.log"))
		t.Logf("libvirtd's log, last lines: %s", lastLines(string(data), 15))
	}
	if err := os.RemoveAll(d.dir); err != nil {
		t.Errorf("remove %s: %v", d.dir, err)
	}
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
