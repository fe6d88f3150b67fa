package template

import (
	"archive/tar"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/klauspost/compress/zstd"
	"golang.org/x/sys/unix"

	"github.com/polyvisor/polyvisor/internal/fsutil"
	"github.com/polyvisor/polyvisor/pkg/api"
)

// Archive writes the named template's directory to w as one zstd-compressed
// tar stream, and returns the stream's SHA-256 ("sha256:<hex>"), which
// Receive checks on another host.
//
// The stream is deterministic: entries in lexical order, owners as numbers
// without names, times in whole seconds, a single-threaded encoder. The
// same template archived twice gives the same bytes, so a caller may take
// the digest in a first pass and send the stream in a second. Entries at the
// directory's top level whose name starts with "." (the QEMU driver's
// cached overlay, temp files of atomic writes) are this host's, not the
// template's, and are left out. A template still pending (made for an
// operation not complete yet) is refused.
func (s Store) Archive(ctx context.Context, name string, w io.Writer) (digest string, err error) {
	if _, err := s.Load(name); err != nil {
		return "", err
	}
	dir := filepath.Join(s.Dir, name)
	if _, err := os.Lstat(filepath.Join(dir, pendingFile)); err == nil {
		return "", fmt.Errorf("template %s: %w: it is still being made; try again once its operation ends", name, api.ErrConflict)
	}
	sum := sha256.New()
	zw, err := zstd.NewWriter(io.MultiWriter(w, sum), zstd.WithEncoderConcurrency(1), zstd.WithEncoderLevel(zstd.SpeedDefault))
	if err != nil {
		return "", fmt.Errorf("archive template %s: %w", name, err)
	}
	tw := tar.NewWriter(zw)
	a := archiver{ctx: ctx, tw: tw, links: map[fsutil.Inode]string{}}
	err = fsutil.WalkOneFS(ctx, dir, func(e fsutil.Entry) error {
		if e.Rel == "." {
			return nil // the directory itself: Receive makes its own
		}
		if !strings.Contains(e.Rel, "/") && strings.HasPrefix(e.Rel, ".") {
			if e.Info.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if err := a.entry(e); err != nil {
			return fmt.Errorf("%s: %w", e.Rel, err)
		}
		return nil
	})
	if err == nil {
		err = tw.Close()
	}
	if err == nil {
		err = zw.Close()
	} else {
		zw.Close()
	}
	if err != nil {
		return "", fmt.Errorf("archive template %s: %w", name, err)
	}
	return "sha256:" + hex.EncodeToString(sum.Sum(nil)), nil
}

// archiver is the state of one Archive call.
type archiver struct {
	ctx context.Context
	tw  *tar.Writer
	// links holds the first name of each inode with other links, which
	// later names link to.
	links map[fsutil.Inode]string
}

// entry writes one file's header and contents.
func (a *archiver) entry(e fsutil.Entry) error {
	mode := e.Info.Mode()
	hdr := &tar.Header{
		Name:    e.Rel,
		Mode:    int64(e.Stat.Mode & 0o7777),
		Uid:     int(e.Stat.Uid),
		Gid:     int(e.Stat.Gid),
		ModTime: e.Info.ModTime().Truncate(time.Second),
	}
	if e.HasOtherLinks() {
		if first, ok := a.links[e.Inode()]; ok {
			hdr.Typeflag, hdr.Linkname = tar.TypeLink, first
			return a.tw.WriteHeader(hdr)
		}
		a.links[e.Inode()] = e.Rel
	}
	switch {
	case mode.IsDir():
		hdr.Typeflag, hdr.Name = tar.TypeDir, e.Rel+"/"
	case mode.IsRegular():
		hdr.Typeflag, hdr.Size = tar.TypeReg, e.Info.Size()
	case mode&fs.ModeSymlink != 0:
		target, err := os.Readlink(e.Path)
		if err != nil {
			return err
		}
		hdr.Typeflag, hdr.Linkname = tar.TypeSymlink, target
	case mode&fs.ModeNamedPipe != 0:
		hdr.Typeflag = tar.TypeFifo
	case mode&fs.ModeDevice != 0:
		hdr.Typeflag = tar.TypeBlock
		if mode&fs.ModeCharDevice != 0 {
			hdr.Typeflag = tar.TypeChar
		}
		hdr.Devmajor, hdr.Devminor = int64(unix.Major(e.Stat.Rdev)), int64(unix.Minor(e.Stat.Rdev))
	default:
		return fmt.Errorf("%w: a %v cannot be archived; remove it from the template", api.ErrInvalid, mode.Type())
	}
	if mode.IsDir() || mode.IsRegular() {
		if err := addXattrs(e.Path, hdr); err != nil {
			return err
		}
	}
	if err := a.tw.WriteHeader(hdr); err != nil {
		return err
	}
	if !mode.IsRegular() {
		return nil
	}
	return a.contents(e.Path, hdr.Size)
}

// contents copies the file at path, which must still be a regular file of
// size bytes: a template is read-only, and one that changes under the
// archive would not match the header already written.
func (a *archiver) contents(path string, size int64) error {
	f, err := os.OpenFile(path, os.O_RDONLY|unix.O_NOFOLLOW, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return err
	}
	if !info.Mode().IsRegular() || info.Size() != size {
		return errors.New("changed while it was archived: a template must not change once built")
	}
	_, err = io.CopyN(a.tw, ctxReader{a.ctx, f}, size)
	return err
}

// Extended attributes Archive carries: the ones safetar restores.
const xattrUserPrefix, xattrCapability = "user.", "security.capability"

// addXattrs records path's user.* and security.capability attributes in
// hdr, as GNU tar and safetar spell them.
func addXattrs(path string, hdr *tar.Header) error {
	size, err := unix.Llistxattr(path, nil)
	if err != nil || size == 0 {
		return nil // none, or a file system without them
	}
	buf := make([]byte, size)
	if size, err = unix.Llistxattr(path, buf); err != nil {
		return fmt.Errorf("list extended attributes: %w", err)
	}
	for _, attr := range strings.Split(strings.TrimRight(string(buf[:size]), "\x00"), "\x00") {
		if !strings.HasPrefix(attr, xattrUserPrefix) && attr != xattrCapability {
			continue
		}
		n, err := unix.Lgetxattr(path, attr, nil)
		if err != nil {
			return fmt.Errorf("read extended attribute %s: %w", attr, err)
		}
		val := make([]byte, n)
		if n, err = unix.Lgetxattr(path, attr, val); err != nil {
			return fmt.Errorf("read extended attribute %s: %w", attr, err)
		}
		if hdr.PAXRecords == nil {
			hdr.PAXRecords = map[string]string{}
		}
		hdr.PAXRecords["SCHILY.xattr."+attr] = string(val[:n])
	}
	return nil
}

// ctxReader stops a long copy when ctx ends.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
