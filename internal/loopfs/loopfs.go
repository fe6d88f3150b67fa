// Package loopfs keeps a file system in an image file: a sparse file made
// with mke2fs, attached through a loop device that the kernel releases with
// its last user (LO_FLAGS_AUTOCLEAR), and mounted nosuid,nodev. The image's
// size bounds what can be written into it, so the container driver holds a
// guest's writable layer in one as its disk quota.
//
// No loop device outlives its mount: Mount attaches one by ioctls and
// closes it once the mount holds it, so unmounting (or a crash before the
// mount) releases it without a losetup -d.
package loopfs

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/polyvisor/polyvisor/internal/fsutil"
	"github.com/polyvisor/polyvisor/internal/growfs"
	"github.com/polyvisor/polyvisor/internal/runcmd"
)

// MinSize is the smallest image Make makes: below it ext4's journal and
// metadata leave too little room to be of use.
const MinSize = 16 << 20

// blockSize is the file system's block size, whatever the image's size
// (mke2fs picks 1 KiB blocks below 512 MiB): sizes are multiples of it.
const blockSize = 4096

// Make creates image as a sparse file of size bytes holding an empty ext4
// file system, filled with the tree seed (owners, modes and extended
// attributes kept) when seed is not "". On failure image is removed.
func Make(ctx context.Context, image string, size int64, seed string) (err error) {
	if size < MinSize || size%blockSize != 0 {
		return fmt.Errorf("make %s: size %d: want a multiple of %d of at least %d bytes", filepath.Base(image), size, blockSize, MinSize)
	}
	f, err := os.OpenFile(image, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("make %s: %w", filepath.Base(image), err)
	}
	defer func() {
		if err != nil {
			os.Remove(image)
		}
	}()
	err = f.Truncate(size)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("make %s: %w", filepath.Base(image), err)
	}
	// -m 0: no blocks reserved for root, whom the guest's root is not on
	// the host, so the guest gets the whole size. mke2fs discards (punches)
	// the file first, which lets it skip zeroing the inode tables, so the
	// image stays sparse and the kernel has no lazy init to write later.
	args := []string{"-q", "-F", "-t", "ext4", "-b", strconv.Itoa(blockSize), "-m", "0",
		"-E", "lazy_itable_init=1,lazy_journal_init=1", "-L", "polyvisor-layer"}
	if seed != "" {
		args = append(args, "-d", seed)
	}
	args = append(args, image)
	if err = runcmd.Run(ctx, runcmd.Cmd{Name: "mke2fs", Args: args}); err != nil {
		return fmt.Errorf("make %s: %w", filepath.Base(image), err)
	}
	return nil
}

// Mount mounts image's file system on target (an existing directory)
// through a fresh loop device, nosuid and nodev, unless something is
// mounted there already (a restarted daemon finds its mounts and reuses
// them). A file system smaller than its image (see Grow) is fitted first.
func Mount(ctx context.Context, image, target string) error {
	if mounted, err := fsutil.IsMountPoint(target); err != nil || mounted {
		return err
	}
	if err := Fit(ctx, image); err != nil {
		return err
	}
	dev, err := attach(image)
	if err != nil {
		return fmt.Errorf("mount %s: %w", filepath.Base(image), err)
	}
	// Closing our handle leaves the mount the loop device's only user;
	// should the mount fail, it releases the device at once.
	defer dev.Close()
	if err := unix.Mount(dev.Name(), target, "ext4", unix.MS_NOSUID|unix.MS_NODEV, ""); err != nil {
		return fmt.Errorf("mount %s on %s: %w", filepath.Base(image), target, err)
	}
	return nil
}

// attach binds image to a free loop device, which clears itself when its
// last user closes it, and returns the device open.
func attach(image string) (*os.File, error) {
	backing, err := os.OpenFile(image, os.O_RDWR, 0)
	if err != nil {
		return nil, err
	}
	defer backing.Close()
	ctl, err := os.OpenFile("/dev/loop-control", os.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("loop devices: %w (load the loop module: modprobe loop; or create guests with --disk none)", err)
	}
	defer ctl.Close()
	// Another program may take the free device between the two calls: the
	// configure fails with EBUSY and the next free one is tried.
	for range 16 {
		n, err := unix.IoctlRetInt(int(ctl.Fd()), unix.LOOP_CTL_GET_FREE)
		if err != nil {
			return nil, fmt.Errorf("find a free loop device: %w", err)
		}
		dev, err := os.OpenFile("/dev/loop"+strconv.Itoa(n), os.O_RDWR, 0)
		if err != nil {
			return nil, fmt.Errorf("open loop device %d: %w", n, err)
		}
		// Direct I/O on the image, in blocks of the file system's size:
		// the guest's writes are cached once (in the ext4 on top), not a
		// second time in the image's page cache, and an fsync in the guest
		// does not flush the whole image.
		cfg := unix.LoopConfig{Fd: uint32(backing.Fd()), Size: blockSize}
		cfg.Info.Flags = unix.LO_FLAGS_AUTOCLEAR | unix.LO_FLAGS_DIRECT_IO
		copy(cfg.Info.File_name[:unix.LO_NAME_SIZE-1], image)
		err = unix.IoctlLoopConfigure(int(dev.Fd()), &cfg)
		if errors.Is(err, unix.EINVAL) {
			// A file system without O_DIRECT: buffered, then.
			cfg.Info.Flags &^= unix.LO_FLAGS_DIRECT_IO
			err = unix.IoctlLoopConfigure(int(dev.Fd()), &cfg)
		}
		if err == nil {
			return dev, nil
		}
		dev.Close()
		if !errors.Is(err, unix.EBUSY) {
			return nil, fmt.Errorf("attach loop device %d: %w", n, err)
		}
	}
	return nil, errors.New("attach a loop device: every free one was taken meanwhile")
}

// Usage is how full an image's file system is, in bytes.
type Usage struct {
	Size int64 // the image's size
	// Used is what the guest's files take, as df inside the guest counts
	// it: the file system's blocks less its own metadata (journal, inode
	// tables) and its free blocks.
	Used int64
}

// UsageOf measures image's file system: its free space from the mounted
// one on target (statfs) when it is mounted there, else from the image's
// superblock, which is exact once unmounted.
func UsageOf(image, target string) (Usage, error) {
	f, err := os.Open(image)
	if err != nil {
		return Usage{}, fmt.Errorf("usage of %s: %w", filepath.Base(image), err)
	}
	defer f.Close()
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return Usage{}, fmt.Errorf("usage of %s: %w", filepath.Base(image), err)
	}
	// The block count on disk holds while mounted: nothing resizes online.
	sb, err := growfs.ReadSuperblock(f)
	if err != nil {
		return Usage{}, fmt.Errorf("usage of %s: %w", filepath.Base(image), err)
	}
	free := int64(sb.Free * sb.BlockSize)
	// Mounted when target is on another device than the image beside it:
	// one stat, not a read of the mount table, since list asks this of
	// every guest.
	var at unix.Stat_t
	if unix.Stat(target, &at) == nil && at.Dev != st.Dev {
		var fs unix.Statfs_t
		if err := unix.Statfs(target, &fs); err != nil {
			return Usage{}, fmt.Errorf("usage of %s: %w", filepath.Base(image), err)
		}
		free = int64(fs.Bfree) * fs.Bsize
	}
	return Usage{Size: st.Size, Used: int64((sb.Blocks-sb.Overhead)*sb.BlockSize) - free}, nil
}

// Grow makes image size bytes long (it never shrinks); its file system
// fills the new size at its next Mount. Offline, because the kernel's
// online resize (EXT4_IOC_RESIZE_FS) needs CAP_SYS_RESOURCE, which root
// lacks on some hosts.
func Grow(image string, size int64) error {
	var st unix.Stat_t
	if err := unix.Stat(image, &st); err != nil {
		return fmt.Errorf("grow %s: %w", filepath.Base(image), err)
	}
	if size < st.Size || size%blockSize != 0 {
		return fmt.Errorf("grow %s to %d bytes: want a multiple of %d of at least its %d", filepath.Base(image), size, blockSize, st.Size)
	}
	if err := os.Truncate(image, size); err != nil {
		return fmt.Errorf("grow %s: %w", filepath.Base(image), err)
	}
	return nil
}

// Fit grows image's file system, which must not be mounted, to fill the
// image when Grow made the image larger: e2fsck first, as resize2fs
// demands.
func Fit(ctx context.Context, image string) error {
	var st unix.Stat_t
	if err := unix.Stat(image, &st); err != nil {
		return fmt.Errorf("fit %s: %w", filepath.Base(image), err)
	}
	f, err := os.Open(image)
	if err != nil {
		return fmt.Errorf("fit %s: %w", filepath.Base(image), err)
	}
	sb, err := growfs.ReadSuperblock(f)
	f.Close()
	if err != nil {
		return fmt.Errorf("fit %s: %w", filepath.Base(image), err)
	}
	if int64(sb.Bytes()) >= st.Size {
		return nil
	}
	if err := waitDetached(ctx, image); err != nil {
		return fmt.Errorf("fit %s: %w", filepath.Base(image), err)
	}
	if err := runcmd.Run(ctx, runcmd.Cmd{Name: "e2fsck", Args: []string{"-f", "-p", image}}); err != nil {
		return fmt.Errorf("fit %s: %w", filepath.Base(image), err)
	}
	if err := runcmd.Run(ctx, runcmd.Cmd{Name: "resize2fs", Args: []string{image}}); err != nil {
		return fmt.Errorf("fit %s: %w", filepath.Base(image), err)
	}
	return nil
}

// detachWait bounds how long Fit waits for an unmounted image's loop
// device to go.
const detachWait = 10 * time.Second

// waitDetached waits until no loop device is backed by image. An unmount
// returns before the kernel has let go of the file system when another
// mount namespace still holds a copy of the mount (a container's, being
// torn down right after its stop): checking the image then would race
// with the file system's own last writes.
func waitDetached(ctx context.Context, image string) error {
	abs, err := filepath.Abs(image)
	if err != nil {
		return err
	}
	deadline := time.Now().Add(detachWait)
	for {
		dev := loopOf(abs)
		if dev == "" {
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("still attached to %s %s after its unmount: something still holds its file system; try again", dev, detachWait)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// loopOf names a loop device backed by image, or "" when there is none.
func loopOf(image string) string {
	files, _ := filepath.Glob("/sys/block/loop*/loop/backing_file")
	for _, f := range files {
		if data, err := os.ReadFile(f); err == nil && strings.TrimSpace(string(data)) == image {
			return filepath.Base(filepath.Dir(filepath.Dir(f)))
		}
	}
	return ""
}
