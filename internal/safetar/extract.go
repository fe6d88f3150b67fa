package safetar

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"path"
	"strings"

	"golang.org/x/sys/unix"
)

// Extract writes the tar stream r into dest, an existing directory, and
// never outside it. Entry names are cleaned ("./bin/sh" becomes "bin/sh");
// absolute names and names with a ".." component are refused, wrapped in
// ErrUnsafe. On error what was extracted so far stays: the caller created
// dest and removes it. The context is checked between entries and while
// file contents are copied.
func Extract(ctx context.Context, r io.Reader, dest string, opts Options) (Result, error) {
	root, err := unix.Open(dest, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return Result{}, fmt.Errorf("opening extraction destination %s: %w", dest, err)
	}
	defer unix.Close(root)
	x := &extractor{root: root, opts: opts}
	if opts.Whiteouts {
		x.written = map[string]bool{}
	}
	tr := tar.NewReader(ctxReader{ctx: ctx, r: r})
	for {
		if err := ctx.Err(); err != nil {
			return x.res, fmt.Errorf("extracting into %s: %w", dest, err)
		}
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return x.res, fmt.Errorf("reading tar stream for %s: %w", dest, err)
		}
		if err := x.entry(ctx, hdr, tr); err != nil {
			return x.res, fmt.Errorf("extracting into %s: %w", dest, err)
		}
	}
	if err := x.setDirTimes(); err != nil {
		return x.res, fmt.Errorf("extracting into %s: %w", dest, err)
	}
	return x.res, nil
}

// extractor is the state of one Extract call.
type extractor struct {
	root int // dest, opened once; every lookup starts here
	opts Options
	res  Result
	// dirs collects directory times, set once nothing more is created in
	// them.
	dirs []dirTime
	// written holds the names this stream created and their ancestors, so
	// an opaque whiteout removes only what lower layers put there.
	written map[string]bool
}

type dirTime struct {
	name string
	hdr  *tar.Header
}

func (x *extractor) entry(ctx context.Context, hdr *tar.Header, r io.Reader) error {
	if hdr.Typeflag == tar.TypeXGlobalHeader {
		return nil
	}
	name, err := cleanName(hdr.Name)
	if err != nil {
		return fmt.Errorf("%w: entry %q %v", ErrUnsafe, hdr.Name, err)
	}
	if x.opts.Whiteouts {
		if done, err := x.whiteout(name); done {
			return err
		}
	}
	if hdr.Uid < 0 || hdr.Gid < 0 || hdr.Uid > maxID || hdr.Gid > maxID {
		return fmt.Errorf("%w: entry %q has owner %d:%d, outside the valid range", ErrUnsafe, name, hdr.Uid, hdr.Gid)
	}
	if name == "." {
		if hdr.Typeflag != tar.TypeDir {
			return fmt.Errorf("%w: entry %q would replace the destination itself with a non-directory", ErrUnsafe, hdr.Name)
		}
		return x.rootDir(hdr)
	}
	switch hdr.Typeflag {
	case tar.TypeDir:
		err = x.dir(name, hdr)
	case tar.TypeReg:
		err = x.file(ctx, name, hdr, r)
	case tar.TypeSymlink:
		err = x.symlink(name, hdr)
	case tar.TypeLink:
		err = x.hardlink(name, hdr)
	case tar.TypeFifo:
		err = x.fifo(name, hdr)
	case tar.TypeChar, tar.TypeBlock:
		if x.opts.Devices == StandardDevices && standardDevice(hdr) {
			err = x.device(name, hdr)
			break
		}
		if x.opts.Devices == SkipDevices {
			x.warn("skipped device node %q (%d:%d): containers get their own /dev", name, hdr.Devmajor, hdr.Devminor)
			return nil
		}
		return fmt.Errorf("%w: entry %q is a device node (%d:%d); device nodes are not extracted", ErrUnsafe, name, hdr.Devmajor, hdr.Devminor)
	default:
		x.warn("skipped entry %q of unsupported tar type %q", name, hdr.Typeflag)
		return nil
	}
	if err != nil {
		return fmt.Errorf("entry %q: %w", name, err)
	}
	x.markWritten(name)
	return nil
}

// maxID is the largest uid or gid chown accepts; -1 (all ones) means "leave
// unchanged" to the kernel.
const maxID = 1<<32 - 2

// cleanName turns an archive name (or a hardlink target) into a clean
// relative path, refusing absolute names and ".." components: those can only
// mean the archive wants to write outside its root.
func cleanName(raw string) (string, error) {
	switch {
	case raw == "":
		return "", errors.New("has an empty name")
	case strings.HasPrefix(raw, "/"):
		return "", errors.New("has an absolute name")
	case strings.ContainsRune(raw, 0):
		return "", errors.New("has a NUL byte in its name")
	}
	for _, c := range strings.Split(raw, "/") {
		if c == ".." {
			return "", errors.New(`climbs out of the destination with ".."`)
		}
	}
	return path.Clean(raw), nil
}

func (x *extractor) markWritten(name string) {
	if x.written == nil {
		return
	}
	for n := name; n != "." && !x.written[n]; n = path.Dir(n) {
		x.written[n] = true
	}
}

// ctxReader stops a long copy when the context ends.
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
