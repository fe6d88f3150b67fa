package container

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/polyvisor/polyvisor/internal/guest"
	"github.com/polyvisor/polyvisor/internal/idmap"
	"github.com/polyvisor/polyvisor/internal/layout"
	"github.com/polyvisor/polyvisor/internal/testgate"
)

// blankHost is a state dir with a template root owned, as templates are,
// by the shared id map's root, mode 0755.
func blankHost(t *testing.T) (*Driver, layout.Layout) {
	t.Helper()
	testgate.RequireRoot(t, "loop devices and mounts need root")
	if _, err := os.Stat("/dev/loop-control"); err != nil {
		t.Skipf("no loop devices on this host: %v", err)
	}
	l := layout.New(filepath.Join(t.TempDir(), "state"))
	rootfs := filepath.Join(l.TemplatesDir(), "busybox", "rootfs")
	if err := os.MkdirAll(rootfs, 0o755); err != nil {
		t.Fatal(err)
	}
	base := int(idmap.Default().HostBase)
	if err := os.Chown(rootfs, base, base); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(l.GuestsDir(), 0o711); err != nil {
		t.Fatal(err)
	}
	return New(Options{Layout: l, Log: slog.New(slog.NewTextHandler(io.Discard, nil))}), l
}

func quotaGuest(name string, security guest.Security) *guest.Definition {
	return &guest.Definition{
		SchemaVersion: guest.SchemaVersion, Name: name, Type: guest.TypeContainer, Class: Class,
		Template: "busybox", Rootfs: guest.RootfsOverlay, Security: security,
		Disks: []guest.Disk{{Name: "root", Size: guest.DefaultDiskQuota}},
	}
}

func ownerOf(t *testing.T, path string) (uid, gid uint32, mode uint32) {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Lstat(path, &st); err != nil {
		t.Fatal(err)
	}
	return st.Uid, st.Gid, st.Mode & 0o7777
}

// TestQuotaImagesAreClonesOfOneBlankImage: guests with the default quota
// get clones of one blank image, made by the first create; mounting a
// clone gives its upper dir the guest's root (shared map or isolated),
// once: what the guest later does to its root's owner stays.
func TestQuotaImagesAreClonesOfOneBlankImage(t *testing.T) {
	d, l := blankHost(t)
	ctx := context.Background()
	isolated := idmap.IsolatedPool().First + 3*idmap.Size
	guests := []*guest.Definition{
		quotaGuest("shared", guest.Security{}),
		quotaGuest("isolated", guest.Security{IDMap: idmap.Isolated, IDMapBase: isolated}),
	}
	var blankIno uint64
	for _, def := range guests {
		dir := l.GuestDir(def.Name)
		if err := os.MkdirAll(dir, 0o711); err != nil {
			t.Fatal(err)
		}
		if err := d.Create(ctx, dir, def); err != nil {
			t.Fatalf("create %s: %v", def.Name, err)
		}
		var st unix.Stat_t
		if err := unix.Stat(d.blankLayer(guest.DefaultDiskQuota), &st); err != nil {
			t.Fatalf("no blank image after creating %s: %v", def.Name, err)
		}
		if blankIno == 0 {
			blankIno = st.Ino
		} else if st.Ino != blankIno {
			t.Errorf("creating %s made the blank image again", def.Name)
		}
		if disk, _ := def.Disk("root"); disk.Kind != guest.DiskOverlayImage || disk.Path != layerImage {
			t.Errorf("%s: root disk %+v, want a %s at %s", def.Name, disk, guest.DiskOverlayImage, layerImage)
		}
	}
	leftovers, _ := filepath.Glob(filepath.Join(l.StateDir, blankLayerDir, ".*"))
	if len(leftovers) > 0 {
		t.Errorf("making the blank image left %v", leftovers)
	}
	for _, def := range guests {
		m, _ := def.IDMap()
		upper := filepath.Join(l.GuestDir(def.Name), layerMount, "upper")
		if err := d.mountLayer(ctx, def); err != nil {
			t.Fatalf("mount %s: %v", def.Name, err)
		}
		uid, gid, mode := ownerOf(t, upper)
		if uid != m.HostBase || gid != m.HostBase || mode != 0o755 {
			t.Errorf("%s: upper dir %d:%d mode %o, want the guest's root %d:%d mode 755", def.Name, uid, gid, mode, m.HostBase, m.HostBase)
		}
		// The guest gives its root to one of its users; a restart keeps it.
		if err := os.Chown(upper, int(m.HostBase)+1000, int(m.HostBase)+1000); err != nil {
			t.Fatal(err)
		}
		if err := d.unmountLayer(def); err != nil {
			t.Fatal(err)
		}
		if err := d.mountLayer(ctx, def); err != nil {
			t.Fatalf("mount %s again: %v", def.Name, err)
		}
		uid, _, _ = ownerOf(t, upper)
		if err := d.unmountLayer(def); err != nil {
			t.Fatal(err)
		}
		if uid != m.HostBase+1000 {
			t.Errorf("%s: the second mount gave the upper dir to %d, the guest had given it to %d", def.Name, uid, m.HostBase+1000)
		}
	}
}

// TestAFailedBlankImageLeavesNothing: when the blank image cannot be made
// the create fails saying so, and leaves no image in the guest's dir.
func TestAFailedBlankImageLeavesNothing(t *testing.T) {
	d, l := blankHost(t)
	// A file where the cache directory goes.
	if err := os.WriteFile(filepath.Join(l.StateDir, "cache"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	def := quotaGuest("web", guest.Security{})
	dir := l.GuestDir(def.Name)
	if err := os.MkdirAll(dir, 0o711); err != nil {
		t.Fatal(err)
	}
	err := d.Create(context.Background(), dir, def)
	if err == nil || !strings.Contains(err.Error(), "create disk quota") {
		t.Fatalf("create without a cache dir: got %v, want an error about the disk quota", err)
	}
	if _, serr := os.Stat(filepath.Join(dir, layerImage)); !errors.Is(serr, fs.ErrNotExist) {
		t.Errorf("the failed create left %s: %v", layerImage, serr)
	}
}
