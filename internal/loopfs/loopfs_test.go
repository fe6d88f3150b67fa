package loopfs

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/polyvisor/polyvisor/internal/fsutil"
	"github.com/polyvisor/polyvisor/internal/testgate"
	"golang.org/x/sys/unix"
)

func requireRoot(t *testing.T) {
	t.Helper()
	testgate.RequireRoot(t, "loop devices and mounts need root")
	if _, err := os.Stat("/dev/loop-control"); err != nil {
		t.Skipf("no loop devices on this host: %v", err)
	}
}

// loopsOf lists the loop devices whose backing file is image.
func loopsOf(t *testing.T, image string) []string {
	t.Helper()
	files, _ := filepath.Glob("/sys/block/loop*/loop/backing_file")
	var devs []string
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err == nil && strings.TrimSpace(string(data)) == image {
			devs = append(devs, f)
		}
	}
	return devs
}

// TestImageBoundsWrites: a 32 MiB image takes writes until its file
// system is full (ENOSPC), reports its usage mounted and not, grows
// online and offline, and leaves no mount and no loop device behind.
func TestImageBoundsWrites(t *testing.T) {
	requireRoot(t)
	ctx := context.Background()
	dir := t.TempDir()
	seed := filepath.Join(dir, "seed")
	if err := os.MkdirAll(filepath.Join(seed, "upper"), 0o711); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(filepath.Join(seed, "upper"), 100000, 100000); err != nil {
		t.Fatal(err)
	}
	image, target := filepath.Join(dir, "layer.img"), filepath.Join(dir, "layer")
	if err := os.Mkdir(target, 0o711); err != nil {
		t.Fatal(err)
	}
	if err := Make(ctx, image, 32<<20, seed); err != nil {
		t.Fatal(err)
	}
	var st unix.Stat_t
	if err := unix.Stat(image, &st); err != nil || st.Size != 32<<20 || st.Blocks*512 >= 16<<20 {
		t.Fatalf("image: size %d, allocated %d (%v); want a sparse 32 MiB file", st.Size, st.Blocks*512, err)
	}
	if u, err := UsageOf(image, target); err != nil || u.Size != 32<<20 || u.Used > 1<<20 {
		t.Fatalf("usage of the new image: %+v, %v; want next to nothing used of 32 MiB", u, err)
	}
	if err := Mount(ctx, image, target); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fsutil.Unmount(target) })
	if err := Mount(ctx, image, target); err != nil { // a second mount is a no-op
		t.Fatalf("mount again: %v", err)
	}
	if n := len(loopsOf(t, image)); n != 1 {
		t.Fatalf("%d loop devices back the image, want 1", n)
	}
	if err := unix.Stat(filepath.Join(target, "upper"), &st); err != nil || st.Uid != 100000 {
		t.Fatalf("seeded upper: uid %d, %v; want 100000", st.Uid, err)
	}
	var fs unix.Statfs_t
	if err := unix.Statfs(target, &fs); err != nil {
		t.Fatal(err)
	}
	if err := unix.Stat(target, &st); err == nil && st.Mode&unix.S_ISUID != 0 {
		t.Fatal("setuid on the mount's root")
	}
	if fs.Flags&unix.ST_NOSUID == 0 || fs.Flags&unix.ST_NODEV == 0 {
		t.Errorf("mount flags %#x: want nosuid and nodev", fs.Flags)
	}
	werr := fill(filepath.Join(target, "upper", "fill"), 64<<20)
	if !errors.Is(werr, unix.ENOSPC) {
		t.Fatalf("writing 64 MiB into a 32 MiB image: %v, want ENOSPC", werr)
	}
	u, err := UsageOf(image, target)
	if err != nil || u.Size != 32<<20 || u.Used < 24<<20 || u.Used > u.Size {
		t.Fatalf("usage while mounted: %+v, %v; want nearly all of 32 MiB used", u, err)
	}
	if err := Grow(image, 48<<20); err != nil {
		t.Fatalf("grow while mounted: %v", err)
	}
	if err := fsutil.Unmount(target); err != nil {
		t.Fatal(err)
	}
	if mounted, _ := fsutil.IsMountPoint(target); mounted {
		t.Fatal("still mounted after Unmount")
	}
	waitReleased(t, image)
	stopped, err := UsageOf(image, target)
	if err != nil || stopped.Size != 48<<20 || stopped.Used < 24<<20 || stopped.Used > 32<<20 {
		t.Fatalf("usage from the image: %+v, %v; want about 32 MiB used of 48", stopped, err)
	}
	if err := Mount(ctx, image, target); err != nil { // fits the file system to 48 MiB
		t.Fatal(err)
	}
	if err := unix.Statfs(target, &fs); err != nil || int64(fs.Blocks)*fs.Bsize <= 40<<20 {
		t.Fatalf("after grow and mount: %d bytes, %v; want about 48 MiB", int64(fs.Blocks)*fs.Bsize, err)
	}
	if err := fsutil.Unmount(target); err != nil {
		t.Fatal(err)
	}
	if err := Grow(image, 32<<20); err == nil {
		t.Fatal("shrinking was not refused")
	}
	waitReleased(t, image)
}

// waitReleased fails t unless image's loop device is gone within 10 s of
// the unmount. The kernel releases an autoclear device when the mount's
// last reference goes, which is not always at umount's return: a mount
// namespace another process cloned meanwhile (runc, ip netns exec, in a
// test package running beside this one) holds its copy until it is torn
// down.
func waitReleased(t *testing.T, image string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		devs := loopsOf(t, image)
		if len(devs) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("loop devices left 10 s after unmount: %v", devs)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestMakeRefusesBadSizes: too small or not whole blocks, and nothing is
// left behind.
func TestMakeRefusesBadSizes(t *testing.T) {
	dir := t.TempDir()
	for _, size := range []int64{0, -1, MinSize - blockSize, MinSize + 1} {
		image := filepath.Join(dir, "x.img")
		if err := Make(context.Background(), image, size, ""); err == nil {
			t.Errorf("size %d accepted", size)
		}
		if _, err := os.Stat(image); err == nil {
			t.Errorf("size %d left %s", size, image)
		}
	}
}

func fill(path string, n int) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	buf := make([]byte, 1<<20)
	for i := range buf {
		buf[i] = byte(i)
	}
	for written := 0; written < n; written += len(buf) {
		if _, err := f.Write(buf); err != nil {
			f.Close()
			return err
		}
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
