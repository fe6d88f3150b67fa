package exporter

import (
	"archive/tar"
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/polyvisor/polyvisor/internal/fsutil"
	"github.com/polyvisor/polyvisor/internal/idmap"
)

// Tree writes the root tree at root to dst as a tarball with the owners
// the guest sees: shift maps host ids back to the guest's (nil keeps
// them). Hard links stay links; user.* and security.capability xattrs
// travel as PAX records; sockets are left out, since no tar can carry one.
func Tree(ctx context.Context, root, dst string, shift idmap.ShiftFunc, progress Progress) error {
	return writeAtomically(dst, func(tmp string) error {
		f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := writeTree(ctx, f, root, shift, progress); err != nil {
			return fmt.Errorf("export %s: %w", root, err)
		}
		return f.Close()
	})
}

func writeTree(ctx context.Context, w io.Writer, root string, shift idmap.ShiftFunc, progress Progress) error {
	tw := tar.NewWriter(w)
	firstName := map[fsutil.Inode]string{}
	var written int64
	err := fsutil.WalkOneFS(ctx, root, func(e fsutil.Entry) error {
		if e.Rel == "." || e.Info.Mode()&os.ModeSocket != 0 {
			return nil
		}
		hdr, err := header(e, firstName)
		if err != nil {
			return err
		}
		if shift != nil {
			uid, gid, err := shift(e.Stat.Uid, e.Stat.Gid)
			if err != nil {
				return fmt.Errorf("%s: %w", e.Rel, err)
			}
			hdr.Uid, hdr.Gid = int(uid), int(gid)
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return fmt.Errorf("%s: %w", e.Rel, err)
		}
		if hdr.Typeflag != tar.TypeReg {
			return nil
		}
		n, err := copyFile(tw, e.Path)
		written += n
		progress("writing the root tree", written, 0)
		return err
	})
	if err != nil {
		return err
	}
	return tw.Close()
}

// header describes one entry, as a hard link to the first name of its
// inode when it has several.
func header(e fsutil.Entry, firstName map[fsutil.Inode]string) (*tar.Header, error) {
	var link string
	if e.Info.Mode()&os.ModeSymlink != 0 {
		var err error
		if link, err = os.Readlink(e.Path); err != nil {
			return nil, err
		}
	}
	hdr, err := tar.FileInfoHeader(e.Info, link)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", e.Rel, err)
	}
	hdr.Name = e.Rel
	if e.Info.IsDir() {
		hdr.Name += "/"
	}
	hdr.Uname, hdr.Gname = "", "" // the guest's names are its own /etc/passwd's
	hdr.Format = tar.FormatPAX
	if e.HasOtherLinks() {
		if first, ok := firstName[e.Inode()]; ok {
			hdr.Typeflag, hdr.Linkname, hdr.Size = tar.TypeLink, first, 0
			return hdr, nil
		}
		firstName[e.Inode()] = e.Rel
	}
	if dev := e.Stat.Rdev; hdr.Typeflag == tar.TypeChar || hdr.Typeflag == tar.TypeBlock {
		hdr.Devmajor, hdr.Devminor = int64(unix.Major(dev)), int64(unix.Minor(dev))
	}
	xattrs, err := portableXattrs(e.Path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", e.Rel, err)
	}
	for name, value := range xattrs {
		if hdr.PAXRecords == nil {
			hdr.PAXRecords = map[string]string{}
		}
		hdr.PAXRecords["SCHILY.xattr."+name] = value
	}
	return hdr, nil
}

// portableXattrs returns the extended attributes that mean the same on
// another host: user.* and file capabilities. trusted.* (overlayfs'
// bookkeeping among them) and security labels stay behind.
func portableXattrs(path string) (map[string]string, error) {
	size, err := unix.Llistxattr(path, nil)
	if err != nil || size == 0 {
		if err == unix.ENOTSUP {
			err = nil
		}
		return nil, err
	}
	buf := make([]byte, size)
	if size, err = unix.Llistxattr(path, buf); err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, name := range strings.Split(strings.TrimRight(string(buf[:size]), "\x00"), "\x00") {
		if !strings.HasPrefix(name, "user.") && name != "security.capability" {
			continue
		}
		value := make([]byte, 64<<10)
		n, err := unix.Lgetxattr(path, name, value)
		if err == unix.ENODATA {
			continue
		}
		if err != nil {
			return nil, err
		}
		out[name] = string(value[:n])
	}
	return out, nil
}

// copyFile copies a regular file's contents into w.
func copyFile(w io.Writer, path string) (int64, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	return io.Copy(w, f)
}
