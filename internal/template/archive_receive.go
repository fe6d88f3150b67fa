package template

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
	"gopkg.in/yaml.v3"

	"github.com/polyvisor/polyvisor/internal/fsutil"
	"github.com/polyvisor/polyvisor/internal/lazyre"
	"github.com/polyvisor/polyvisor/internal/safetar"
	"github.com/polyvisor/polyvisor/pkg/api"
)

// digestRE is what Archive's digests look like.
var digestRE = lazyre.New(`^sha256:[0-9a-f]{64}$`)

// Receive makes template name here from r, a stream Archive wrote on
// another host, whose digest its sender announced. The stream is unpacked
// by safetar (nothing outside the staging directory is ever written) into a
// staging directory beside the templates, and renamed into place only when
// the stream's own SHA-256, taken as it is read, equals digest, its
// metadata names the template name, and, where the metadata's content
// digest can be computed from the files (container templates, and VM
// templates polyvisor built), the files give that digest. Anything else
// leaves nothing behind. A template already here is refused.
func (s Store) Receive(ctx context.Context, name string, r io.Reader, digest string) (err error) {
	if !validKey(name) {
		return fmt.Errorf("%w: template %q: not a template name", api.ErrInvalid, name)
	}
	if !digestRE().MatchString(digest) {
		return fmt.Errorf("%w: template %s: the sender's digest %q is not sha256: and 64 hex digits", api.ErrInvalid, name, digest)
	}
	final := filepath.Join(s.Dir, name)
	if _, err := os.Lstat(final); err == nil {
		return fmt.Errorf("template %s: %w here: delete it first to fetch it again", name, api.ErrExists)
	}
	if err := os.MkdirAll(s.Dir, 0o700); err != nil {
		return fmt.Errorf("receive template %s: %w", name, err)
	}
	// The .build- prefix makes Sweep remove what a crash leaves.
	staging, err := os.MkdirTemp(s.Dir, ".build-"+name+"-")
	if err != nil {
		return fmt.Errorf("receive template %s: %w", name, err)
	}
	defer func() {
		if err != nil {
			os.RemoveAll(staging)
		}
	}()
	got, unpackErr := unpack(ctx, r, staging)
	if got != digest {
		if unpackErr != nil && ctx.Err() != nil {
			return fmt.Errorf("receive template %s: %w: nothing kept", name, unpackErr)
		}
		return fmt.Errorf("%w: template %s: the fetched content's digest %s differs from the sender's %s: nothing kept", api.ErrInvalid, name, got, digest)
	}
	if unpackErr != nil {
		return fmt.Errorf("receive template %s: %w: nothing kept", name, unpackErr)
	}
	if err := checkReceived(ctx, name, staging); err != nil {
		return fmt.Errorf("%w: nothing kept", err)
	}
	if err := seal(staging); err != nil {
		return fmt.Errorf("receive template %s: %w", name, err)
	}
	if err = os.Rename(staging, final); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("template %s: %w here: it was made while this one was fetched", name, api.ErrExists)
		}
		return fmt.Errorf("receive template %s: %w", name, err)
	}
	return fsutil.SyncDir(s.Dir)
}

// unpack extracts the stream r into dir and returns the SHA-256 of every
// byte r gave, read to its end even when the extraction failed, so that a
// stream changed on its way is reported as that, whatever it broke.
func unpack(ctx context.Context, r io.Reader, dir string) (string, error) {
	sum := sha256.New()
	tee := io.TeeReader(ctxReader{ctx, r}, sum)
	err := func() error {
		tarStream, err := safetar.Decompress(tee)
		if err != nil {
			return err
		}
		defer tarStream.Close()
		_, err = safetar.Extract(ctx, tarStream, dir, safetar.Options{Links: safetar.LinksInRoot, Devices: safetar.StandardDevices})
		return err
	}()
	if _, drainErr := io.Copy(io.Discard, tee); err == nil {
		err = drainErr
	}
	return "sha256:" + hex.EncodeToString(sum.Sum(nil)), err
}

// checkReceived checks what a stream unpacked into dir: a template called
// name, laid out as Add makes one, whose files give the content digest
// its metadata records (where that digest comes from its files).
func checkReceived(ctx context.Context, name, dir string) error {
	meta := filepath.Join(dir, metaFile)
	if info, err := os.Lstat(meta); err != nil || !info.Mode().IsRegular() {
		return fmt.Errorf("%w: template %s: the fetched content has no %s file", api.ErrInvalid, name, metaFile)
	}
	data, err := os.ReadFile(meta)
	if err != nil {
		return fmt.Errorf("receive template %s: %w", name, err)
	}
	var t api.Template
	if err := yaml.Unmarshal(data, &t); err != nil {
		return fmt.Errorf("%w: template %s: the fetched %s: %v", api.ErrInvalid, name, metaFile, err)
	}
	if t.ID != name {
		return fmt.Errorf("%w: template %s: the fetched metadata names template %q", api.ErrInvalid, name, t.ID)
	}
	if _, err := os.Lstat(filepath.Join(dir, pendingFile)); err == nil {
		return fmt.Errorf("%w: template %s: the fetched template is marked pending (not complete)", api.ErrInvalid, name)
	}
	if err := checkTopLevel(name, dir, &t); err != nil {
		return err
	}
	want := t.Digest
	got, err := contentDigest(ctx, dir, &t)
	if err != nil {
		return fmt.Errorf("template %s: content digest: %w", name, err)
	}
	if got != "" && want != "" && got != want {
		return fmt.Errorf("%w: template %s: the fetched files' content digest %s differs from their metadata's %s", api.ErrInvalid, name, got, want)
	}
	return nil
}

// checkTopLevel refuses a template directory whose top level holds
// anything but regular files and directories (a symlink there would be
// followed by whoever opens the template's files), and a container
// template without its rootfs/ or a VM template without the files its boot
// section names.
func checkTopLevel(name, dir string, t *api.Template) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("receive template %s: %w", name, err)
	}
	for _, e := range entries {
		if !e.Type().IsRegular() && !e.IsDir() {
			return fmt.Errorf("%w: template %s: the fetched %s is not a file or a directory (a symlink, a device or a FIFO)", api.ErrInvalid, name, e.Name())
		}
	}
	var need []string
	switch {
	case t.Type == "" || t.Type == TypeContainer:
		if info, err := os.Lstat(filepath.Join(dir, "rootfs")); err != nil || !info.IsDir() {
			return fmt.Errorf("%w: template %s: the fetched container template has no rootfs directory", api.ErrInvalid, name)
		}
	case t.Type == TypeVM && t.Boot != nil:
		need = append([]string{t.Boot.Kernel, t.Boot.Initrd, t.Boot.Disk}, t.Boot.DataDisks...)
	default:
		return fmt.Errorf("%w: template %s: the fetched template is of type %q, with no boot section", api.ErrInvalid, name, t.Type)
	}
	for _, f := range need {
		if f == "" {
			continue
		}
		info, err := os.Lstat(filepath.Join(dir, f))
		if filepath.Base(f) != f || err != nil || !info.Mode().IsRegular() {
			return fmt.Errorf("%w: template %s: the fetched template's boot file %q is not a file in its directory", api.ErrInvalid, name, f)
		}
	}
	return nil
}

// contentDigest computes what t.Digest records from the template's files
// in dir, or "" where that digest is not the files' (a VM template
// imported from a disk: its digest is the source image's).
func contentDigest(ctx context.Context, dir string, t *api.Template) (string, error) {
	switch {
	case t.Type == "" || t.Type == TypeContainer:
		return Digest(ctx, filepath.Join(dir, "rootfs"))
	case t.Source == "import":
		return "", nil
	default:
		c := *t
		if err := describeVMFiles(ctx, dir, &c); err != nil {
			return "", err
		}
		return c.Digest, nil
	}
}

// seal gives the staging directory the owner and mode Add's have, whatever
// a "." entry of the stream said, and flushes what was unpacked before the
// rename makes it a template.
func seal(dir string) error {
	if err := os.Chown(dir, os.Geteuid(), os.Getegid()); err != nil {
		return err
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return err
	}
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	return unix.Syncfs(fd)
}
