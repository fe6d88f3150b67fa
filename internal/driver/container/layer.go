package container

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

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
	return nil
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
