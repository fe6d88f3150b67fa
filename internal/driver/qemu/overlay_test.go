package qemu

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/polyvisor/polyvisor/internal/diskimage"
	"github.com/polyvisor/polyvisor/internal/hostreq"
)

// TestCloneBaseCopiesWhatQemuImgMakes checks that a guest's root disk copied
// from the template's kept overlay is the very file qemu-img create makes,
// with the size qemu-img info reads, and that a kept overlay made for a
// base elsewhere is not used.
func TestCloneBaseCopiesWhatQemuImgMakes(t *testing.T) {
	hostreq.Need(t, "qemu-img")
	ctx := context.Background()
	tdir, gdir := t.TempDir(), t.TempDir()
	base := filepath.Join(tdir, "base.qcow2")
	if err := qemuImg(ctx, "create", "-q", "-f", "qcow2", base, "48M"); err != nil {
		t.Fatal(err)
	}
	d := New(Options{})
	var clones [][]byte
	for i, name := range []string{"first.qcow2", "second.qcow2"} {
		clone := filepath.Join(gdir, name)
		size, err := d.cloneBase(ctx, tdir, base, clone)
		if err != nil {
			t.Fatal(err)
		}
		info, err := diskimage.Inspect(ctx, clone, "qcow2")
		if err != nil {
			t.Fatal(err)
		}
		if size != 48<<20 || info.VirtualSize != size || info.BackingFilename != base {
			t.Errorf("clone %d: size %d, qemu-img info says %d backed by %q", i, size, info.VirtualSize, info.BackingFilename)
		}
		data, _ := os.ReadFile(clone)
		clones = append(clones, data)
		if _, err := os.Stat(filepath.Join(tdir, overlayProto)); err != nil {
			t.Fatalf("after clone %d: %v", i, err)
		}
	}
	byHand := filepath.Join(gdir, "by-hand.qcow2")
	if err := qemuImg(ctx, "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", base, byHand); err != nil {
		t.Fatal(err)
	}
	want, _ := os.ReadFile(byHand)
	for i, got := range clones {
		if !bytes.Equal(got, want) {
			t.Errorf("clone %d differs from qemu-img create's overlay", i)
		}
	}

	// The template moved: the kept overlay names the old base.
	moved := t.TempDir()
	newBase := filepath.Join(moved, "base.qcow2")
	if err := os.Rename(base, newBase); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(tdir, overlayProto), filepath.Join(moved, overlayProto)); err != nil {
		t.Fatal(err)
	}
	clone := filepath.Join(gdir, "after-move.qcow2")
	if _, err := d.cloneBase(ctx, moved, newBase, clone); err != nil {
		t.Fatal(err)
	}
	if info, err := diskimage.Inspect(ctx, clone, "qcow2"); err != nil || info.BackingFilename != newBase {
		t.Errorf("after the move the clone is backed by %q (%v), want %q", info.BackingFilename, err, newBase)
	}
}

func TestOverlayOfRefusesWhatIsNotAnOverlayOfTheBase(t *testing.T) {
	header := func(backing string, size uint64) []byte {
		h := make([]byte, 104+len(backing))
		copy(h, qcow2Magic)
		h[7] = 3
		h[15] = 104 // backing file name at 104
		h[19] = byte(len(backing))
		for i := range 8 {
			h[24+i] = byte(size >> (56 - 8*i))
		}
		copy(h[104:], backing)
		return h
	}
	if size, err := overlayOf(header("/t/base.qcow2", 1<<30), "/t/base.qcow2"); err != nil || size != 1<<30 {
		t.Errorf("a good header: %d, %v", size, err)
	}
	truncated := header("/t/base.qcow2", 1<<30)
	for name, data := range map[string][]byte{
		"empty":          nil,
		"not qcow2":      bytes.Repeat([]byte{0}, 512),
		"other base":     header("/elsewhere/base.qcow2", 1<<30),
		"no backing":     header("", 1<<30),
		"zero size":      header("/t/base.qcow2", 0),
		"truncated name": truncated[:110],
	} {
		if _, err := overlayOf(data, "/t/base.qcow2"); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
