package fsutil

import (
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/polyvisor/polyvisor/internal/testgate"
	"golang.org/x/sys/unix"
)

func TestUnescapeMount(t *testing.T) {
	for in, want := range map[string]string{
		`/plain`:            "/plain",
		`/with\040space`:    "/with space",
		`/tab\011and\134bs`: "/tab\tand\\bs",
		`/x\134y`:           `/x\y`,
		`/short\04`:         `/short\04`,
	} {
		if got := unescapeMount(in); got != want {
			t.Errorf("unescapeMount(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestMountPointsListsTheRoot(t *testing.T) {
	points, err := MountPoints()
	if err != nil || !slices.Contains(points, "/") {
		t.Fatalf("MountPoints = %q, %v; want / among them", points, err)
	}
	under, err := MountsUnder("/proc")
	if err != nil || !slices.Contains(under, "/proc") || slices.Contains(under, "/") {
		t.Errorf("MountsUnder(/proc) = %q, %v", under, err)
	}
}

// TestUnmountUnderDetachesNestedMounts: mounts stacked under a dir (a file
// system inside a file system) all go, the deepest first, and the dir can
// then be removed without reaching into them; a file in a mount stays.
func TestUnmountUnderDetachesNestedMounts(t *testing.T) {
	testgate.RequireRoot(t, "mounting needs root (make test runs as root)")
	dir := t.TempDir()
	outer, inner := filepath.Join(dir, "outer"), filepath.Join(dir, "outer", "inner")
	if err := os.Mkdir(outer, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("tmpfs", outer, "tmpfs", 0, "size=1m"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Unmount(inner, unix.MNT_DETACH); unix.Unmount(outer, unix.MNT_DETACH) })
	if err := os.Mkdir(inner, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("tmpfs", inner, "tmpfs", 0, "size=1m"); err != nil {
		t.Fatal(err)
	}
	if err := UnmountUnder(dir); err != nil {
		t.Fatal(err)
	}
	if left, err := MountsUnder(dir); err != nil || len(left) != 0 {
		t.Fatalf("mounts left under %s: %v, %v", dir, left, err)
	}
	if err := os.RemoveAll(outer); err != nil {
		t.Errorf("remove after unmounting: %v", err)
	}
}
