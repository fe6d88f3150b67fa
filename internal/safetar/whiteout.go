package safetar

import (
	"errors"
	"fmt"
	"os"
	"path"
	"strings"

	"golang.org/x/sys/unix"
)

// OCI layer whiteouts (image-spec layer.md), applied when
// Options.Whiteouts is set.
const (
	whiteoutPrefix = ".wh."
	// whiteoutMeta prefixes AUFS metadata entries, opaque marker included.
	whiteoutMeta   = ".wh..wh."
	whiteoutOpaque = ".wh..wh..opq"
)

// whiteout applies name when it is a whiteout entry and reports whether it
// was one. The removal resolves its directory like any entry, so it can
// only remove things inside the destination.
func (x *extractor) whiteout(name string) (bool, error) {
	base := path.Base(name)
	if !strings.HasPrefix(base, whiteoutPrefix) {
		return false, nil
	}
	dirName := path.Dir(name)
	if base == whiteoutOpaque {
		return true, x.opaque(dirName)
	}
	if strings.HasPrefix(base, whiteoutMeta) {
		return true, nil // other AUFS metadata: nothing to apply
	}
	target := strings.TrimPrefix(base, whiteoutPrefix)
	if target == "." || target == ".." {
		return true, fmt.Errorf("%w: whiteout %q names %q", ErrUnsafe, name, target)
	}
	dir, err := x.resolve(dirName)
	if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR) {
		return true, nil // nothing below to hide
	}
	if err != nil {
		return true, fmt.Errorf("whiteout %q: resolving its directory: %w", name, err)
	}
	defer unix.Close(dir)
	if err := removeAll(dir, target); err != nil {
		return true, fmt.Errorf("whiteout %q: removing %q: %w", name, path.Join(dirName, target), err)
	}
	return true, nil
}

// opaque empties directory dirName of everything this stream did not write:
// what lower layers put there is hidden, the layer's own entries stay.
func (x *extractor) opaque(dirName string) error {
	dir, err := x.resolve(dirName)
	if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("opaque whiteout in %q: resolving the directory: %w", dirName, err)
	}
	defer unix.Close(dir)
	if err := x.removeLower(dir, dirName); err != nil {
		return fmt.Errorf("opaque whiteout in %q: %w", dirName, err)
	}
	return nil
}

func (x *extractor) removeLower(dir int, dirName string) error {
	fd, err := unix.Openat(dir, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	f := os.NewFile(uintptr(fd), dirName)
	defer f.Close()
	names, err := f.Readdirnames(-1)
	if err != nil {
		return err
	}
	for _, n := range names {
		full := path.Join(dirName, n)
		if !x.written[full] {
			if err := removeAll(fd, n); err != nil {
				return fmt.Errorf("removing %q: %w", full, err)
			}
			continue
		}
		// Written by this layer: keep it, but a directory may still hold
		// entries from below.
		sub, err := unix.Openat(fd, n, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if errors.Is(err, unix.ENOTDIR) || errors.Is(err, unix.ELOOP) {
			continue
		}
		if err != nil {
			return err
		}
		err = x.removeLower(sub, full)
		unix.Close(sub)
		if err != nil {
			return err
		}
	}
	return nil
}
