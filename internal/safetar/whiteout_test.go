package safetar

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/polyvisor/polyvisor/internal/testgate"
)

func TestWhiteoutsAcrossLayers(t *testing.T) {
	testgate.RequireRoot(t, "chowning files to the archive's owners needs root")
	s := newSandbox(t, t.TempDir())
	opts := Options{Links: LinksInRoot, Whiteouts: true}
	lower := buildTar(t,
		file("a/x", "x"), file("a/y", "y"),
		file("d/keep", "k"), file("d/drop", "d"), file("d/sub/deep", "s"),
		file("o/old", "o"),
		symlink("esc", s.outside),
	)
	upper := buildTar(t,
		file("a/.wh.x", ""),
		file("o/new-before-marker", "n"), // this layer's own entry survives the marker
		file("o/.wh..wh..opq", ""),
		dir("d"),
		file("d/.wh..wh..opq", ""),
		file("d/new", "n"),
		file("d/sub/fresh", "f"), // recreated sub: lower d/sub/deep stays hidden
		file(".wh.esc", ""),
		file("esc2/.wh.passwd", ""), // whiteout under a missing directory: nothing to do
	)
	for i, layer := range [][]byte{lower, upper} {
		if _, err := s.extract(t, layer, opts); err != nil {
			t.Fatalf("layer %d: %v", i, err)
		}
	}
	s.checkOutside(t)
	for p, want := range map[string]bool{
		"a/x": false, "a/y": true,
		"d/keep": false, "d/drop": false, "d/new": true, "d/sub/deep": false, "d/sub/fresh": true,
		"o/old": false, "o/new-before-marker": true,
		"esc": false, "a/.wh.x": false, "d/.wh..wh..opq": false,
	} {
		_, err := os.Lstat(filepath.Join(s.dest, p))
		if got := err == nil; got != want {
			t.Errorf("%s exists = %v, want %v", p, got, want)
		}
	}
}

func TestWhiteoutThroughSymlinkStaysInside(t *testing.T) {
	testgate.RequireRoot(t, "chowning files to the archive's owners needs root")
	// A lower layer plants "l -> OUTSIDE/etc"; an upper whiteout "l/.wh.passwd"
	// resolves l inside dest and must not remove the real file.
	s := newSandbox(t, t.TempDir())
	opts := Options{Links: LinksInRoot, Whiteouts: true}
	for _, layer := range [][]byte{
		buildTar(t, symlink("l", filepath.Join(s.outside, "etc"))),
		buildTar(t, file("l/.wh.passwd", "")),
	} {
		if _, err := s.extract(t, layer, opts); err != nil {
			t.Fatal(err)
		}
	}
	s.checkOutside(t)
}

func TestWhiteoutNamesAreFilesWithoutWhiteouts(t *testing.T) {
	testgate.RequireRoot(t, "chowning files to the archive's owners needs root")
	s := newSandbox(t, t.TempDir())
	if _, err := s.extract(t, buildTar(t, file("x", "x"), file(".wh.x", "")), Options{}); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"x", ".wh.x"} {
		if _, err := os.Lstat(filepath.Join(s.dest, p)); err != nil {
			t.Errorf("%s: %v", p, err)
		}
	}
}

func TestRefuseWhiteoutOfParent(t *testing.T) {
	refuse(t, "a/.wh..", Options{Whiteouts: true}, file("a/.wh..", ""))
}
