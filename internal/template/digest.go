package template

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"

	"github.com/polyvisor/polyvisor/internal/fsutil"
	"github.com/polyvisor/polyvisor/pkg/api"
)

// Digest returns "sha256:<hex>" over the tree: sorted relative paths, type, mode, uid, gid, size, symlink target, file contents. Deterministic, ignores mtimes and atimes.
//
// Each entry adds one line, in lexical path order: the quoted relative path, a type letter
// (d, f, l, c, b, p, s), the octal permission bits with setuid/setgid/sticky, uid, gid, and
// then for a regular file its size and the sha256 of its contents, for a symlink its quoted
// target, for a device node its device number. Directory sizes depend on the filesystem and
// are left out. It never follows symlinks and stays on rootfs's filesystem, like
// idmap.ShiftTree, so a mount inside the tree does not change the digest.
func Digest(ctx context.Context, rootfs string) (string, error) {
	tree := sha256.New()
	contents := make(map[[2]uint64]string) // sha256 by device and inode: hardlinks are read once
	err := fsutil.WalkOneFS(ctx, rootfs, func(e fsutil.Entry) error {
		line, err := digestLine(ctx, e.Path, e.Rel, e.Info, e.Stat, contents)
		if err != nil {
			return err
		}
		_, err = io.WriteString(tree, line)
		return err
	})
	if err != nil {
		return "", fmt.Errorf("digest %s: %w", rootfs, err)
	}
	return "sha256:" + hex.EncodeToString(tree.Sum(nil)), nil
}

// digestLine describes one entry of the tree for Digest.
func digestLine(ctx context.Context, path, rel string, info fs.FileInfo, stat *syscall.Stat_t, contents map[[2]uint64]string) (string, error) {
	mode := info.Mode()
	common := fmt.Sprintf("%q %c %04o %d %d", rel, typeLetter(mode), stat.Mode&0o7777, stat.Uid, stat.Gid)
	switch {
	case mode.IsRegular():
		id := [2]uint64{stat.Dev, stat.Ino}
		sum, ok := contents[id]
		if !ok {
			var err error
			if sum, err = FileSHA256(ctx, path); err != nil {
				return "", err
			}
			contents[id] = sum
		}
		return fmt.Sprintf("%s %d %s\n", common, info.Size(), sum), nil
	case mode&os.ModeSymlink != 0:
		target, err := os.Readlink(path)
		if err != nil {
			return "", err
		}
		return fmt.Sprintf("%s %q\n", common, target), nil
	case mode&os.ModeDevice != 0:
		return fmt.Sprintf("%s %#x\n", common, stat.Rdev), nil
	default:
		return common + "\n", nil
	}
}

func typeLetter(mode fs.FileMode) byte {
	switch {
	case mode.IsDir():
		return 'd'
	case mode.IsRegular():
		return 'f'
	case mode&os.ModeSymlink != 0:
		return 'l'
	case mode&os.ModeCharDevice != 0:
		return 'c'
	case mode&os.ModeDevice != 0:
		return 'b'
	case mode&os.ModeNamedPipe != 0:
		return 'p'
	case mode&os.ModeSocket != 0:
		return 's'
	}
	return '?'
}

// FileSHA256 is the hex SHA-256 of the file at path, stopping when ctx
// ends. What is opened must still be a regular file, and is read to the
// size it had when opened: a path swapped meanwhile for a device or a pipe
// would otherwise be read forever.
func FileSHA256(ctx context.Context, path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return "", err
	}
	if !info.Mode().IsRegular() {
		return "", fmt.Errorf("%w: %s is no longer a regular file", api.ErrInvalid, filepath.Base(path))
	}
	h := sha256.New()
	r := io.LimitReader(f, info.Size())
	buf := make([]byte, 1<<20)
	for {
		if err := ctx.Err(); err != nil {
			return "", fmt.Errorf("hash %s: %w", filepath.Base(path), err)
		}
		n, err := r.Read(buf)
		h.Write(buf[:n])
		if err == io.EOF {
			return hex.EncodeToString(h.Sum(nil)), nil
		}
		if err != nil {
			return "", fmt.Errorf("hash %s: %w", filepath.Base(path), err)
		}
	}
}
