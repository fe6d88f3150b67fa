package safetar

import (
	"archive/tar"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/polyvisor/polyvisor/internal/testgate"
)

// Each hostile archive below must be refused with an error naming the
// entry, and must leave everything beside dest untouched.

func refuse(t *testing.T, entry string, opts Options, entries ...ent) *sandbox {
	t.Helper()
	s := newSandbox(t, t.TempDir())
	_, err := s.extract(t, buildTar(t, entries...), opts)
	wantUnsafe(t, err, entry)
	s.checkOutside(t)
	return s
}

func TestRefuseDotDotName(t *testing.T) {
	s := refuse(t, "../evil", Options{Links: LinksInRoot}, file("../evil", "x"))
	if _, err := os.Lstat(filepath.Join(s.base, "evil")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("../evil was created beside dest (%v)", err)
	}
}

func TestRefuseAbsoluteName(t *testing.T) {
	refuse(t, "/abs", Options{Links: LinksInRoot}, file("/abs", "x"))
}

func TestRefuseDotDotInsideName(t *testing.T) {
	testgate.RequireRoot(t, "chowning files to the archive's owners needs root")
	refuse(t, "a/../../x", Options{Links: LinksInRoot}, dir("a"), file("a/../../x", "x"))
}

func TestRefuseDotDotEvenWhenItStaysInside(t *testing.T) {
	// "a/../b" would stay inside, but ".." in a name is never legitimate.
	refuse(t, "a/../b", Options{Links: LinksInRoot}, file("a/../b", "x"))
}

func TestRefuseNonDirectoryOverDest(t *testing.T) {
	refuse(t, ".", Options{Links: LinksInRoot}, file(".", ""))
}

func TestSymlinkToRootResolvesInsideDest(t *testing.T) {
	testgate.RequireRoot(t, "chowning files to the archive's owners needs root")
	// "a -> /" then "a/etc/passwd": the parent resolves as if dest were "/",
	// so the file lands in dest/etc/passwd, never the host's.
	s := newSandbox(t, t.TempDir())
	_, err := s.extract(t, buildTar(t, symlink("a", "/"), file("a/etc/passwd", "pwned")), Options{Links: LinksInRoot})
	if err != nil {
		t.Fatal(err)
	}
	s.checkOutside(t)
	if b, err := os.ReadFile(filepath.Join(s.dest, "etc/passwd")); err != nil || string(b) != "pwned" {
		t.Fatalf("dest/etc/passwd = %q, %v; want the entry to land inside dest", b, err)
	}
}

func TestSymlinkToOutsideAbsoluteResolvesInsideDest(t *testing.T) {
	testgate.RequireRoot(t, "chowning files to the archive's owners needs root")
	// An absolute symlink naming the real outside directory is kept (it
	// means a path in the guest). Writing through it resolves inside dest,
	// where that path does not exist, so the entry is refused.
	s := newSandbox(t, t.TempDir())
	_, err := s.extract(t, buildTar(t, symlink("a", s.outside), file("a/etc/passwd", "pwned")), Options{Links: LinksInRoot})
	wantUnsafe(t, err, "a/etc/passwd")
	s.checkOutside(t)
	if target, err := os.Readlink(filepath.Join(s.dest, "a")); err != nil || target != s.outside {
		t.Fatalf("a -> %q, %v; want the absolute target kept", target, err)
	}
}

func TestFileReplacesSymlinkInsteadOfWritingThroughIt(t *testing.T) {
	testgate.RequireRoot(t, "chowning files to the archive's owners needs root")
	s := newSandbox(t, t.TempDir())
	_, err := s.extract(t, buildTar(t,
		symlink("b", filepath.Join(s.outside, "etc/passwd")),
		file("b", "replaced"),
		symlink("c", s.outside),
		dir("c"),
	), Options{Links: LinksInRoot})
	if err != nil {
		t.Fatal(err)
	}
	s.checkOutside(t)
	if b, err := os.ReadFile(filepath.Join(s.dest, "b")); err != nil || string(b) != "replaced" {
		t.Fatalf("dest/b = %q, %v", b, err)
	}
}

func TestRefuseRelativeSymlinkLeadingOutside(t *testing.T) {
	refuse(t, "l", Options{Links: LinksInRoot}, symlink("l", "../../outside"))
}

func TestRefuseNestedSymlinkClimbingOut(t *testing.T) {
	testgate.RequireRoot(t, "chowning files to the archive's owners needs root")
	refuse(t, "a/b", Options{Links: LinksInRoot}, dir("a"), symlink("a/b", "../../../etc/shadow"))
}

func TestRefuseHardlinkDotDot(t *testing.T) {
	refuse(t, "h", Options{Links: LinksInRoot}, hardlink("h", "../../etc/passwd"))
}

func TestRefuseHardlinkAbsolute(t *testing.T) {
	s := newSandbox(t, t.TempDir())
	_, err := s.extract(t, buildTar(t, hardlink("h", filepath.Join(s.outside, "etc/passwd"))), Options{Links: LinksInRoot})
	wantUnsafe(t, err, "h")
	s.checkOutside(t)
}

func TestHardlinkThroughSymlinkCannotReachOutside(t *testing.T) {
	testgate.RequireRoot(t, "chowning files to the archive's owners needs root")
	// "a -> OUTSIDE" then a hardlink to "a/etc/passwd": the target resolves
	// inside dest, where it does not exist, so the link is refused and the
	// real file keeps its single link.
	s := newSandbox(t, t.TempDir())
	_, err := s.extract(t, buildTar(t, symlink("a", s.outside), hardlink("h", "a/etc/passwd")), Options{Links: LinksInRoot})
	wantUnsafe(t, err, "h")
	s.checkOutside(t)
}

func TestRefuseLinksWhenNoLinks(t *testing.T) {
	testgate.RequireRoot(t, "chowning files to the archive's owners needs root")
	refuse(t, "l", Options{}, file("f", "x"), symlink("l", "f"))
	refuse(t, "h", Options{}, file("f", "x"), hardlink("h", "f"))
}

func TestRefuseCharDevice(t *testing.T) {
	s := refuse(t, "dev/null", Options{Links: LinksInRoot}, special("dev/null", tar.TypeChar))
	if _, err := os.Lstat(filepath.Join(s.dest, "dev/null")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("dev/null exists (%v)", err)
	}
}

func TestRefuseFileOverMaxBytes(t *testing.T) {
	testgate.RequireRoot(t, "chowning files to the archive's owners needs root")
	s := newSandbox(t, t.TempDir())
	_, err := s.extract(t, buildTar(t, file("small", "12345"), file("big", strings.Repeat("x", 100))), Options{MaxBytes: 50})
	wantUnsafe(t, err, "big")
	s.checkOutside(t)
	if _, err := os.Lstat(filepath.Join(s.dest, "big")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("big was created (%v), want it refused before creation", err)
	}
}

func TestUnsafeErrorsWrapErrUnsafe(t *testing.T) {
	s := newSandbox(t, t.TempDir())
	_, err := s.extract(t, buildTar(t, file("../x", "")), Options{})
	if !errors.Is(err, ErrUnsafe) {
		t.Fatalf("error %v does not wrap ErrUnsafe", err)
	}
}
