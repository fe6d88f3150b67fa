package container

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/polyvisor/polyvisor/internal/fsutil"
	"github.com/polyvisor/polyvisor/internal/idmap"
	"github.com/polyvisor/polyvisor/internal/layout"
	"github.com/polyvisor/polyvisor/internal/testgate"
)

// TestSweepUnmountsOrphanedIDMappedTemplates: after a crash, the idmapped
// template mount of a guest that is gone, and the temporary one of an
// interrupted export of a live guest, are unmounted; a live guest's own
// mount stays.
func TestSweepUnmountsOrphanedIDMappedTemplates(t *testing.T) {
	testgate.RequireRoot(t, "idmapped mounts need root")
	l := layout.New(t.TempDir())
	d := New(Options{Layout: l})
	tmpl := t.TempDir()
	m := idmap.Map{HostBase: idmap.IsolatedPool().First, Size: idmap.Size}
	mount := func(rel string) string {
		t.Helper()
		target := filepath.Join(l.GuestsDir(), rel)
		if err := os.MkdirAll(target, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := idmap.MountMapped(context.Background(), tmpl, target, idmap.Default(), m); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { fsutil.Unmount(target) })
		return target
	}
	gone := mount("gone/" + lowerMount)
	export := mount("live/.template-123")
	kept := mount("live/" + lowerMount)
	if err := d.Sweep(context.Background(), map[string]bool{"live": true}); err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]bool{gone: false, export: false, kept: true} {
		if mounted, err := fsutil.IsMountPoint(path); err != nil || mounted != want {
			t.Errorf("%s mounted: %v (%v), want %v", path, mounted, err, want)
		}
	}
}
