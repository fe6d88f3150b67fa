package container

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/polyvisor/polyvisor/internal/driver"
	"github.com/polyvisor/polyvisor/internal/fsutil"
	"github.com/polyvisor/polyvisor/internal/guest"
	"github.com/polyvisor/polyvisor/internal/idmap"
	"github.com/polyvisor/polyvisor/internal/loopfs"
	"github.com/polyvisor/polyvisor/internal/runcmd"
	"github.com/polyvisor/polyvisor/pkg/api"
)

// A container's snapshot is a full copy of the tree it owns on the host:
// an overlay guest's upper dir (its changes over the template), or a copy
// guest's whole rootfs. cp -a keeps owners, modes, times, hardlinks, holes
// and extended attributes (overlayfs' trusted.overlay.* among them, which
// root may copy) and copies overlayfs' whiteouts, 0/0 character devices,
// as they are: a restored upper dir merges with the template as it did.
// idmap.CopyTree keeps no xattrs, so it is not used here. A running
// container is frozen (runc pause) for the time of the copy.

// Names of the tree in a snapshot's directory, and the kinds they are.
const (
	snapshotUpper     = "upper"
	snapshotRootfs    = "rootfs"
	kindOverlayUpper  = "overlay-upper"
	kindRootfsCopy    = "rootfs-copy"
	restoreStagingPfx = ".restore-"
)

// ownTree returns the tree the guest owns on the host (relative to its
// directory), its kind, and its name in a snapshot.
func ownTree(def *guest.Definition) (rel, kind, inSnapshot string) {
	if def.Rootfs == guest.RootfsCopy {
		return copyRootfs, kindRootfsCopy, snapshotRootfs
	}
	return upperRel(def), kindOverlayUpper, snapshotUpper
}

// CreateSnapshot implements driver.Snapshotter.
func (d *Driver) CreateSnapshot(ctx context.Context, def *guest.Definition, name, dir string) (driver.SnapshotInfo, error) {
	rel, kind, base := ownTree(def)
	info := driver.SnapshotInfo{Kind: kind}
	saved := filepath.Join(dir, base)
	err := d.withLayer(ctx, def, func() error {
		return d.frozen(ctx, def, func() error {
			return copyTree(ctx, filepath.Join(d.guestDir(def), rel), saved)
		})
	})
	if err != nil {
		return info, fmt.Errorf("snapshot %s of %s: %w", name, def.Name, err)
	}
	if info.Size, err = fsutil.TreeSize(ctx, saved, fsutil.Allocated); err != nil {
		return info, fmt.Errorf("snapshot %s of %s: %w", name, def.Name, err)
	}
	return info, nil
}

// RestoreSnapshot implements driver.Snapshotter: a copy of the snapshot
// is made beside the guest's tree and swapped with it in one rename, and
// an overlay's work dir is emptied.
func (d *Driver) RestoreSnapshot(ctx context.Context, def *guest.Definition, name, dir string) error {
	if initIdentity(def).Alive() {
		return fmt.Errorf("guest %s: %w: it is running; stop it first, then restore", def.Name, api.ErrConflict)
	}
	rel, _, base := ownTree(def)
	saved := filepath.Join(dir, base)
	if _, err := os.Lstat(saved); err != nil {
		return fmt.Errorf("snapshot %s of %s: %w: it holds no %s; delete the snapshot", name, def.Name, api.ErrNotFound, base)
	}
	if def.Rootfs == guest.RootfsOverlay {
		// Stopping unmounted it; a merged view must not outlive its upper.
		if err := fsutil.Unmount(d.rootfs(def)); err != nil {
			return err
		}
	}
	return d.withLayer(ctx, def, func() error {
		if err := replaceTree(ctx, saved, filepath.Join(d.guestDir(def), rel)); err != nil {
			return fmt.Errorf("restore %s of %s: %w", name, def.Name, err)
		}
		if def.Rootfs == guest.RootfsOverlay {
			work := filepath.Join(d.guestDir(def), workRel(def))
			if err := os.RemoveAll(work); err != nil {
				return fmt.Errorf("restore %s of %s: reset the overlay's work dir: %w", name, def.Name, err)
			}
			if err := os.Mkdir(work, 0o711); err != nil {
				return fmt.Errorf("restore %s of %s: reset the overlay's work dir: %w", name, def.Name, err)
			}
		}
		return nil
	})
}

// DeleteSnapshot implements driver.Snapshotter: the snapshot is its
// directory, which the daemon removes.
func (d *Driver) DeleteSnapshot(ctx context.Context, def *guest.Definition, name, dir string) error {
	return nil
}

// Copy implements driver.Copier: the source's own tree is copied (frozen,
// if it runs) and, where the guest has a machine id, the copy's is
// emptied, so systemd gives the copy its own at first boot. A source with
// a disk quota gives the copy one of the same size, the tree copied into
// it.
func (d *Driver) Copy(ctx context.Context, src *guest.Definition, dir string, def *guest.Definition) (err error) {
	rel, kind, _ := ownTree(src)
	if err := os.MkdirAll(filepath.Join(dir, "disks"), 0o711); err != nil {
		return fmt.Errorf("copy %s: %w", src.Name, err)
	}
	def.Disks = []guest.Disk{{Name: "root", Path: rel, Kind: kind}}
	if hasLayer(src) {
		disk, _ := src.Disk("root")
		if err := makeLayer(ctx, dir, "", nil, disk.Size, false); err != nil {
			return fmt.Errorf("copy %s: %w", src.Name, err)
		}
		mount := filepath.Join(dir, layerMount)
		if err := loopfs.Mount(ctx, filepath.Join(dir, layerImage), mount); err != nil {
			return fmt.Errorf("copy %s: %w", src.Name, err)
		}
		defer func() {
			if uerr := fsutil.Unmount(mount); uerr != nil {
				err = errors.Join(err, fmt.Errorf("copy %s: %w", src.Name, uerr))
			}
		}()
		def.Disks = []guest.Disk{{Name: "root", Path: layerImage, Kind: guest.DiskOverlayImage, Size: disk.Size}}
	}
	to := filepath.Join(dir, rel)
	err = d.withLayer(ctx, src, func() error {
		return d.frozen(ctx, src, func() error {
			return copyTree(ctx, filepath.Join(d.guestDir(src), rel), to)
		})
	})
	if err != nil {
		return fmt.Errorf("copy %s: %w", src.Name, err)
	}
	// An isolated source's copy gets its own range (def's): the tree
	// moves from the source's ids to the copy's.
	from, _ := src.IDMap()
	if own, ok := def.IDMap(); ok && own != from {
		if err := idmap.ShiftTree(ctx, to, idmap.Between(from, own)); err != nil {
			return fmt.Errorf("copy %s: %w", src.Name, err)
		}
	}
	lower := ""
	if src.Rootfs == guest.RootfsOverlay {
		if err := os.MkdirAll(filepath.Join(dir, workRel(src)), 0o711); err != nil {
			return fmt.Errorf("copy %s: %w", src.Name, err)
		}
		lower = d.templateRootfs(src.Template)
	}
	if err := resetMachineID(to, lower, fromTemplate(def)); err != nil {
		return fmt.Errorf("copy %s: machine id: %w", src.Name, err)
	}
	return nil
}

// frozen runs fn with the container's processes frozen, if it runs, and
// thaws them whatever happens.
func (d *Driver) frozen(ctx context.Context, def *guest.Definition, fn func() error) (err error) {
	if !initIdentity(def).Alive() {
		return fn()
	}
	if err := d.runtime().Pause(ctx, def.Name); err != nil {
		return fmt.Errorf("freeze %s: %w", def.Name, err)
	}
	defer func() {
		if rerr := d.runtime().Resume(context.WithoutCancel(ctx), def.Name); rerr != nil {
			err = errors.Join(err, fmt.Errorf("thaw %s: %w", def.Name, rerr))
		}
	}()
	return fn()
}

// copyTree copies the directory src to dst, which must not exist, with
// everything cp -a keeps (see above); on failure dst is removed.
func copyTree(ctx context.Context, src, dst string) error {
	// --preserve=xattr after -a makes a lost xattr an error rather than
	// a silent loss: without overlayfs' own, the restored tree is wrong.
	err := runcmd.Run(ctx, runcmd.Cmd{Name: "cp", Args: []string{"-a", "--preserve=xattr", "--one-file-system", "--reflink=auto", "--no-target-directory", src, dst}})
	if err != nil {
		os.RemoveAll(dst)
		return fmt.Errorf("copy %s: %w", filepath.Base(src), err)
	}
	return nil
}

// replaceTree replaces the tree live with a copy of saved: the copy is
// made beside live, then the two are swapped by one renameat2
// (RENAME_EXCHANGE) where the file system has it, or by two renames, and
// the old tree is removed. Leftovers of an interrupted restore go first.
func replaceTree(ctx context.Context, saved, live string) error {
	parent := filepath.Dir(live)
	if entries, err := os.ReadDir(parent); err == nil {
		for _, e := range entries {
			if strings.HasPrefix(e.Name(), restoreStagingPfx) {
				os.RemoveAll(filepath.Join(parent, e.Name()))
			}
		}
	}
	staging, err := os.MkdirTemp(parent, restoreStagingPfx)
	if err != nil {
		return err
	}
	defer os.RemoveAll(staging)
	fresh := filepath.Join(staging, "tree")
	if err := copyTree(ctx, saved, fresh); err != nil {
		return err
	}
	err = unix.Renameat2(unix.AT_FDCWD, fresh, unix.AT_FDCWD, live, unix.RENAME_EXCHANGE)
	if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOSYS) || errors.Is(err, unix.ENOENT) {
		err = swapByRenames(fresh, live, filepath.Join(staging, "old"))
	}
	if err != nil {
		return fmt.Errorf("swap in the restored tree: %w", err)
	}
	return fsutil.SyncDir(parent)
}

// swapByRenames puts fresh in live's place, keeping live as old, for file
// systems without RENAME_EXCHANGE (or when live is missing).
func swapByRenames(fresh, live, old string) error {
	if err := os.Rename(live, old); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	if err := os.Rename(fresh, live); err != nil {
		os.Rename(old, live)
		return err
	}
	return nil
}
