package loopfs

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/polyvisor/polyvisor/internal/growfs"
)

// TestCloneCopiesDataAndKeepsHoles: a clone of a blank image reads the
// same byte for byte, takes no more disk blocks than the image (its holes
// stay holes), mounts, and never overwrites an existing file.
func TestCloneCopiesDataAndKeepsHoles(t *testing.T) {
	requireRoot(t)
	ctx := context.Background()
	dir := t.TempDir()
	seed := filepath.Join(dir, "seed")
	if err := os.MkdirAll(filepath.Join(seed, "work"), 0o711); err != nil {
		t.Fatal(err)
	}
	src, dst := filepath.Join(dir, "blank.img"), filepath.Join(dir, "clone.img")
	if err := Make(ctx, src, 64<<20, seed); err != nil {
		t.Fatal(err)
	}
	if err := Clone(src, dst); err != nil {
		t.Fatal(err)
	}
	a, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(dst)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a, b) {
		t.Fatalf("the clone differs from the image (%d and %d bytes)", len(a), len(b))
	}
	var srcSt, dstSt unix.Stat_t
	if err := unix.Stat(src, &srcSt); err != nil {
		t.Fatal(err)
	}
	if err := unix.Stat(dst, &dstSt); err != nil {
		t.Fatal(err)
	}
	if dstSt.Blocks > srcSt.Blocks || dstSt.Blocks*512 >= dstSt.Size/2 {
		t.Fatalf("the clone takes %d blocks of 512 bytes for %d bytes (the image %d): its holes were filled", dstSt.Blocks, dstSt.Size, srcSt.Blocks)
	}
	target := filepath.Join(dir, "mnt")
	if err := os.Mkdir(target, 0o711); err != nil {
		t.Fatal(err)
	}
	if err := Mount(ctx, dst, target); err != nil {
		t.Fatal(err)
	}
	_, werr := os.Stat(filepath.Join(target, "work"))
	if err := unix.Unmount(target, 0); err != nil {
		t.Fatal(err)
	}
	if werr != nil {
		t.Fatalf("the clone's file system lacks the seed's work dir: %v", werr)
	}
	if err := Clone(src, dst); !errors.Is(err, os.ErrExist) {
		t.Fatalf("a clone onto an existing file: got %v, want an error wrapping os.ErrExist", err)
	}
	if _, err := os.Stat(dst); err != nil {
		t.Fatalf("a refused clone removed the file that was there: %v", err)
	}
	if err := Clone(filepath.Join(dir, "missing.img"), filepath.Join(dir, "other.img")); err == nil {
		t.Fatal("a clone of a missing image succeeded")
	}
	if _, err := os.Stat(filepath.Join(dir, "other.img")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a failed clone left its target: %v", err)
	}
}

// TestFitWaitsForTheImagesRelease: while a loop device still holds an
// image (its file system lazily unmounted but live), the offline resize
// waits instead of running e2fsck on it, and goes on once it is released.
func TestFitWaitsForTheImagesRelease(t *testing.T) {
	requireRoot(t)
	dir := t.TempDir()
	image := filepath.Join(dir, "layer.img")
	if err := Make(context.Background(), image, 32<<20, ""); err != nil {
		t.Fatal(err)
	}
	if err := Grow(image, 48<<20); err != nil {
		t.Fatal(err)
	}
	dev, err := attach(image)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	err = Fit(ctx, image)
	cancel()
	dev.Close() // autoclear: the device goes with its last user
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Fit of a held image: got %v, want it to wait until its context ended", err)
	}
	if err := Fit(context.Background(), image); err != nil {
		t.Fatalf("Fit once released: %v", err)
	}
	f, err := os.Open(image)
	if err != nil {
		t.Fatal(err)
	}
	sb, err := growfs.ReadSuperblock(f)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	if sb.Bytes() < 48<<20 {
		t.Errorf("file system of %d bytes after Fit, want it grown to the 48 MiB image", sb.Bytes())
	}
}
