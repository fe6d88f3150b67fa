package idmap

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"syscall"

	"github.com/polyvisor/polyvisor/internal/fsutil"
)

// CopyTree copies the directory src to dst, which must not exist, with every owner passed
// through shift (nil keeps owners).
//
// It copies regular files (with io.Copy between *os.File, so the kernel's copy_file_range
// does the work), directories, symlinks, device nodes, fifos and sockets; hardlinks stay
// hardlinks; modes (setuid, setgid and sticky included) and modification times are kept.
// Not kept: extended attributes, holes in sparse files and the times of symlinks (setting
// those needs utimensat with AT_SYMLINK_NOFOLLOW, which the syscall package does not export,
// and nothing reads them). Like ShiftTree it never follows
// symlinks and stays on src's filesystem. On any failure dst is removed: nothing half-made is left.
func CopyTree(ctx context.Context, src, dst string, shift ShiftFunc) (err error) {
	if shift == nil {
		shift = identity
	}
	info, err := os.Lstat(src)
	if err != nil {
		return fmt.Errorf("copy tree: %w", err)
	}
	if !info.IsDir() {
		return fmt.Errorf("copy tree: %s is not a directory", src)
	}
	if err := os.Mkdir(dst, 0o700); err != nil {
		return fmt.Errorf("copy tree to %s: %w", dst, err)
	}
	defer func() {
		if err != nil {
			err = errors.Join(err, os.RemoveAll(dst))
		}
	}()
	c := treeCopier{dst: dst, shift: shift, copied: make(map[fsutil.Inode]string)}
	if err := fsutil.WalkOneFS(ctx, src, c.copyEntry); err != nil {
		return fmt.Errorf("copy %s to %s: %w", src, dst, err)
	}
	if err := c.finishDirs(); err != nil {
		return fmt.Errorf("copy %s to %s: %w", src, dst, err)
	}
	return nil
}

// treeCopier holds what one CopyTree call remembers between entries.
type treeCopier struct {
	dst    string
	shift  ShiftFunc
	copied map[fsutil.Inode]string // first copy of each multiply-linked inode
	dirs   []fsutil.Entry          // directories, whose mode and times are set once their contents are written
}

func (c *treeCopier) copyEntry(e fsutil.Entry) error {
	target := filepath.Join(c.dst, e.Rel)
	if e.HasOtherLinks() {
		if first, ok := c.copied[e.Inode()]; ok {
			return os.Link(first, target)
		}
		c.copied[e.Inode()] = target
	}
	uid, gid, err := c.shift(e.Stat.Uid, e.Stat.Gid)
	if err != nil {
		return fmt.Errorf("%s: %w", e.Path, err)
	}
	mode := e.Info.Mode()
	switch {
	case mode.IsDir():
		if e.Rel != "." {
			if err := os.Mkdir(target, 0o700); err != nil {
				return err
			}
		}
		c.dirs = append(c.dirs, e)
		return os.Lchown(target, int(uid), int(gid))
	case mode.IsRegular():
		if err := copyFileContents(e.Path, target); err != nil {
			return err
		}
	case mode&os.ModeSymlink != 0:
		link, err := os.Readlink(e.Path)
		if err != nil {
			return err
		}
		if err := os.Symlink(link, target); err != nil {
			return err
		}
		return os.Lchown(target, int(uid), int(gid))
	default: // device node, fifo or socket: the type bits of st_mode say which
		if err := syscall.Mknod(target, e.Stat.Mode&syscall.S_IFMT|0o600, int(e.Stat.Rdev)); err != nil {
			return fmt.Errorf("mknod %s: %w", target, err)
		}
	}
	// chown before chmod: chown clears setuid and setgid.
	if err := os.Lchown(target, int(uid), int(gid)); err != nil {
		return err
	}
	if err := os.Chmod(target, permissionBits(mode)); err != nil {
		return err
	}
	return setTimes(target, e)
}

// finishDirs sets the modes and times of the copied directories, deepest first, so that
// writing a child never bumps its parent's restored mtime.
func (c *treeCopier) finishDirs() error {
	for _, e := range slices.Backward(c.dirs) {
		target := filepath.Join(c.dst, e.Rel)
		if err := os.Chmod(target, permissionBits(e.Info.Mode())); err != nil {
			return err
		}
		if err := setTimes(target, e); err != nil {
			return err
		}
	}
	return nil
}

func copyFileContents(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return fmt.Errorf("copy %s: %w", src, err)
	}
	return out.Close()
}

func permissionBits(mode os.FileMode) os.FileMode {
	return mode & (os.ModePerm | os.ModeSetuid | os.ModeSetgid | os.ModeSticky)
}

// setTimes gives target, which is not a symlink, the access and modification times of e.
func setTimes(target string, e fsutil.Entry) error {
	if err := syscall.UtimesNano(target, []syscall.Timespec{e.Stat.Atim, e.Stat.Mtim}); err != nil {
		return fmt.Errorf("set times of %s: %w", target, err)
	}
	return nil
}
