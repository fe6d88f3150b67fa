package safetar

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"sort"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

func (x *extractor) rootDir(hdr *tar.Header) error {
	if err := x.fdMeta(x.root, ".", hdr, true); err != nil {
		return fmt.Errorf("entry %q: %w", hdr.Name, err)
	}
	x.dirs = append(x.dirs, dirTime{name: ".", hdr: hdr})
	x.res.Dirs++
	return nil
}

func (x *extractor) dir(name string, hdr *tar.Header) error {
	dir, base, err := x.parent(name)
	if err != nil {
		return err
	}
	defer unix.Close(dir)
	kept, err := makeRoom(dir, base, true)
	if err != nil {
		return err
	}
	if !kept {
		if err := unix.Mkdirat(dir, base, 0o700); err != nil {
			return fmt.Errorf("creating directory: %w", err)
		}
	}
	fd, err := unix.Openat(dir, base, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("opening directory: %w", err)
	}
	defer unix.Close(fd)
	if err := x.fdMeta(fd, name, hdr, true); err != nil {
		return err
	}
	x.dirs = append(x.dirs, dirTime{name: name, hdr: hdr})
	x.res.Dirs++
	return nil
}

func (x *extractor) file(ctx context.Context, name string, hdr *tar.Header, r io.Reader) error {
	if x.opts.MaxBytes != 0 && hdr.Size > max(x.opts.MaxBytes, 0)-x.res.Bytes {
		return fmt.Errorf("%d bytes would pass the %d-byte extraction limit (%d written so far); raise the limit or use a smaller archive",
			hdr.Size, max(x.opts.MaxBytes, 0), x.res.Bytes)
	}
	dir, base, err := x.parent(name)
	if err != nil {
		return err
	}
	defer unix.Close(dir)
	if _, err := makeRoom(dir, base, false); err != nil {
		return err
	}
	fd, err := unix.Openat(dir, base, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return fmt.Errorf("creating file: %w", err)
	}
	f := os.NewFile(uintptr(fd), name)
	defer f.Close()
	// archive/tar hands out exactly hdr.Size bytes or fails with
	// io.ErrUnexpectedEOF.
	n, err := io.Copy(f, r)
	x.res.Bytes += n
	if err != nil {
		return fmt.Errorf("writing contents: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := x.fdMeta(fd, name, hdr, false); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("writing contents: %w", err)
	}
	x.res.Files++
	return x.setTimes(dir, base, hdr)
}

func (x *extractor) symlink(name string, hdr *tar.Header) error {
	if x.opts.Links == NoLinks {
		return fmt.Errorf("%w: symlink to %q, and this archive may not contain links", ErrUnsafe, hdr.Linkname)
	}
	target := hdr.Linkname
	if target == "" || strings.ContainsRune(target, 0) {
		return fmt.Errorf("%w: symlink with an empty or NUL-containing target", ErrUnsafe)
	}
	if !path.IsAbs(target) {
		if j := path.Join(path.Dir(name), target); j == ".." || strings.HasPrefix(j, "../") {
			return fmt.Errorf("%w: symlink to %q leads outside the destination", ErrUnsafe, target)
		}
	}
	dir, base, err := x.parent(name)
	if err != nil {
		return err
	}
	defer unix.Close(dir)
	if _, err := makeRoom(dir, base, false); err != nil {
		return err
	}
	if err := unix.Symlinkat(target, dir, base); err != nil {
		return fmt.Errorf("creating symlink: %w", err)
	}
	if err := x.atMeta(dir, base, name, hdr, true); err != nil {
		return err
	}
	x.res.Links++
	return nil
}

func (x *extractor) hardlink(name string, hdr *tar.Header) error {
	if x.opts.Links == NoLinks {
		return fmt.Errorf("%w: hardlink to %q, and this archive may not contain links", ErrUnsafe, hdr.Linkname)
	}
	target, err := cleanName(hdr.Linkname)
	if err != nil {
		return fmt.Errorf("%w: hardlink target %q %v", ErrUnsafe, hdr.Linkname, err)
	}
	if target == "." {
		return fmt.Errorf("%w: hardlink to the destination itself", ErrUnsafe)
	}
	if target == name {
		return nil // a link to itself: already there
	}
	tdir, err := x.resolve(path.Dir(target))
	if err != nil {
		return fmt.Errorf("hardlink target %q is not in the archive before it: %w", target, err)
	}
	defer unix.Close(tdir)
	tbase := path.Base(target)
	var st unix.Stat_t
	if err := unix.Fstatat(tdir, tbase, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("hardlink target %q is not in the archive before it: %w", target, err)
	}
	if st.Mode&unix.S_IFMT == unix.S_IFDIR {
		return fmt.Errorf("%w: hardlink to directory %q", ErrUnsafe, target)
	}
	dir, base, err := x.parent(name)
	if err != nil {
		return err
	}
	defer unix.Close(dir)
	if _, err := makeRoom(dir, base, false); err != nil {
		return err
	}
	// No AT_SYMLINK_FOLLOW: a symlink target is linked itself, not followed.
	if err := unix.Linkat(tdir, tbase, dir, base, 0); err != nil {
		return fmt.Errorf("linking to %q: %w", target, err)
	}
	// The header's metadata is not applied: it would change the shared inode.
	x.res.Links++
	return nil
}

func (x *extractor) fifo(name string, hdr *tar.Header) error {
	dir, base, err := x.parent(name)
	if err != nil {
		return err
	}
	defer unix.Close(dir)
	if _, err := makeRoom(dir, base, false); err != nil {
		return err
	}
	if err := unix.Mknodat(dir, base, unix.S_IFIFO|0o600, 0); err != nil {
		return fmt.Errorf("creating fifo: %w", err)
	}
	if err := x.atMeta(dir, base, name, hdr, false); err != nil {
		return err
	}
	x.res.Files++
	return nil
}

// fdMeta applies owner, mode and extended attributes to an open file or
// directory, in that order: chown clears setuid bits and security.capability,
// so both come after it.
func (x *extractor) fdMeta(fd int, name string, hdr *tar.Header, isDir bool) error {
	mode := x.mode(name, hdr, isDir)
	if !x.opts.SkipOwners {
		if err := unix.Fchown(fd, hdr.Uid, hdr.Gid); err != nil {
			return fmt.Errorf("setting owner %d:%d: %w", hdr.Uid, hdr.Gid, err)
		}
	}
	if err := unix.Fchmod(fd, mode); err != nil {
		return fmt.Errorf("setting mode %#o: %w", mode, err)
	}
	for _, k := range xattrNames(hdr) {
		attr := strings.TrimPrefix(k, xattrPrefix)
		if !strings.HasPrefix(attr, "user.") && attr != "security.capability" {
			x.warn("skipped extended attribute %q of %q: only user.* and security.capability are restored", attr, name)
			continue
		}
		err := unix.Fsetxattr(fd, attr, []byte(hdr.PAXRecords[k]), 0)
		if errors.Is(err, unix.ENOTSUP) {
			x.warn("skipped extended attribute %q of %q: the destination file system does not support it", attr, name)
			continue
		}
		if err != nil {
			return fmt.Errorf("setting extended attribute %q: %w", attr, err)
		}
	}
	return nil
}

// atMeta applies owner, mode (unless a symlink) and times to base in dir,
// never following a symlink. Extended attributes are not kept on symlinks
// and FIFOs: Linux allows user.* only on files and directories.
func (x *extractor) atMeta(dir int, base, name string, hdr *tar.Header, isLink bool) error {
	if !x.opts.SkipOwners {
		if err := unix.Fchownat(dir, base, hdr.Uid, hdr.Gid, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return fmt.Errorf("setting owner %d:%d: %w", hdr.Uid, hdr.Gid, err)
		}
	}
	if !isLink {
		// base was just created as a FIFO by this process, so following is
		// not a concern; fchmodat(2) has no NOFOLLOW before Linux 6.6.
		mode := x.mode(name, hdr, false)
		if err := unix.Fchmodat(dir, base, mode, 0); err != nil {
			return fmt.Errorf("setting mode %#o: %w", mode, err)
		}
	}
	if len(xattrNames(hdr)) > 0 {
		x.warn("skipped extended attributes of %q: not kept on symlinks and FIFOs", name)
	}
	return x.setTimes(dir, base, hdr)
}

// mode returns the permission bits to set. Setuid and setgid on
// non-directories are kept only when the owner is restored too: on a file
// owned by the extracting user they would grant that user's identity.
func (x *extractor) mode(name string, hdr *tar.Header, isDir bool) uint32 {
	mode := uint32(hdr.Mode) & 0o7777
	if x.opts.SkipOwners && !isDir && mode&(unix.S_ISUID|unix.S_ISGID) != 0 {
		x.warn("dropped setuid/setgid bits of %q: owners are not restored", name)
		mode &^= unix.S_ISUID | unix.S_ISGID
	}
	return mode
}

const xattrPrefix = "SCHILY.xattr."

func xattrNames(hdr *tar.Header) []string {
	var names []string
	for k := range hdr.PAXRecords {
		if strings.HasPrefix(k, xattrPrefix) {
			names = append(names, k)
		}
	}
	sort.Strings(names)
	return names
}

// setTimes sets base's access and modification times without following it.
func (x *extractor) setTimes(dir int, base string, hdr *tar.Header) error {
	atime := hdr.AccessTime
	if atime.IsZero() {
		atime = hdr.ModTime
	}
	ts := make([]unix.Timespec, 2)
	for i, t := range []time.Time{atime, hdr.ModTime} {
		var err error
		if ts[i], err = unix.TimeToTimespec(t); err != nil {
			x.warn("kept the extraction time on %q: its time %v is out of range", hdr.Name, t)
			return nil
		}
	}
	flags := unix.AT_SYMLINK_NOFOLLOW
	if base == "." {
		flags = 0
	}
	if err := unix.UtimesNanoAt(dir, base, ts, flags); err != nil {
		return fmt.Errorf("setting times: %w", err)
	}
	return nil
}

// setDirTimes sets directory times last, since creating entries in a
// directory changes its modification time. Directories a later entry or
// whiteout removed are passed over.
func (x *extractor) setDirTimes() error {
	for _, d := range x.dirs {
		if d.name == "." {
			if err := x.setTimes(x.root, ".", d.hdr); err != nil {
				return fmt.Errorf("directory %q: %w", d.hdr.Name, err)
			}
			continue
		}
		dir, err := x.resolve(path.Dir(d.name))
		if err != nil {
			continue
		}
		base := path.Base(d.name)
		var st unix.Stat_t
		if unix.Fstatat(dir, base, &st, unix.AT_SYMLINK_NOFOLLOW) == nil && st.Mode&unix.S_IFMT == unix.S_IFDIR {
			err = x.setTimes(dir, base, d.hdr)
		}
		unix.Close(dir)
		if err != nil && !errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("directory %q: %w", d.name, err)
		}
	}
	return nil
}
