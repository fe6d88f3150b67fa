package e2e

import (
	"archive/tar"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/polyvisor/polyvisor/internal/guest"
	"github.com/polyvisor/polyvisor/internal/layout"
	"github.com/polyvisor/polyvisor/internal/testenv"
	"github.com/polyvisor/polyvisor/pkg/api"
)

// loopDevicesUnder lists the loop devices whose backing file lies in dir.
func loopDevicesUnder(t *testing.T, dir string) []string {
	t.Helper()
	files, err := filepath.Glob("/sys/block/loop*/loop/backing_file")
	if err != nil {
		t.Fatal(err)
	}
	var devs []string
	for _, f := range files {
		if data, err := os.ReadFile(f); err == nil && strings.HasPrefix(string(data), dir+"/") {
			devs = append(devs, f+": "+strings.TrimSpace(string(data)))
		}
	}
	return devs
}

// rootDisk is a guest's root disk as info reports it.
func rootDisk(t *testing.T, g api.Guest) api.Disk {
	t.Helper()
	for _, disk := range g.Disks {
		if disk.Name == "root" {
			return disk
		}
	}
	t.Fatalf("%s has no root disk: %+v", g.Name, g.Disks)
	return api.Disk{}
}

// allocated is the space a file takes on the host's file system.
func allocated(t *testing.T, path string) int64 {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	return st.Blocks * 512
}

// requireNoLayerLeft fails unless nothing of a guest's disk quota is left:
// no mount under its directory, no loop device on a file in it.
func requireNoLayerLeft(t *testing.T, d *testenv.Daemon, name string) {
	t.Helper()
	dir := layout.New(d.StateDir).GuestDir(name)
	if mounted(t, filepath.Join(dir, "disks", "layer")) || mounted(t, filepath.Join(dir, "rootfs")) {
		t.Errorf("%s: a mount is left in %s", name, dir)
	}
	if devs := loopDevicesUnder(t, dir); len(devs) > 0 {
		t.Errorf("%s: loop devices left: %v", name, devs)
	}
}

// TestDiskQuotaBoundsAGuestsWrites: a guest launched with --disk 64MiB that
// writes 200 MiB gets "No space left on device", takes no more than its
// quota of the host's disk, and another guest goes on writing. info and
// list report the usage running and stopped; the quota grows while
// stopped and never shrinks; delete leaves no mount, loop device or image.
func TestDiskQuotaBoundsAGuestsWrites(t *testing.T) {
	requireRoot(t)
	d := env.main
	l := layout.New(d.StateDir)
	g := launch(t, d, "busybox", "e2e-quota", "--disk", "64MiB")
	root := rootDisk(t, g)
	if root.Kind != guest.DiskOverlayImage || root.Size != 64<<20 || root.Used > 1<<20 {
		t.Fatalf("root disk of a fresh guest with --disk 64MiB: %+v", root)
	}
	image := filepath.Join(l.GuestDir(g.Name), "disks", "layer.img")
	var host unix.Statfs_t
	if err := unix.Statfs(d.StateDir, &host); err != nil {
		t.Fatal(err)
	}
	freeBefore := int64(host.Bavail) * host.Bsize

	_, errOut, code := d.Run("exec", g.Name, "--", "dd", "if=/dev/zero", "of=/fill", "bs=1M", "count=200")
	if code == 0 || !strings.Contains(errOut, "No space left on device") {
		t.Fatalf("dd of 200 MiB into a 64 MiB quota: exit %d, stderr %q; want No space left on device", code, errOut)
	}
	if err := unix.Statfs(d.StateDir, &host); err != nil {
		t.Fatal(err)
	}
	// Other programs share the host's disk: its free space is only logged;
	// the image's own allocation is what the quota bounds.
	t.Logf("host free space: %d MiB before the fill, %d MiB after", freeBefore>>20, (int64(host.Bavail)*host.Bsize)>>20)
	if a := allocated(t, image); a > 64<<20 {
		t.Errorf("the quota image takes %d bytes of the host's disk, more than its 64 MiB", a)
	}
	full := rootDisk(t, info(t, d, g.Name))
	if full.Used < 48<<20 || full.Used > full.Size {
		t.Errorf("usage after the fill (running): %+v; want most of 64 MiB used", full)
	}
	if table := d.Must(t, "list"); !strings.Contains(table, "DISK") || !strings.Contains(table, "/64MiB") {
		t.Errorf("list shows no disk usage of 64MiB:\n%s", table)
	}

	other := launch(t, d, "busybox", "e2e-quota-other")
	if disk := rootDisk(t, other); disk.Kind != guest.DiskOverlayImage || disk.Size != int64(guest.DefaultDiskQuota) {
		t.Errorf("a guest launched without --disk: root disk %+v, want the default quota %s", disk, guest.DefaultDiskQuota)
	}
	expectOutput(t, d, other.Name, "16\n", "sh", "-c", "dd if=/dev/zero of=/data bs=1M count=16 2>/dev/null && du -m /data | cut -f1")

	d.Must(t, "stop", g.Name, "--force")
	requireNoLayerLeft(t, d, g.Name)
	stopped := rootDisk(t, info(t, d, g.Name))
	if stopped.Used < 48<<20 || stopped.Used > stopped.Size {
		t.Errorf("usage after the fill (stopped, from the image): %+v", stopped)
	}
	if _, errOut, code := d.Run("config", "set", g.Name, "disk=32MiB"); code == 0 || !strings.Contains(errOut, "disks only grow") || strings.Count(strings.TrimSpace(errOut), "\n") > 0 {
		t.Errorf("shrinking the quota: exit %d, %q; want one line saying disks only grow", code, errOut)
	}
	d.Must(t, "config", "set", g.Name, "disk=128MiB")
	if grown := rootDisk(t, info(t, d, g.Name)); grown.Size != 128<<20 {
		t.Errorf("after config set disk=128MiB: %+v", grown)
	}
	d.Must(t, "start", g.Name)
	d.Must(t, "exec", g.Name, "--", "dd", "if=/dev/zero", "of=/more", "bs=1M", "count=40")
	if _, errOut, code := d.Run("exec", g.Name, "--", "dd", "if=/dev/zero", "of=/most", "bs=1M", "count=100"); code == 0 || !strings.Contains(errOut, "No space left on device") {
		t.Errorf("after growing to 128 MiB, 100 MiB more: exit %d, %q; want No space left on device", code, errOut)
	}

	d.Must(t, "delete", "--force", g.Name)
	requireNoLayerLeft(t, d, g.Name)
	if _, err := os.Stat(image); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the quota image is left after delete: %v", err)
	}
}

// TestDiskQuotaRefusals: a bad --disk is one line naming it, and leaves
// nothing; --copy has no quota and refuses --disk; --disk none makes a
// guest without one, as guests made before quotas are.
func TestDiskQuotaRefusals(t *testing.T) {
	requireRoot(t)
	d := env.main
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"launch", "busybox", "e2e-quota-bad", "--disk", "0"}, "--disk 0: give at least 16MiB"},
		{[]string{"launch", "busybox", "e2e-quota-bad", "--disk", "65TiB"}, "--disk 65TiB: use at most 64TiB"},
		{[]string{"launch", "busybox", "e2e-quota-bad", "--disk", "lots"}, `--disk: "lots" is not a size`},
		{[]string{"launch", "busybox", "e2e-quota-bad", "--copy", "--disk", "1GiB"}, "no quota bounds; drop --disk, or drop --copy"},
	} {
		_, errOut, code := d.Run(c.args...)
		if code == 0 || !strings.Contains(errOut, c.want) || strings.Count(strings.TrimSpace(errOut), "\n") > 0 {
			t.Errorf("%s: exit %d, %q; want one line saying %q", strings.Join(c.args, " "), code, errOut, c.want)
		}
	}
	if _, err := os.Stat(layout.New(d.StateDir).GuestDir("e2e-quota-bad")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a refused launch left its guest: %v", err)
	}
	g := launch(t, d, "busybox", "e2e-quota-none", "--disk", "none")
	if disk := rootDisk(t, g); disk.Kind != "overlay-upper" || disk.Size != 0 {
		t.Errorf("--disk none: root disk %+v, want an unbounded overlay-upper", disk)
	}
	expectOutput(t, d, g.Name, "ok\n", "sh", "-c", "echo ok > /root/x && cat /root/x")
	if _, errOut, code := d.Run("config", "set", g.Name, "disk=1GiB"); code == 0 || !strings.Contains(errOut, "has no disk quota") {
		t.Errorf("config set disk= on a guest without a quota: exit %d, %q", code, errOut)
	}
}

// TestDiskQuotaSurvivesSnapshotsCopiesAndADaemonRestart: a quota'd guest's
// layer is snapshotted running and restored stopped, copied (the copy has
// a quota of the same size, enforced), exported, and adopted by a
// restarted daemon with its mounts reused; a guest that died while no
// daemon watched has its quota image unmounted by the reconcile.
func TestDiskQuotaSurvivesSnapshotsCopiesAndADaemonRestart(t *testing.T) {
	requireRoot(t)
	d := ownDaemon(t)
	d.Must(t, "launch", "busybox", "q1", "--disk", "64MiB")
	d.Must(t, "exec", "q1", "--", "sh", "-c", "echo before > /root/mark; rm /bin/vi")
	d.Must(t, "snapshot", "create", "q1", "s1")
	d.Must(t, "exec", "q1", "--", "sh", "-c", "echo after > /root/mark; echo new > /root/new")
	d.Must(t, "stop", "q1", "--force")
	d.Must(t, "snapshot", "restore", "q1", "s1")
	requireNoLayerLeft(t, d, "q1")
	d.Must(t, "copy", "q1", "q2")
	requireNoLayerLeft(t, d, "q2")
	tarball := filepath.Join(t.TempDir(), "q1.tar")
	d.Must(t, "export", "q1", tarball, "--format", "tar")
	requireNoLayerLeft(t, d, "q1")
	members := map[string]string{}
	readTar(t, tarball, func(h *tar.Header, body []byte) { members[strings.TrimPrefix(h.Name, "./")] = string(body) })
	if _, vi := members["bin/vi"]; vi || members["root/mark"] != "before\n" {
		t.Errorf("exported tree: bin/vi present %v, root/mark %q; want the snapshot's view", vi, members["root/mark"])
	}

	d.Must(t, "start", "q1")
	expectOutput(t, d, "q1", "before\n", "cat", "/root/mark")
	expectOutput(t, d, "q1", "gone\n", "sh", "-c", "test -e /root/new || test -e /bin/vi || echo gone")
	q2 := info(t, d, "q2")
	if disk := rootDisk(t, q2); disk.Kind != guest.DiskOverlayImage || disk.Size != 64<<20 {
		t.Errorf("the copy's root disk: %+v, want a 64MiB quota", disk)
	}
	d.Must(t, "start", "q2")
	expectOutput(t, d, "q2", "before\n", "cat", "/root/mark")
	if _, errOut, code := d.Run("exec", "q2", "--", "dd", "if=/dev/zero", "of=/fill", "bs=1M", "count=100"); code == 0 || !strings.Contains(errOut, "No space left on device") {
		t.Errorf("the copy's quota: exit %d, %q", code, errOut)
	}

	q1, q2 := info(t, d, "q1"), info(t, d, "q2")
	d.Kill()
	if p, err := os.FindProcess(q2.PID); err == nil { // q2 dies while no daemon watches
		p.Kill()
	}
	if err := d.Restart(); err != nil {
		t.Fatal(err)
	}
	if after := info(t, d, "q1"); after.State != api.StateRunning || after.PID != q1.PID {
		t.Fatalf("q1 after the restart: %+v", after)
	}
	expectOutput(t, d, "q1", "adopted\n", "sh", "-c", "echo adopted > /root/adopted && cat /root/adopted")
	if devs := loopDevicesUnder(t, layout.New(d.StateDir).GuestDir("q1")); len(devs) != 1 {
		t.Errorf("q1's loop devices after the restart: %v, want its one, reused", devs)
	}
	if got := info(t, d, "q2"); got.State != api.StateStopped {
		t.Errorf("q2, killed while no daemon watched: %+v", got)
	}
	requireNoLayerLeft(t, d, "q2")
	d.Must(t, "delete", "--force", "q1")
	d.Must(t, "delete", "--force", "q2")
	requireNoLayerLeft(t, d, "q1")
}
