package template

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/polyvisor/polyvisor/internal/hostreq"
	"github.com/polyvisor/polyvisor/pkg/api"
)

// Owners of the hand-made tree: the shared id map's root and a user of it.
const treeRoot, treeUser = 1000000, 1001000

// makeTree adds container template name to s, a tree made by hand with
// what root trees have: nested directories, a setuid binary, relative and
// absolute symlinks, a hardlink, a FIFO, /dev/null, a sticky directory,
// a user xattr, owners of the id map.
func makeTree(t *testing.T, s Store, name string) *api.Template {
	t.Helper()
	requireRoot(t)
	tmpl := &api.Template{ID: name, Name: name, Type: TypeContainer, Source: "busybox", Arch: HostArch()}
	err := s.Add(tmpl, func(staging string) error {
		root := filepath.Join(staging, "rootfs")
		for _, d := range []string{"bin", "sbin", "etc", "dev", "tmp", "usr/lib/deep/er", "home/user"} {
			if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
				return err
			}
		}
		files := map[string]string{
			"bin/busybox": "#!/bin/true\nnot really busybox\n", "bin/su": "setuid program",
			"etc/passwd": "root:x:0:0::/root:/bin/sh\n", "usr/lib/deep/er/lib.so": strings.Repeat("x", 100000),
			"home/user/notes": "mine",
		}
		for f, body := range files {
			if err := os.WriteFile(filepath.Join(root, f), []byte(body), 0o644); err != nil {
				return err
			}
		}
		links := map[string]string{"bin/sh": "busybox", "sbin/init": "/bin/busybox", "usr/lib/up": "../../etc/passwd", "dev/fd": "/proc/self/fd"}
		for l, target := range links {
			if err := os.Symlink(target, filepath.Join(root, l)); err != nil {
				return err
			}
		}
		if err := os.Link(filepath.Join(root, "bin/busybox"), filepath.Join(root, "sbin/busybox")); err != nil {
			return err
		}
		if err := unix.Mkfifo(filepath.Join(root, "etc/initctl"), 0o600); err != nil {
			return err
		}
		if err := unix.Mknod(filepath.Join(root, "dev/null"), unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))); err != nil {
			return err
		}
		if err := unix.Setxattr(filepath.Join(root, "etc/passwd"), "user.polyvisor.test", []byte("kept"), 0); err != nil {
			return err
		}
		err := filepath.Walk(root, func(p string, _ os.FileInfo, err error) error {
			if err != nil {
				return err
			}
			return os.Lchown(p, treeRoot, treeRoot)
		})
		if err != nil {
			return err
		}
		// chown clears setuid bits, so the modes come after it.
		if err := os.Lchown(filepath.Join(root, "home/user/notes"), treeUser, treeUser+1); err != nil {
			return err
		}
		if err := os.Chmod(filepath.Join(root, "bin/su"), 0o4755|os.ModeSetuid); err != nil {
			return err
		}
		if err := os.Chmod(filepath.Join(root, "dev/null"), 0o666); err != nil {
			return err
		}
		if err := os.Chmod(filepath.Join(root, "tmp"), 0o777|os.ModeSticky); err != nil {
			return err
		}
		old := time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC)
		if err := os.Chtimes(filepath.Join(root, "etc/passwd"), old, old); err != nil {
			return err
		}
		tmpl.Digest, err = Digest(context.Background(), root)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return tmpl
}

// stores returns a sender's and a receiver's store, side by side.
func stores(t *testing.T) (Store, Store) {
	base := t.TempDir()
	return Store{Dir: filepath.Join(base, "a", "templates")}, Store{Dir: filepath.Join(base, "b", "templates")}
}

func archive(t *testing.T, s Store, name string) ([]byte, string) {
	t.Helper()
	var buf bytes.Buffer
	digest, err := s.Archive(context.Background(), name, &buf)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(buf.Bytes())
	if want := "sha256:" + hex.EncodeToString(sum[:]); digest != want {
		t.Fatalf("Archive returned digest %s, the stream's is %s", digest, want)
	}
	return buf.Bytes(), digest
}

// requireNothingLeft fails unless s's directory is empty (or absent).
func requireNothingLeft(t *testing.T, s Store) {
	t.Helper()
	entries, err := os.ReadDir(s.Dir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	for _, e := range entries {
		t.Errorf("left behind in the receiver's store: %s", e.Name())
	}
}

func TestArchiveReceiveRoundTripKeepsTheTree(t *testing.T) {
	src, dst := stores(t)
	want := makeTree(t, src, "tree")
	// A cache of this host's beside the template: not the template's.
	if err := os.WriteFile(filepath.Join(src.Dir, "tree", ".root-overlay.qcow2"), []byte("cache"), 0o644); err != nil {
		t.Fatal(err)
	}
	stream, digest := archive(t, src, "tree")
	if again, _ := archive(t, src, "tree"); !bytes.Equal(again, stream) {
		t.Fatal("archiving the same template twice gave different streams")
	}
	if err := dst.Receive(context.Background(), "tree", bytes.NewReader(stream), digest); err != nil {
		t.Fatal(err)
	}
	got, err := dst.Load("tree")
	if err != nil {
		t.Fatal(err)
	}
	if got.Digest != want.Digest || got.ID != "tree" || !got.CreatedAt.Equal(want.CreatedAt) {
		t.Fatalf("received %+v, sent %+v", got, want)
	}
	if d, err := Digest(context.Background(), dst.Rootfs("tree")); err != nil || d != want.Digest {
		t.Fatalf("received tree's digest %s (%v), sent %s", d, err, want.Digest)
	}
	root := dst.Rootfs("tree")
	checkMode(t, root, "bin/su", 0o755|os.ModeSetuid)
	checkMode(t, root, "tmp", os.ModeDir|os.ModeSticky|0o777)
	checkMode(t, root, "etc/initctl", os.ModeNamedPipe|0o600)
	checkMode(t, root, "dev/null", os.ModeDevice|os.ModeCharDevice|0o666)
	for rel, owner := range map[string][2]uint32{"bin/su": {treeRoot, treeRoot}, "home/user/notes": {treeUser, treeUser + 1}, "sbin/init": {treeRoot, treeRoot}} {
		info, err := os.Lstat(filepath.Join(root, rel))
		if err != nil {
			t.Fatal(err)
		}
		if st := info.Sys().(*syscall.Stat_t); st.Uid != owner[0] || st.Gid != owner[1] {
			t.Errorf("/%s owned by %d:%d, want %d:%d", rel, st.Uid, st.Gid, owner[0], owner[1])
		}
	}
	for link, target := range map[string]string{"sbin/init": "/bin/busybox", "bin/sh": "busybox", "usr/lib/up": "../../etc/passwd"} {
		if got, err := os.Readlink(filepath.Join(root, link)); err != nil || got != target {
			t.Errorf("/%s -> %q (%v), want %q", link, got, err, target)
		}
	}
	a, errA := os.Stat(filepath.Join(root, "bin/busybox"))
	b, errB := os.Stat(filepath.Join(root, "sbin/busybox"))
	if errA != nil || errB != nil || !os.SameFile(a, b) {
		t.Errorf("bin/busybox and sbin/busybox are no longer one file (%v, %v)", errA, errB)
	}
	if info, err := os.Stat(filepath.Join(root, "etc/passwd")); err != nil || info.ModTime().Year() != 2020 {
		t.Errorf("etc/passwd's time was not kept: %v", err)
	}
	val := make([]byte, 16)
	if n, err := unix.Getxattr(filepath.Join(root, "etc/passwd"), "user.polyvisor.test", val); err != nil || string(val[:n]) != "kept" {
		t.Errorf("user xattr: %q, %v", val[:n], err)
	}
	if _, err := os.Lstat(filepath.Join(dst.Dir, "tree", ".root-overlay.qcow2")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the sender's cache file was sent (%v)", err)
	}
	if info, err := os.Stat(filepath.Join(dst.Dir, "tree")); err != nil || info.Mode().Perm() != 0o700 {
		t.Errorf("the received template's directory: %v, %v; want mode 0700", info.Mode(), err)
	}
	if list, _ := dst.List(); len(list) != 1 {
		t.Errorf("the receiver lists %d templates, want 1", len(list))
	}
}

func TestReceiveRefusesATamperedStream(t *testing.T) {
	src, dst := stores(t)
	makeTree(t, src, "tree")
	stream, digest := archive(t, src, "tree")
	for _, at := range []int{0, 10, len(stream) / 2, len(stream) - 1} {
		tampered := bytes.Clone(stream)
		tampered[at] ^= 0x20
		err := dst.Receive(context.Background(), "tree", bytes.NewReader(tampered), digest)
		if err == nil || !errors.Is(err, api.ErrInvalid) || !strings.Contains(err.Error(), "differs from the sender's "+digest) || !strings.Contains(err.Error(), "nothing kept") {
			t.Fatalf("byte %d of %d changed: %v", at, len(stream), err)
		}
		requireNothingLeft(t, dst)
	}
	// A stream cut short is not the one sent either.
	if err := dst.Receive(context.Background(), "tree", bytes.NewReader(stream[:len(stream)-100]), digest); err == nil || !strings.Contains(err.Error(), "differs from the sender's") {
		t.Fatalf("a truncated stream: %v", err)
	}
	requireNothingLeft(t, dst)
}

func TestReceiveRefusesADigestMismatch(t *testing.T) {
	src, dst := stores(t)
	makeTree(t, src, "tree")
	stream, digest := archive(t, src, "tree")
	other := "sha256:" + strings.Repeat("ab", 32)
	err := dst.Receive(context.Background(), "tree", bytes.NewReader(stream), other)
	want := "template tree: the fetched content's digest " + digest + " differs from the sender's " + other + ": nothing kept"
	if err == nil || !strings.HasSuffix(err.Error(), want) {
		t.Fatalf("got %v, want %q", err, want)
	}
	requireNothingLeft(t, dst)
	if err := dst.Receive(context.Background(), "tree", bytes.NewReader(stream), "md5:1234"); err == nil || !errors.Is(err, api.ErrInvalid) {
		t.Fatalf("a malformed digest: %v", err)
	}
	requireNothingLeft(t, dst)
}

func TestReceiveRefusesAnotherTemplatesArchive(t *testing.T) {
	src, dst := stores(t)
	makeTree(t, src, "tree")
	stream, digest := archive(t, src, "tree")
	err := dst.Receive(context.Background(), "other", bytes.NewReader(stream), digest)
	if err == nil || !strings.Contains(err.Error(), `the fetched metadata names template "tree"`) {
		t.Fatalf("tree's archive received as other: %v", err)
	}
	requireNothingLeft(t, dst)
}

// A stream whose metadata's content digest is not its files' is refused,
// even when the stream itself arrived whole.
func TestReceiveRefusesFilesThatAreNotTheMetadatas(t *testing.T) {
	src, dst := stores(t)
	makeTree(t, src, "tree")
	if err := os.WriteFile(filepath.Join(src.Rootfs("tree"), "etc/passwd"), []byte("changed after the build\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	stream, digest := archive(t, src, "tree")
	err := dst.Receive(context.Background(), "tree", bytes.NewReader(stream), digest)
	if err == nil || !strings.Contains(err.Error(), "content digest") {
		t.Fatalf("got %v, want a content digest mismatch", err)
	}
	requireNothingLeft(t, dst)
}

func TestReceiveRefusesATemplateThatExists(t *testing.T) {
	src, _ := stores(t)
	want := makeTree(t, src, "tree")
	stream, digest := archive(t, src, "tree")
	err := src.Receive(context.Background(), "tree", bytes.NewReader(stream), digest)
	if !errors.Is(err, api.ErrExists) {
		t.Fatalf("received over an existing template: %v", err)
	}
	if d, err := Digest(context.Background(), src.Rootfs("tree")); err != nil || d != want.Digest {
		t.Fatalf("the existing template changed: %s, %v", d, err)
	}
	entries, _ := os.ReadDir(src.Dir)
	if len(entries) != 1 {
		t.Fatalf("the store holds %d entries, want the template alone", len(entries))
	}
}

func TestArchiveRefusesAPendingTemplate(t *testing.T) {
	src, _ := stores(t)
	makeTree(t, src, "tree")
	if err := MarkPending(filepath.Join(src.Dir, "tree")); err != nil {
		t.Fatal(err)
	}
	if _, err := src.Archive(context.Background(), "tree", new(bytes.Buffer)); !errors.Is(err, api.ErrConflict) {
		t.Fatalf("a pending template was archived: %v", err)
	}
}

// hostileStream is a plain tar of entries, as a hostile sender may send,
// and its true digest, which that sender announces.
func hostileStream(t *testing.T, entries ...tar.Header) ([]byte, string) {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, h := range entries {
		body := ""
		if h.Typeflag == tar.TypeReg {
			body = h.Linkname // the body, for brevity
			h.Linkname, h.Size = "", int64(len(body))
		}
		if h.Mode == 0 {
			h.Mode = 0o755
		}
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatal(err)
		}
		tw.Write([]byte(body))
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(buf.Bytes())
	return buf.Bytes(), "sha256:" + hex.EncodeToString(sum[:])
}

func TestReceiveRefusesHostileArchives(t *testing.T) {
	requireRoot(t)
	base := t.TempDir()
	outside := filepath.Join(base, "outside")
	if err := os.Mkdir(outside, 0o755); err != nil {
		t.Fatal(err)
	}
	dst := Store{Dir: filepath.Join(base, "store", "templates")}
	meta := "id: evil\nname: evil\ntype: container\ndigest: sha256:" + strings.Repeat("0", 64) + "\n"
	dir := func(name string) tar.Header { return tar.Header{Name: name, Typeflag: tar.TypeDir} }
	file := func(name, body string) tar.Header {
		return tar.Header{Name: name, Typeflag: tar.TypeReg, Linkname: body, Mode: 0o644}
	}
	link := func(name, target string) tar.Header {
		return tar.Header{Name: name, Typeflag: tar.TypeSymlink, Linkname: target}
	}
	for what, entries := range map[string][]tar.Header{
		"a name climbing out":              {file("template.yaml", meta), dir("rootfs"), file("../../escape", "x")},
		"a name climbing out of rootfs":    {file("template.yaml", meta), dir("rootfs"), file("rootfs/../../../escape", "x")},
		"an absolute name":                 {file("template.yaml", meta), dir("rootfs"), file(outside+"/escape", "x")},
		"a file through an absolute link":  {file("template.yaml", meta), dir("rootfs"), link("rootfs/evil", outside), file("rootfs/evil/escape", "x")},
		"a file through a link to /":       {file("template.yaml", meta), dir("rootfs"), link("rootfs/evil", "/"), file("rootfs/evil"+outside+"/escape", "x")},
		"metadata that is a link":          {link("template.yaml", filepath.Join(outside, "meta")), dir("rootfs")},
		"a relative link climbing out":     {file("template.yaml", meta), dir("rootfs"), link("rootfs/up", "../../../outside"), file("rootfs/up/escape", "x")},
		"a device node":                    {file("template.yaml", meta), dir("rootfs"), {Name: "rootfs/sda", Typeflag: tar.TypeBlock, Devmajor: 8, Mode: 0o666}},
		"a kernel memory node":             {file("template.yaml", meta), dir("rootfs"), {Name: "rootfs/mem", Typeflag: tar.TypeChar, Devmajor: 1, Devminor: 1, Mode: 0o666}},
		"a rootfs that is a link":          {file("template.yaml", meta), link("rootfs", outside)},
		"a hardlink to a file outside":     {file("template.yaml", meta), dir("rootfs"), {Name: "rootfs/pw", Typeflag: tar.TypeLink, Linkname: "../../outside/meta"}},
		"a valid tree with a wrong digest": {file("template.yaml", meta), dir("rootfs"), file("rootfs/hello", "hi")},
	} {
		if err := os.WriteFile(filepath.Join(outside, "meta"), []byte("outside's own\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		stream, digest := hostileStream(t, entries...)
		err := dst.Receive(context.Background(), "evil", bytes.NewReader(stream), digest)
		if err == nil || !strings.Contains(err.Error(), "nothing kept") {
			t.Errorf("%s: received (%v)", what, err)
		}
		t.Logf("%s: %v", what, err)
		requireNothingLeft(t, dst)
		got, _ := os.ReadDir(outside)
		if len(got) != 1 || got[0].Name() != "meta" {
			t.Errorf("%s: wrote beside the store: %v", what, got)
		}
		if data, _ := os.ReadFile(filepath.Join(outside, "meta")); string(data) != "outside's own\n" {
			t.Errorf("%s: changed a file outside: %q", what, data)
		}
		for _, p := range []string{filepath.Join(base, "escape"), filepath.Join(base, "store", "escape"), "/escape"} {
			if _, err := os.Lstat(p); err == nil {
				t.Errorf("%s: created %s", what, p)
			}
		}
	}
}

// A real template, as `template build busybox` makes it, goes across whole.
func TestArchiveReceiveBuiltBusyboxTemplate(t *testing.T) {
	requireRoot(t)
	hostreq.Need(t, hostBusybox)
	src, dst := stores(t)
	src.AgentDir = t.TempDir()
	built, err := src.Build(context.Background(), Request{Source: "busybox", Name: "bb"}, func(string, int64, int64) {})
	if err != nil {
		t.Fatal(err)
	}
	stream, digest := archive(t, src, "bb")
	start := time.Now()
	if err := dst.Receive(context.Background(), "bb", bytes.NewReader(stream), digest); err != nil {
		t.Fatal(err)
	}
	t.Logf("busybox template: %d bytes of archive for %d bytes of tree, received in %v", len(stream), built.Size, time.Since(start))
	got, err := dst.Load("bb")
	if err != nil || got.Digest != built.Digest {
		t.Fatalf("received %+v (%v), built %+v", got, err, built)
	}
	if d, err := Digest(context.Background(), dst.Rootfs("bb")); err != nil || d != built.Digest {
		t.Fatalf("received tree digests to %s (%v), built %s", d, err, built.Digest)
	}
	if target, err := os.Readlink(filepath.Join(dst.Rootfs("bb"), "sbin/init")); err != nil || target != "/bin/busybox" {
		t.Fatalf("/sbin/init -> %q, %v", target, err)
	}
}
