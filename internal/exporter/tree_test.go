package exporter

import (
	"archive/tar"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/polyvisor/polyvisor/internal/idmap"
	"github.com/polyvisor/polyvisor/internal/testgate"
	"github.com/polyvisor/polyvisor/pkg/api"
)

func TestTreeWritesTheGuestsView(t *testing.T) {
	testgate.RequireRoot(t, "giving files the id map's owners needs root")
	root := t.TempDir()
	m := idmap.Default()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(root, "etc"), 0o755))
	must(os.WriteFile(filepath.Join(root, "etc", "motd"), []byte("hello\n"), 0o644))
	must(os.Link(filepath.Join(root, "etc", "motd"), filepath.Join(root, "etc", "motd.link")))
	must(os.Symlink("/etc/motd", filepath.Join(root, "motd")))
	must(unix.Setxattr(filepath.Join(root, "etc", "motd"), "user.origin", []byte("test"), 0))
	must(unix.Mkfifo(filepath.Join(root, "fifo"), 0o600))
	// Owned as a container's files are on the host: shifted up.
	for _, p := range []string{"", "etc", "etc/motd", "fifo", "motd"} {
		must(os.Lchown(filepath.Join(root, p), int(m.HostBase), int(m.HostBase)+5))
	}
	dst := filepath.Join(t.TempDir(), "rootfs.tar")
	must(Tree(context.Background(), root, dst, idmap.ShiftDown(m), func(string, int64, int64) {}))

	f, err := os.Open(dst)
	must(err)
	defer f.Close()
	got := map[string]*tar.Header{}
	tr := tar.NewReader(f)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		must(err)
		got[hdr.Name] = hdr
	}
	if h := got["etc/motd"]; h == nil || h.Uid != 0 || h.Gid != 5 || h.PAXRecords["SCHILY.xattr.user.origin"] != "test" {
		t.Errorf("etc/motd: %+v", h)
	}
	if h := got["etc/motd.link"]; h == nil || h.Typeflag != tar.TypeLink || h.Linkname != "etc/motd" {
		t.Errorf("etc/motd.link: %+v", h)
	}
	if h := got["motd"]; h == nil || h.Typeflag != tar.TypeSymlink || h.Linkname != "/etc/motd" {
		t.Errorf("motd: %+v", h)
	}
	if h := got["etc/"]; h == nil || h.Typeflag != tar.TypeDir {
		t.Errorf("etc/: %+v", h)
	}
	if h := got["fifo"]; h == nil || h.Typeflag != tar.TypeFifo {
		t.Errorf("fifo: %+v", h)
	}
	if err := Tree(context.Background(), root, dst, nil, func(string, int64, int64) {}); !errors.Is(err, api.ErrExists) {
		t.Errorf("a second export over the first: %v, want it refused", err)
	}
}

func TestTreeFailureLeavesNoFile(t *testing.T) {
	root := t.TempDir()
	// An owner outside the container's map cannot be shifted back.
	if err := os.WriteFile(filepath.Join(root, "f"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	err := Tree(context.Background(), root, filepath.Join(dir, "out.tar"), idmap.ShiftDown(idmap.Default()), func(string, int64, int64) {})
	if err == nil {
		t.Fatal("a tree owned by host root exported through the container map")
	}
	if left, _ := os.ReadDir(dir); len(left) > 0 {
		t.Errorf("the failed export left %v", left)
	}
}

func TestCheckDestination(t *testing.T) {
	dir := t.TempDir()
	existing := filepath.Join(dir, "x")
	os.WriteFile(existing, nil, 0o644)
	for path, want := range map[string]error{
		"relative.ova":                  api.ErrInvalid,
		existing:                        api.ErrExists,
		filepath.Join(dir, "no", "x"):   api.ErrInvalid,
		filepath.Join(dir, "fresh.ova"): nil,
	} {
		if err := CheckDestination(path); !errors.Is(err, want) && !(want == nil && err == nil) {
			t.Errorf("CheckDestination(%s) = %v, want %v", path, err, want)
		}
	}
}
