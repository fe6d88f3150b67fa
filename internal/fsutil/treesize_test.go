package fsutil

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/polyvisor/polyvisor/internal/testgate"
)

// writeFile writes size bytes of non-zero data (so that every block is
// allocated) to path.
func writeFile(t *testing.T, path string, size int) {
	t.Helper()
	data := make([]byte, size)
	for i := range data {
		data[i] = 'x'
	}
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

// allocated is what path's own inode takes on disk.
func allocated(t *testing.T, path string) int64 {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Lstat(path, &st); err != nil {
		t.Fatal(err)
	}
	return st.Blocks * 512
}

// TestTreeSizeHostileTree: a symlink to a big file and one to a directory
// outside the tree cost only themselves, and a file with two hard links
// in the tree is counted once, in both modes.
func TestTreeSizeHostileTree(t *testing.T) {
	outside := t.TempDir()
	writeFile(t, filepath.Join(outside, "big"), 1<<20)
	root := t.TempDir()
	writeFile(t, filepath.Join(root, "file"), 10000)
	if err := os.Link(filepath.Join(root, "file"), filepath.Join(root, "link")); err != nil {
		t.Fatal(err)
	}
	for name, target := range map[string]string{"tobig": filepath.Join(outside, "big"), "todir": outside, "loop": "."} {
		if err := os.Symlink(target, filepath.Join(root, name)); err != nil {
			t.Fatal(err)
		}
	}
	ctx := context.Background()

	got, err := TreeSize(ctx, root, Allocated)
	if err != nil {
		t.Fatal(err)
	}
	want := allocated(t, root) + allocated(t, filepath.Join(root, "file"))
	for _, l := range []string{"tobig", "todir", "loop"} {
		want += allocated(t, filepath.Join(root, l))
	}
	if got != want {
		t.Errorf("Allocated = %d, want %d (the dir, one copy of the hard-linked file, the links themselves)", got, want)
	}

	got, err = TreeSize(ctx, root, ImageBlocks)
	if err != nil {
		t.Fatal(err)
	}
	info, err := os.Lstat(root)
	if err != nil {
		t.Fatal(err)
	}
	dir := (info.Size()+4095)/4096*4096 + 4096
	file := int64(12288)         // 10000 bytes in 4 KiB blocks, once
	links := int64(3 * 2 * 4096) // each symlink: its short target rounds to one block, plus one of its own
	if want := dir + file + links; got != want {
		t.Errorf("ImageBlocks = %d, want %d", got, want)
	}
}

// TestTreeSizeSparseFile: Allocated counts what the host really holds for
// a sparse file, ImageBlocks its whole length.
func TestTreeSizeSparseFile(t *testing.T) {
	root := t.TempDir()
	f, err := os.Create(filepath.Join(root, "sparse"))
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(64 << 20); err != nil {
		t.Fatal(err)
	}
	f.Close()
	ctx := context.Background()
	alloc, err := TreeSize(ctx, root, Allocated)
	if err != nil {
		t.Fatal(err)
	}
	image, err := TreeSize(ctx, root, ImageBlocks)
	if err != nil {
		t.Fatal(err)
	}
	if alloc >= 1<<20 || image < 64<<20 {
		t.Errorf("sparse 64 MiB file: Allocated %d (want under 1 MiB), ImageBlocks %d (want at least 64 MiB)", alloc, image)
	}
}

// TestTreeSizeLeavesMountsOut: a file system mounted inside the tree (a
// guest's or a failed build's /proc) is not measured.
func TestTreeSizeLeavesMountsOut(t *testing.T) {
	testgate.RequireRoot(t, "mounting a tmpfs needs root")
	root := t.TempDir()
	mnt := filepath.Join(root, "mnt")
	if err := os.Mkdir(mnt, 0o700); err != nil {
		t.Fatal(err)
	}
	before, err := TreeSize(context.Background(), root, Allocated)
	if err != nil {
		t.Fatal(err)
	}
	before -= allocated(t, mnt) // the mount point's own dir is then the mount's root
	if err := unix.Mount("tmpfs", mnt, "tmpfs", 0, "size=8m"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Unmount(mnt, unix.MNT_DETACH) })
	writeFile(t, filepath.Join(mnt, "inside"), 4<<20)
	after, err := TreeSize(context.Background(), root, Allocated)
	if err != nil {
		t.Fatal(err)
	}
	if after != before {
		t.Errorf("TreeSize with a 4 MiB file in a mount inside = %d, want %d: the mount was measured", after, before)
	}
}

// TestTreeSizeMissingRoot fails with the root named.
func TestTreeSizeMissingRoot(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "gone")
	if _, err := TreeSize(context.Background(), missing, Allocated); err == nil {
		t.Fatalf("TreeSize(%s) succeeded", missing)
	}
}
