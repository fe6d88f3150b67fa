package container

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"

	"github.com/polyvisor/polyvisor/internal/driver"
	"github.com/polyvisor/polyvisor/internal/fsutil"
	"github.com/polyvisor/polyvisor/internal/guest"
	"github.com/polyvisor/polyvisor/internal/idmap"
	"github.com/polyvisor/polyvisor/internal/loopfs"
	"github.com/polyvisor/polyvisor/pkg/api"
)

// An overlay guest with a disk quota keeps its upper and work dirs (which
// overlayfs wants on one file system) in an ext4 image of the quota's
// size, mounted through a loop device while the guest runs, and for the
// moment of a snapshot, restore, copy or export while it is stopped. A
// write past the quota fails in the guest with ENOSPC; the host's file
// system holds only the blocks the guest wrote (the image is sparse).
const (
	layerImage = "disks/layer.img" // the quota's ext4 image
	layerMount = "disks/layer"     // where it is mounted
)

// hasLayer reports whether def's writable layer lives in a quota image;
// guests created before quotas, and with --disk none, have none.
func hasLayer(def *guest.Definition) bool {
	disk, ok := def.Disk("root")
	return ok && disk.Kind == guest.DiskOverlayImage
}

// upperRel and workRel are the overlay's upper and work dirs, relative to
// the guest's directory.
func upperRel(def *guest.Definition) string {
	if hasLayer(def) {
		return filepath.Join(layerMount, "upper")
	}
	return upperDir
}

func workRel(def *guest.Definition) string {
	if hasLayer(def) {
		return filepath.Join(layerMount, "work")
	}
	return workDir
}

// overlayOptions are the options an overlay of def's tree needs beyond its
// layers. With the upper dir in a quota image, the layers sit on two file
// systems, and overlayfs would then report each file with its own layer's
// device number: xino=on makes every file report the overlay's, so a walk
// that keeps to one file system (export, du -x in the guest) sees them all.
func overlayOptions(def *guest.Definition) string {
	if hasLayer(def) {
		return ",xino=on"
	}
	return ""
}

// requestedDiskSize is the root disk size the create request asked for
// (see rootDiskSize); 0 for none.
func requestedDiskSize(def *guest.Definition) guest.Size {
	if disk, ok := def.Disk("root"); ok {
		return disk.Size
	}
	return 0
}

// makeLayer makes the quota image of a guest being created in dir, of size
// bytes, holding an empty work dir and, with upper, an empty upper dir
// owned like the template's root (lower) seen through the guest's id map
// (shift), which the merged root shows.
func makeLayer(ctx context.Context, dir, lower string, shift idmap.ShiftFunc, size guest.Size, upper bool) error {
	disks := filepath.Join(dir, "disks")
	if err := os.MkdirAll(filepath.Join(dir, layerMount), 0o711); err != nil {
		return fmt.Errorf("create %s: %w", layerMount, err)
	}
	seed, err := os.MkdirTemp(disks, ".seed-")
	if err != nil {
		return fmt.Errorf("create disk quota: %w", err)
	}
	defer os.RemoveAll(seed)
	if err := os.Chmod(seed, 0o711); err != nil {
		return fmt.Errorf("create disk quota: %w", err)
	}
	if err := os.Mkdir(filepath.Join(seed, "work"), 0o711); err != nil {
		return fmt.Errorf("create disk quota: %w", err)
	}
	if upper {
		if err := os.Mkdir(filepath.Join(seed, "upper"), 0o711); err != nil {
			return fmt.Errorf("create disk quota: %w", err)
		}
		if err := matchOwner(filepath.Join(seed, "upper"), lower, shift); err != nil {
			return err
		}
	}
	if err := loopfs.Make(ctx, filepath.Join(dir, layerImage), int64(size), seed); err != nil {
		return fmt.Errorf("create disk quota: %w", err)
	}
	return nil
}

// blankLayerDir holds, under the state dir, the blank quota image that
// creates clone: a cache, made again when it is missing.
const blankLayerDir = "cache/layers"

// blankLayer is the path of the blank quota image of size.
func (d *Driver) blankLayer(size guest.Size) string {
	return filepath.Join(d.opts.Layout.StateDir, blankLayerDir, fmt.Sprintf("blank-%d.img", int64(size)))
}

// cloneBlankLayer gives a guest being created in dir the quota image of
// size as a clone of a blank one, made by the first create that needs
// it: a copy of a few MiB of metadata instead of an mke2fs on every
// launch. The clone's upper dir belongs to host root until mountLayer
// gives it the guest's root (claimUpper), as the blank image cannot know
// whose it will be.
func (d *Driver) cloneBlankLayer(ctx context.Context, dir string, size guest.Size) error {
	blank := d.blankLayer(size)
	if err := d.makeBlankLayer(ctx, blank, size); err != nil {
		return fmt.Errorf("create disk quota: %w", err)
	}
	if err := os.MkdirAll(filepath.Join(dir, layerMount), 0o711); err != nil {
		return fmt.Errorf("create %s: %w", layerMount, err)
	}
	if err := loopfs.Clone(blank, filepath.Join(dir, layerImage)); err != nil {
		return fmt.Errorf("create disk quota: %w", err)
	}
	return nil
}

// makeBlankLayer makes the blank quota image at blank unless it is there:
// an ext4 file system of size holding an empty work dir and an empty
// upper dir owned by host root. It is made under a temporary name and
// renamed into place, so a crash leaves no half-made blank image; the
// temporary leftovers of one are removed by the next make.
func (d *Driver) makeBlankLayer(ctx context.Context, blank string, size guest.Size) error {
	d.blankMu.Lock()
	defer d.blankMu.Unlock()
	if _, err := os.Stat(blank); err == nil || !errors.Is(err, os.ErrNotExist) {
		return err
	}
	parent := filepath.Dir(blank)
	if err := os.MkdirAll(parent, 0o700); err != nil {
		return err
	}
	if old, _ := filepath.Glob(filepath.Join(parent, ".making-*")); len(old) > 0 {
		for _, p := range old {
			os.RemoveAll(p)
		}
	}
	tmp, err := os.MkdirTemp(parent, ".making-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	seed := filepath.Join(tmp, "seed")
	for _, sub := range []string{"work", "upper"} {
		if err := os.MkdirAll(filepath.Join(seed, sub), 0o711); err != nil {
			return err
		}
	}
	image := filepath.Join(tmp, "blank.img")
	if err := loopfs.Make(ctx, image, int64(size), seed); err != nil {
		return err
	}
	return os.Rename(image, blank)
}

// mountLayer mounts def's quota image, if it has one and it is not
// mounted yet (a restarted daemon finds a running guest's still mounted).
func (d *Driver) mountLayer(ctx context.Context, def *guest.Definition) error {
	if !hasLayer(def) {
		return nil
	}
	dir := d.guestDir(def)
	target := filepath.Join(dir, layerMount)
	if err := os.MkdirAll(target, 0o711); err != nil {
		return fmt.Errorf("mount disk quota of %s: %w", def.Name, err)
	}
	if err := loopfs.Mount(ctx, filepath.Join(dir, layerImage), target); err != nil {
		return fmt.Errorf("mount disk quota of %s: %w", def.Name, err)
	}
	if err := d.claimUpper(def); err != nil {
		return fmt.Errorf("mount disk quota of %s: %w", def.Name, err)
	}
	return nil
}

// claimUpper gives the upper dir of a quota image cloned from the blank
// one the owner and mode of the template's root seen through the guest's
// id map, as makeLayer does for an image made for the guest. Such an
// upper dir is the only one host root owns: an overlay guest's root is
// never host root, so an upper dir the guest has had is left as it is.
func (d *Driver) claimUpper(def *guest.Definition) error {
	if _, mapped := def.IDMap(); !mapped {
		return nil // no user namespace: root may own it rightly
	}
	upper := filepath.Join(d.guestDir(def), layerMount, "upper")
	var st unix.Stat_t
	if err := unix.Lstat(upper, &st); err != nil {
		return fmt.Errorf("stat upper dir: %w", err)
	}
	if st.Uid != 0 || st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return nil
	}
	return matchOwner(upper, d.templateRootfs(def.Template), fromTemplate(def))
}

// unmountLayer unmounts def's quota image, which releases its loop device.
func (d *Driver) unmountLayer(def *guest.Definition) error {
	if !hasLayer(def) {
		return nil
	}
	return fsutil.Unmount(filepath.Join(d.guestDir(def), layerMount))
}

// withLayer runs fn with def's quota image mounted, mounting it for the
// call if the guest is stopped.
func (d *Driver) withLayer(ctx context.Context, def *guest.Definition, fn func() error) (err error) {
	if !hasLayer(def) {
		return fn()
	}
	mounted, err := fsutil.IsMountPoint(filepath.Join(d.guestDir(def), layerMount))
	if err != nil {
		return err
	}
	if mounted {
		return fn()
	}
	// The guest may have stopped a moment ago: its file system must be
	// gone before the image is mounted again.
	if err := loopfs.AwaitRelease(ctx, filepath.Join(d.guestDir(def), layerImage)); err != nil {
		return fmt.Errorf("disk quota of %s: %w", def.Name, err)
	}
	if err := d.mountLayer(ctx, def); err != nil {
		return err
	}
	defer func() {
		if uerr := d.unmountLayer(def); uerr != nil {
			err = errors.Join(err, uerr)
		}
	}()
	return fn()
}

// ResizeDisk implements driver.DiskResizer: the quota image grows now
// (it never shrinks; guest.Definition.Set refuses that), and its file
// system fills it at the guest's next start, offline, since the kernel's
// online resize needs CAP_SYS_RESOURCE, which root lacks on some hosts.
func (d *Driver) ResizeDisk(ctx context.Context, def *guest.Definition, name string) (string, error) {
	disk, ok := def.Disk(name)
	if !ok || !hasLayer(def) || name != "root" {
		return "", fmt.Errorf("%w: disk.%s.size: %s has no disk quota to grow", api.ErrInvalid, name, def.Name)
	}
	image := filepath.Join(d.guestDir(def), layerImage)
	if err := loopfs.Grow(image, int64(disk.Size)); err != nil {
		return "", fmt.Errorf("grow the disk quota of %s: %w", def.Name, err)
	}
	if !initIdentity(def).Alive() {
		// Stopped: fit the file system now, so a failure shows here and
		// info reports the new size at once.
		if err := loopfs.Fit(ctx, image); err != nil {
			return "", fmt.Errorf("grow the disk quota of %s: %w", def.Name, err)
		}
	}
	return "next-start", nil
}

// DiskUsed implements driver.DiskUsageReporter: how much of its quota a
// guest's files take, from the mounted file system while it runs, from
// the image's superblock otherwise.
func (d *Driver) DiskUsed(def *guest.Definition, name string) (int64, error) {
	if name != "root" || !hasLayer(def) {
		return 0, nil
	}
	dir := d.guestDir(def)
	u, err := d.usage.UsageOf(filepath.Join(dir, layerImage), filepath.Join(dir, layerMount))
	if err != nil {
		return 0, err
	}
	return u.Used, nil
}

// diskBase is the file in a running guest's run dir that holds its disk's
// block I/O counters as they stood when it started: a loop device keeps
// counting across the images it serves one after another.
const diskBase = "disk-io.base"

// recordDiskBase notes where the guest's disk's counters start.
func (d *Driver) recordDiskBase(def *guest.Definition) error {
	if !hasLayer(def) {
		return nil
	}
	read, written, err := fsutil.BlockIO(filepath.Join(d.guestDir(def), layerMount))
	if err != nil {
		return fmt.Errorf("start %s: %w", def.Name, err)
	}
	return os.WriteFile(filepath.Join(d.runDir(def), diskBase), fmt.Appendf(nil, "%d %d\n", read, written), 0o600)
}

// Usage is a running container's: its cgroup's CPU time and memory, its
// NICs' bytes, and its own disk's since it started (the disk quota's loop
// device; a guest without one counts no disk bytes: its writes are the
// host's file system's, shared with everything else).
func (d *Driver) Usage(ctx context.Context, def *guest.Definition) (api.GuestUsage, error) {
	u, err := driver.CgroupUsage(d.cgroupPath(def), def)
	if err != nil {
		return u, err
	}
	if !hasLayer(def) {
		return u, nil
	}
	read, written, err := fsutil.BlockIO(filepath.Join(d.guestDir(def), layerMount))
	if err != nil {
		return u, fmt.Errorf("usage of %s: %w", def.Name, err)
	}
	var baseRead, baseWritten int64
	if data, err := os.ReadFile(filepath.Join(d.runDir(def), diskBase)); err == nil {
		fmt.Sscan(string(data), &baseRead, &baseWritten)
	}
	u.DiskReadBytes, u.DiskWriteBytes = max(read-baseRead, 0), max(written-baseWritten, 0)
	return u, nil
}
