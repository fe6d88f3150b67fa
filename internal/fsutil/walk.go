package fsutil

import (
	"context"
	"fmt"
	"io/fs"
	"path/filepath"
	"syscall"
)

// Entry is one file met by WalkOneFS, with the lstat data of the file
// itself (never a symlink's target).
type Entry struct {
	Path string
	Rel  string // relative to the walk's root, "." for the root
	Info fs.FileInfo
	Stat *syscall.Stat_t
}

// Inode identifies a file across its hardlinks.
type Inode struct{ Dev, Ino uint64 }

// Inode returns the entry's device and inode number.
func (e Entry) Inode() Inode { return Inode{Dev: e.Stat.Dev, Ino: e.Stat.Ino} }

// HasOtherLinks reports whether the entry is a non-directory that other
// names share.
func (e Entry) HasOtherLinks() bool { return !e.Info.IsDir() && e.Stat.Nlink > 1 }

// WalkOneFS calls visit for root and everything under it in lexical order,
// parents before children. It never follows symlinks and stays on root's
// file system: a mount point and everything below it are skipped, so a
// tree with /proc mounted in it (debootstrap leaves one on failure) is
// never shifted, copied or digested into the mounted file system.
func WalkOneFS(ctx context.Context, root string, visit func(Entry) error) error {
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
		return visit(Entry{Path: path, Rel: rel, Info: info, Stat: stat})
	})
}
