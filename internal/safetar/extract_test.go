package safetar

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/polyvisor/polyvisor/internal/testgate"
	"golang.org/x/sys/unix"
)

func TestExtractRoundTrip(t *testing.T) {
	testgate.RequireRoot(t, "chowning files to the archive's owners needs root")
	s := newSandbox(t, t.TempDir())
	owned := file("home/u/notes", "mine\n")
	owned.hdr.Uid, owned.hdr.Gid, owned.hdr.Mode = 1000, 1001, 0o600
	su := file("bin/su", "su")
	su.hdr.Mode = 0o4755
	attrs := file("etc/attrs", "x")
	attrs.hdr.PAXRecords = map[string]string{
		"SCHILY.xattr.user.polyvisor": "yes",
		"SCHILY.xattr.trusted.secret": "no",
	}
	private := dir("./secret/")
	private.hdr.Mode = 0o700
	fifo := special("run/fifo", tar.TypeFifo)
	fifo.hdr.Mode = 0o640
	data := buildTar(t,
		dir("./"),
		dir("./bin/"),
		file("./bin/busybox", "#!busybox"),
		symlink("bin/sh", "busybox"),
		symlink("lib", "/usr/lib"),
		hardlink("bin/ash", "bin/busybox"),
		su,
		owned, // parent home/u not listed: created implicitly
		attrs,
		private,
		file("secret/key", "k"),
		fifo,
	)
	res, err := s.extract(t, data, Options{Links: LinksInRoot})
	if err != nil {
		t.Fatal(err)
	}
	s.checkOutside(t)
	if res.Files != 6 || res.Dirs != 3 || res.Links != 3 || res.Bytes != int64(len("#!busybox")+2+5+1+1) {
		t.Errorf("result %+v, want 6 files, 3 dirs, 3 links, 18 bytes", res)
	}
	if len(res.Warnings) != 1 || !strings.Contains(res.Warnings[0], "trusted.secret") {
		t.Errorf("warnings %q, want one about trusted.secret", res.Warnings)
	}

	d := s.dest
	if b, err := os.ReadFile(filepath.Join(d, "bin/busybox")); err != nil || string(b) != "#!busybox" {
		t.Errorf("bin/busybox = %q, %v", b, err)
	}
	if target, err := os.Readlink(filepath.Join(d, "bin/sh")); err != nil || target != "busybox" {
		t.Errorf("bin/sh -> %q, %v; want busybox", target, err)
	}
	if target, err := os.Readlink(filepath.Join(d, "lib")); err != nil || target != "/usr/lib" {
		t.Errorf("lib -> %q, %v; want /usr/lib kept as written", target, err)
	}
	bb, ash := stat(t, filepath.Join(d, "bin/busybox")), stat(t, filepath.Join(d, "bin/ash"))
	if bb.Ino != ash.Ino || bb.Nlink != 2 {
		t.Errorf("bin/ash is not a hardlink of bin/busybox (inodes %d, %d, nlink %d)", bb.Ino, ash.Ino, bb.Nlink)
	}
	if m := stat(t, filepath.Join(d, "bin/su")).Mode & 0o7777; m != 0o4755 {
		t.Errorf("bin/su mode %#o, want 04755 (setuid kept with owners restored)", m)
	}
	if st := stat(t, filepath.Join(d, "home/u/notes")); st.Uid != 1000 || st.Gid != 1001 || st.Mode&0o7777 != 0o600 {
		t.Errorf("home/u/notes owner %d:%d mode %#o, want 1000:1001 0600", st.Uid, st.Gid, st.Mode&0o7777)
	}
	if st := stat(t, filepath.Join(d, "secret")); st.Mode&0o7777 != 0o700 || st.Mode&unix.S_IFMT != unix.S_IFDIR {
		t.Errorf("secret mode %#o, want directory 0700", st.Mode)
	}
	if st := stat(t, filepath.Join(d, "run/fifo")); st.Mode&unix.S_IFMT != unix.S_IFIFO || st.Mode&0o7777 != 0o640 {
		t.Errorf("run/fifo mode %#o, want fifo 0640", st.Mode)
	}
	buf := make([]byte, 16)
	if n, err := unix.Getxattr(filepath.Join(d, "etc/attrs"), "user.polyvisor", buf); err != nil || string(buf[:n]) != "yes" {
		t.Errorf("user.polyvisor = %q, %v; want yes", buf[:n], err)
	}
	if _, err := unix.Getxattr(filepath.Join(d, "etc/attrs"), "trusted.secret", buf); err == nil {
		t.Error("trusted.secret was restored, want it skipped")
	}
	// Times: files, symlinks and directories (set last, after their
	// children) carry the archive's mtime.
	for _, p := range []string{".", "bin", "bin/busybox", "secret", "run/fifo"} {
		if got := stat(t, filepath.Join(d, p)).Mtim.Sec; got != testTime.Unix() {
			t.Errorf("%s mtime %d, want %d", p, got, testTime.Unix())
		}
	}
	var lst unix.Stat_t
	if err := unix.Lstat(filepath.Join(d, "bin/sh"), &lst); err != nil || lst.Mtim.Sec != testTime.Unix() {
		t.Errorf("symlink bin/sh mtime %d, %v; want %d", lst.Mtim.Sec, err, testTime.Unix())
	}
}

func TestExtractSkipOwnersDropsSetuid(t *testing.T) {
	s := newSandbox(t, t.TempDir())
	su := file("su", "su")
	su.hdr.Mode, su.hdr.Uid = 0o4755, 1234
	res, err := s.extract(t, buildTar(t, su), Options{SkipOwners: true})
	if err != nil {
		t.Fatal(err)
	}
	st := stat(t, filepath.Join(s.dest, "su"))
	if st.Mode&0o7777 != 0o755 || st.Uid != uint32(os.Getuid()) {
		t.Errorf("su mode %#o owner %d, want 0755 owned by the extracting user", st.Mode&0o7777, st.Uid)
	}
	if len(res.Warnings) != 1 {
		t.Errorf("warnings %q, want one about the dropped setuid bit", res.Warnings)
	}
}

func TestExtractLaterEntryWins(t *testing.T) {
	testgate.RequireRoot(t, "chowning files to the archive's owners needs root")
	s := newSandbox(t, t.TempDir())
	keep := dir("d")
	keep.hdr.Mode = 0o711
	data := buildTar(t,
		file("f", "old"),
		file("f", "new"), // file over file
		dir("d"),
		file("d/inner", "x"),
		keep,               // directory over directory keeps contents
		dir("x"),           //
		file("x/gone", ""), //
		file("x", "file"),  // file over directory replaces the subtree
		file("y", "file"),
		dir("y"), // directory over file
		symlink("z", "/"),
		file("z", "plain"), // file over symlink: the link is replaced, not followed
	)
	if _, err := s.extract(t, data, Options{Links: LinksInRoot}); err != nil {
		t.Fatal(err)
	}
	s.checkOutside(t)
	read := func(p string) string {
		b, err := os.ReadFile(filepath.Join(s.dest, p))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	if read("f") != "new" || read("d/inner") != "x" || read("x") != "file" || read("z") != "plain" {
		t.Errorf("f=%q d/inner=%q x=%q z=%q", read("f"), read("d/inner"), read("x"), read("z"))
	}
	if m := stat(t, filepath.Join(s.dest, "d")).Mode & 0o7777; m != 0o711 {
		t.Errorf("d mode %#o, want the later entry's 0711", m)
	}
	if st := stat(t, filepath.Join(s.dest, "y")); st.Mode&unix.S_IFMT != unix.S_IFDIR {
		t.Errorf("y is not a directory")
	}
}

func TestExtractSkipsDevicesWhenAsked(t *testing.T) {
	testgate.RequireRoot(t, "chowning files to the archive's owners needs root")
	s := newSandbox(t, t.TempDir())
	var warned []string
	res, err := s.extract(t, buildTar(t, special("dev/null", tar.TypeChar), special("dev/sda", tar.TypeBlock), file("ok", "")),
		Options{Devices: SkipDevices, Warn: func(m string) { warned = append(warned, m) }})
	if err != nil {
		t.Fatal(err)
	}
	if len(warned) != 2 || len(res.Warnings) != 2 || !strings.Contains(warned[0], `"dev/null"`) {
		t.Errorf("warnings %q, want two naming the skipped devices", warned)
	}
	if _, err := os.Lstat(filepath.Join(s.dest, "dev/null")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("dev/null exists (%v), want it skipped", err)
	}
}

func stat(t *testing.T, p string) syscall.Stat_t {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Lstat(p, &st); err != nil {
		t.Fatal(err)
	}
	return st
}

func TestExtractStopsWhenContextEnds(t *testing.T) {
	s := newSandbox(t, t.TempDir())
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	_, err := Extract(ctx, bytes.NewReader(buildTar(t, file("f", "x"))), s.dest, Options{})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Extract = %v, want context.Canceled", err)
	}
}

func TestNegativeMaxBytesAllowsOnlyEmptyFiles(t *testing.T) {
	testgate.RequireRoot(t, "chowning files to the archive's owners needs root")
	s := newSandbox(t, t.TempDir())
	if _, err := s.extract(t, buildTar(t, file("empty", ""), dir("d")), Options{MaxBytes: -1}); err != nil {
		t.Fatal(err)
	}
	_, err := s.extract(t, buildTar(t, file("one", "1")), Options{MaxBytes: -1})
	wantUnsafe(t, err, "one")
}
