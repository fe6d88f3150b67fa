package idmap

import (
	"context"
	"fmt"
	"os"
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
	shifted := make(map[inode]bool)
	err := walkTree(ctx, root, func(e entry) error {
		if e.hasOtherLinks() {
			if shifted[e.inode()] {
				return nil
			}
			shifted[e.inode()] = true
		}
		return shiftEntry(e, shift)
	})
	if err != nil {
		return fmt.Errorf("shift ownership under %s: %w", root, err)
	}
	return nil
}

func shiftEntry(e entry, shift ShiftFunc) error {
	uid, gid, err := shift(e.stat.Uid, e.stat.Gid)
	if err != nil {
		return fmt.Errorf("%s: %w", e.path, err)
	}
	if err := os.Lchown(e.path, int(uid), int(gid)); err != nil {
		return err
	}
	if e.info.Mode()&os.ModeSymlink != 0 {
		return nil
	}
	return os.Chmod(e.path, e.info.Mode()&(os.ModePerm|os.ModeSetuid|os.ModeSetgid|os.ModeSticky))
}

// identity is the ShiftFunc that keeps every owner as it is.
func identity(uid, gid uint32) (uint32, uint32, error) { return uid, gid, nil }
