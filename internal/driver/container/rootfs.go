package container

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"

	"github.com/polyvisor/polyvisor/internal/fsutil"
	"golang.org/x/sys/unix"
)

// Layout of a container guest's directory.
const (
	upperDir   = "disks/upper"  // overlay: the guest's own changes
	workDir    = "disks/work"   // overlay's scratch space
	copyRootfs = "disks/rootfs" // copy: the guest's private tree
	mountPoint = "rootfs"       // overlay: where the merged tree is mounted
	bundleDir  = "bundle"       // OCI bundle (config.json)
)

// mountOverlay mounts template lower + guest upper at target, unless it is
// already mounted (a daemon restart finds it so). extra adds options.
func mountOverlay(lower, upper, work, target, extra string) error {
	if mounted, err := isMountPoint(target); err != nil {
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

// unmount detaches target if something is mounted there. Lazy detach, since
// a shell of the admin's may still sit inside it; the tree goes away when
// the last user leaves.
func unmount(target string) error {
	mounted, err := isMountPoint(target)
	if err != nil || !mounted {
		return err
	}
	if err := unix.Unmount(target, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) {
		return fmt.Errorf("unmount %s: %w", target, err)
	}
	return nil
}

// isMountPoint reports whether path is a mount point in our mount namespace.
func isMountPoint(path string) (bool, error) {
	mounts, err := fsutil.MountPoints()
	if err != nil {
		return false, err
	}
	return slices.Contains(mounts, filepath.Clean(path)), nil
}

// matchOwner gives dir the owner and mode of ref, so an overlay's merged
// root looks like the template's root (root of the container, mode 0755).
func matchOwner(dir, ref string) error {
	var st unix.Stat_t
	if err := unix.Lstat(ref, &st); err != nil {
		return fmt.Errorf("stat %s: %w", ref, err)
	}
	if err := os.Lchown(dir, int(st.Uid), int(st.Gid)); err != nil {
		return fmt.Errorf("chown %s: %w", dir, err)
	}
	return os.Chmod(dir, os.FileMode(st.Mode&0o7777))
}
