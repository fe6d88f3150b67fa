package idmap

import (
	"context"
	"fmt"
	"os"

	"github.com/polyvisor/polyvisor/internal/fsutil"
)

// ShiftTree changes the owner of every file under root (root included) through shift, in place.
//
// It never follows symlinks and stays on root's filesystem. Each inode is shifted once, however
// many hardlinks name it (debootstrap trees have hardlinks), so shift is never applied twice. A nil shift keeps owners.
// chown clears the setuid and setgid bits, so the mode of every non-symlink is set again after
// its chown. File capabilities (security.capability xattrs) are also cleared by chown and are
// not restored: the templates polyvisor builds carry none.
func ShiftTree(ctx context.Context, root string, shift ShiftFunc) error {
	if shift == nil {
		shift = identity
	}
	shifted := make(map[fsutil.Inode]bool)
	err := fsutil.WalkOneFS(ctx, root, func(e fsutil.Entry) error {
		if e.HasOtherLinks() {
			if shifted[e.Inode()] {
				return nil
			}
			shifted[e.Inode()] = true
		}
		return shiftEntry(e, shift)
	})
	if err != nil {
		return fmt.Errorf("shift ownership under %s: %w", root, err)
	}
	return nil
}

func shiftEntry(e fsutil.Entry, shift ShiftFunc) error {
	uid, gid, err := shift(e.Stat.Uid, e.Stat.Gid)
	if err != nil {
		return fmt.Errorf("%s: %w", e.Path, err)
	}
	if err := os.Lchown(e.Path, int(uid), int(gid)); err != nil {
		return err
	}
	if e.Info.Mode()&os.ModeSymlink != 0 {
		return nil
	}
	return os.Chmod(e.Path, e.Info.Mode()&(os.ModePerm|os.ModeSetuid|os.ModeSetgid|os.ModeSticky))
}

// identity is the ShiftFunc that keeps every owner as it is.
func identity(uid, gid uint32) (uint32, uint32, error) { return uid, gid, nil }
