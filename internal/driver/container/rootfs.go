package container

import (
	"context"
	"fmt"
	"os"

	"github.com/polyvisor/polyvisor/internal/fsutil"
	"github.com/polyvisor/polyvisor/internal/guest"
	"github.com/polyvisor/polyvisor/internal/idmap"
	"golang.org/x/sys/unix"
)

// Layout of a container guest's directory.
const (
	upperDir   = "disks/upper"  // overlay: the guest's own changes
	workDir    = "disks/work"   // overlay's scratch space
	copyRootfs = "disks/rootfs" // copy: the guest's private tree
	mountPoint = "rootfs"       // overlay: where the merged tree is mounted
	lowerMount = "lower"        // isolated overlay: the template's tree, idmapped into the guest's range
	bundleDir  = "bundle"       // OCI bundle (config.json)
)

// mountOverlay mounts template lower + guest upper at target, unless it is
// already mounted (a daemon restart finds it so). extra adds options.
func mountOverlay(lower, upper, work, target, extra string) error {
	if mounted, err := fsutil.IsMountPoint(target); err != nil {
		return err
	} else if mounted {
		return nil
	}
	if err := os.MkdirAll(target, 0o755); err != nil {
		return fmt.Errorf("mount rootfs: %w", err)
	}
	opts := fmt.Sprintf("lowerdir=%s,upperdir=%s,workdir=%s", lower, upper, work) + extra
	// nosuid, nodev: the guest's tree holds no program that may raise
	// privileges on the host's side of the mount (inside, no_new_privs
	// already makes setuid bits inert) and no device to open.
	if err := unix.Mount("overlay", target, "overlay", unix.MS_NOSUID|unix.MS_NODEV, opts); err != nil {
		return fmt.Errorf("mount overlay rootfs at %s: %w", target, err)
	}
	return nil
}

// matchOwner gives dir the owner (through shift) and mode of ref, so an
// overlay's merged root looks like the template's root (root of the
// container, mode 0755).
func matchOwner(dir, ref string, shift idmap.ShiftFunc) error {
	var st unix.Stat_t
	if err := unix.Lstat(ref, &st); err != nil {
		return fmt.Errorf("stat %s: %w", ref, err)
	}
	uid, gid, err := shift(st.Uid, st.Gid)
	if err != nil {
		return fmt.Errorf("owner of %s: %w", ref, err)
	}
	if err := os.Lchown(dir, int(uid), int(gid)); err != nil {
		return fmt.Errorf("chown %s: %w", dir, err)
	}
	return os.Chmod(dir, os.FileMode(st.Mode&0o7777))
}

// fromTemplate returns the shift from the template's ids (stored in the
// shared range) to def's: the identity for a shared guest, back to host
// ids for a privileged one.
func fromTemplate(def *guest.Definition) idmap.ShiftFunc {
	m, ok := def.IDMap()
	if !ok {
		return idmap.ShiftDown(idmap.Default())
	}
	return idmap.Between(idmap.Default(), m)
}

// templateLower returns the tree an overlay guest's upper dir goes over:
// the template's, or for an isolated guest an idmapped mount of it at
// mountAt, through which the template's shared-range owners read as the
// guest's own ids. The mount is made unless it is there already (a daemon
// restart finds it so).
func (d *Driver) templateLower(ctx context.Context, def *guest.Definition, mountAt string) (string, error) {
	tmpl := d.templateRootfs(def.Template)
	if !def.Isolated() {
		return tmpl, nil
	}
	if mounted, err := fsutil.IsMountPoint(mountAt); err != nil || mounted {
		return mountAt, err
	}
	if err := os.MkdirAll(mountAt, 0o700); err != nil {
		return "", fmt.Errorf("mount template of %s: %w", def.Name, err)
	}
	m, _ := def.IDMap()
	if err := idmap.MountMapped(ctx, tmpl, mountAt, idmap.Default(), m); err != nil {
		return "", fmt.Errorf("mount template of %s: %w", def.Name, err)
	}
	return mountAt, nil
}
