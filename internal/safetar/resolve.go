package safetar

import (
	"errors"
	"fmt"
	"os"
	"path"
	"strings"

	"golang.org/x/sys/unix"
)

// resolve opens directory rel inside the root as an O_PATH fd. With
// RESOLVE_IN_ROOT the kernel treats the root as "/" for the whole lookup:
// absolute symlinks and ".." stop at it, so no symlink in the tree can lead
// outside. Magic links (/proc/self/fd/N) are refused outright.
func (x *extractor) resolve(rel string) (int, error) {
	how := &unix.OpenHow{
		Flags:   unix.O_PATH | unix.O_DIRECTORY | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS,
	}
	for tries := 0; ; tries++ {
		fd, err := unix.Openat2(x.root, rel, how)
		// EAGAIN: a rename raced with the lookup, which the kernel will not
		// risk resolving; only this process writes here, so retry a little.
		if errors.Is(err, unix.EAGAIN) && tries < 16 {
			continue
		}
		return fd, err
	}
}

// mkdirAll returns an O_PATH fd of directory rel inside the root, creating
// missing components (mode 0755, owned by the extracting user) the way tar
// does for entries whose parents the archive does not list.
func (x *extractor) mkdirAll(rel string) (int, error) {
	fd, err := x.resolve(rel)
	if err == nil || !errors.Is(err, unix.ENOENT) {
		if err != nil {
			return -1, fmt.Errorf("resolving directory %q: %w", rel, err)
		}
		return fd, nil
	}
	parent, err := x.resolve(".")
	if err != nil {
		return -1, fmt.Errorf("resolving the destination: %w", err)
	}
	cur := "."
	for _, c := range strings.Split(rel, "/") {
		cur = path.Join(cur, c)
		fd, err := x.resolve(cur)
		if errors.Is(err, unix.ENOENT) {
			// Create the component in the directory its parent resolved to,
			// then look the whole prefix up again the same way.
			if err := unix.Mkdirat(parent, c, 0o755); err != nil && !errors.Is(err, unix.EEXIST) {
				unix.Close(parent)
				return -1, fmt.Errorf("creating directory %q: %w", cur, err)
			}
			x.markWritten(cur)
			fd, err = x.resolve(cur)
		}
		unix.Close(parent)
		if err != nil {
			// ENOENT here means cur is a dangling symlink; ENOTDIR a file.
			return -1, fmt.Errorf("resolving directory %q (is it a dangling symlink or a file?): %w", cur, err)
		}
		parent = fd
	}
	return parent, nil
}

// parent returns an O_PATH fd of name's directory, created if missing, and
// name's last component.
func (x *extractor) parent(name string) (int, string, error) {
	dir, err := x.mkdirAll(path.Dir(name))
	if err != nil {
		return -1, "", err
	}
	return dir, path.Base(name), nil
}

// makeRoom removes whatever is called base in dir so a new entry can take
// its place (the later entry wins), except that an existing directory stays
// when keepDir is set. It reports whether a directory was kept.
func makeRoom(dir int, base string, keepDir bool) (bool, error) {
	var st unix.Stat_t
	err := unix.Fstatat(dir, base, &st, unix.AT_SYMLINK_NOFOLLOW)
	if errors.Is(err, unix.ENOENT) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("inspecting existing %q: %w", base, err)
	}
	if keepDir && st.Mode&unix.S_IFMT == unix.S_IFDIR {
		return true, nil
	}
	if err := removeAll(dir, base); err != nil {
		return false, fmt.Errorf("replacing existing %q: %w", base, err)
	}
	return false, nil
}

// removeAll removes name in dir and, when it is a directory, everything
// under it. It walks with O_NOFOLLOW fds, so a symlink is removed, never
// followed.
func removeAll(dir int, name string) error {
	err := unix.Unlinkat(dir, name, 0)
	if err == nil || errors.Is(err, unix.ENOENT) {
		return nil
	}
	if !errors.Is(err, unix.EISDIR) {
		return err
	}
	fd, err := unix.Openat(dir, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	f := os.NewFile(uintptr(fd), name)
	names, err := f.Readdirnames(-1)
	if err == nil {
		for _, n := range names {
			if err = removeAll(fd, n); err != nil {
				break
			}
		}
	}
	f.Close()
	if err != nil {
		return err
	}
	return unix.Unlinkat(dir, name, unix.AT_REMOVEDIR)
}
