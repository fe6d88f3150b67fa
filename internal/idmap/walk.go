package idmap

import (
	"context"
	"fmt"
	"io/fs"
	"path/filepath"
	"syscall"
)

// entry is one file met by walkTree, with the lstat data of the file itself (never a symlink's target).
type entry struct {
	path string
	rel  string // relative to the walk's root, "." for the root
	info fs.FileInfo
	stat *syscall.Stat_t
}

// inode identifies a file across its hardlinks.
type inode struct{ dev, ino uint64 }

func (e entry) inode() inode { return inode{dev: e.stat.Dev, ino: e.stat.Ino} }

// hasOtherLinks reports whether the entry is a non-directory that other names share.
func (e entry) hasOtherLinks() bool { return !e.info.IsDir() && e.stat.Nlink > 1 }

// walkTree calls visit for root and everything under it in lexical order, parents before
// children. It never follows symlinks and stays on root's filesystem: a mount point and
// everything below it are skipped entirely, so a tree with /proc mounted in it is never
// shifted or copied into the mounted filesystem.
func walkTree(ctx context.Context, root string, visit func(entry) error) error {
	var rootDev uint64
	return filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		stat, ok := info.Sys().(*syscall.Stat_t)
		if !ok {
			return fmt.Errorf("%s: no stat data", path)
		}
		rel, err := filepath.Rel(root, path)
		if err != nil {
			return err
		}
		if rel == "." {
			rootDev = stat.Dev
		} else if stat.Dev != rootDev {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		return visit(entry{path: path, rel: rel, info: info, stat: stat})
	})
}
