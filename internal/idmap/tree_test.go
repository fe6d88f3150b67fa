package idmap

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/polyvisor/polyvisor/internal/testgate"
)

func requireRoot(t *testing.T) {
	t.Helper()
	testgate.RequireRoot(t, "changing file owners needs root")
}

// sampleFile is one file of the tree makeSampleTree builds.
type sampleFile struct {
	rel      string
	mode     os.FileMode // type and permission bits as os.Lstat reports them
	uid, gid uint32
}

// makeSampleTree builds a small tree with a setuid file, a setgid directory, a hardlink pair,
// a symlink, a fifo and a device node, owned by container ids, and returns what it made.
func makeSampleTree(t *testing.T) (string, []sampleFile) {
	t.Helper()
	requireRoot(t) // mknod and chown
	root := filepath.Join(t.TempDir(), "tree")
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.Mkdir(root, 0o755))
	must(os.Mkdir(filepath.Join(root, "bin"), 0o755))
	must(os.Mkdir(filepath.Join(root, "shared"), 0o2775))
	must(os.Mkdir(filepath.Join(root, "tmp"), 0o755))
	must(os.WriteFile(filepath.Join(root, "bin", "su"), []byte("setuid program"), 0o755))
	must(os.WriteFile(filepath.Join(root, "bin", "gzip"), []byte("linked twice"), 0o755))
	must(os.Link(filepath.Join(root, "bin", "gzip"), filepath.Join(root, "bin", "gunzip")))
	must(os.Symlink("su", filepath.Join(root, "bin", "link-to-su")))
	must(syscall.Mkfifo(filepath.Join(root, "fifo"), 0o640))
	must(syscall.Mknod(filepath.Join(root, "null"), syscall.S_IFCHR|0o666, 1<<8|3))
	// chmod after creating: the umask must not decide the modes under test.
	must(os.Chmod(filepath.Join(root, "tmp"), 0o777|os.ModeSticky))
	must(os.Chmod(filepath.Join(root, "null"), 0o666))
	must(os.Chmod(filepath.Join(root, "fifo"), 0o640))

	files := []sampleFile{
		{".", os.ModeDir | 0o755, 0, 0},
		{"bin", os.ModeDir | 0o755, 0, 0},
		{"bin/su", os.ModeSetuid | 0o755, 0, 0},
		{"bin/gzip", 0o755, 0, 0},
		{"bin/gunzip", 0o755, 0, 0},
		{"bin/link-to-su", os.ModeSymlink | 0o777, 0, 0},
		{"shared", os.ModeDir | os.ModeSetgid | 0o775, 100, 101},
		{"tmp", os.ModeDir | os.ModeSticky | 0o777, 0, 0},
		{"fifo", os.ModeNamedPipe | 0o640, 65534, 65534},
		{"null", os.ModeDevice | os.ModeCharDevice | 0o666, 0, 0},
	}
	for _, f := range files {
		must(os.Lchown(filepath.Join(root, f.rel), int(f.uid), int(f.gid)))
	}
	// Set setuid/setgid after the chowns, which would clear them, as in a real template.
	must(os.Chmod(filepath.Join(root, "bin", "su"), 0o755|os.ModeSetuid))
	must(os.Chmod(filepath.Join(root, "shared"), 0o775|os.ModeSetgid))
	return root, files
}

// checkTree asserts that every sample file under root has its mode and the owner want gives it.
func checkTree(t *testing.T, root string, files []sampleFile, want func(uid, gid uint32) (uint32, uint32)) {
	t.Helper()
	for _, f := range files {
		info, err := os.Lstat(filepath.Join(root, f.rel))
		if err != nil {
			t.Errorf("%s: %v", f.rel, err)
			continue
		}
		st := info.Sys().(*syscall.Stat_t)
		wantUID, wantGID := want(f.uid, f.gid)
		if st.Uid != wantUID || st.Gid != wantGID {
			t.Errorf("%s: owner %d:%d, want %d:%d", f.rel, st.Uid, st.Gid, wantUID, wantGID)
		}
		if info.Mode() != f.mode {
			t.Errorf("%s: mode %v, want %v", f.rel, info.Mode(), f.mode)
		}
	}
}

func shiftedUp(uid, gid uint32) (uint32, uint32) { return uid + HostBase, gid + HostBase }

func unshifted(uid, gid uint32) (uint32, uint32) { return uid, gid }

func TestShiftTreeShiftsOwnersAndKeepsModes(t *testing.T) {
	requireRoot(t)
	root, files := makeSampleTree(t)
	outside := filepath.Join(t.TempDir(), "outside")
	if err := os.WriteFile(outside, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(root, "link-out")); err != nil {
		t.Fatal(err)
	}
	if err := ShiftTree(context.Background(), root, ShiftUp(Default())); err != nil {
		t.Fatal(err)
	}
	checkTree(t, filepath.Dir(outside), []sampleFile{{"outside", 0o644, 0, 0}}, unshifted)
	// The hardlinked inode is shifted once: twice would push it out of the map or to 2*HostBase.
	checkTree(t, root, files, shiftedUp)

	if err := ShiftTree(context.Background(), root, ShiftDown(Default())); err != nil {
		t.Fatal(err)
	}
	checkTree(t, root, files, unshifted)
}

func TestShiftTreeNamesPathOutsideMap(t *testing.T) {
	requireRoot(t)
	root, _ := makeSampleTree(t)
	err := ShiftTree(context.Background(), root, ShiftDown(Default()))
	if err == nil {
		t.Fatal("shifting down a tree of unshifted ids succeeded")
	}
	t.Logf("error: %v", err)
}

func TestShiftTreeStopsWhenContextEnds(t *testing.T) {
	root, _ := makeSampleTree(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := ShiftTree(ctx, root, nil); !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
}

func TestCopyTreeCopiesEverythingShifted(t *testing.T) {
	requireRoot(t)
	src, files := makeSampleTree(t)
	mtime := time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC)
	if err := os.Chtimes(filepath.Join(src, "bin", "su"), mtime, mtime); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(filepath.Join(src, "bin"), mtime, mtime); err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(t.TempDir(), "copy")
	if err := CopyTree(context.Background(), src, dst, ShiftUp(Default())); err != nil {
		t.Fatal(err)
	}
	checkTree(t, dst, files, shiftedUp)
	checkTree(t, src, files, unshifted)

	if got, err := os.ReadFile(filepath.Join(dst, "bin", "su")); err != nil || string(got) != "setuid program" {
		t.Errorf("bin/su contents %q, %v", got, err)
	}
	if target, err := os.Readlink(filepath.Join(dst, "bin", "link-to-su")); err != nil || target != "su" {
		t.Errorf("symlink target %q, %v", target, err)
	}
	gzip, _ := os.Stat(filepath.Join(dst, "bin", "gzip"))
	gunzip, _ := os.Stat(filepath.Join(dst, "bin", "gunzip"))
	if !os.SameFile(gzip, gunzip) {
		t.Error("bin/gzip and bin/gunzip are no longer one inode")
	}
	if null, _ := os.Lstat(filepath.Join(dst, "null")); null.Sys().(*syscall.Stat_t).Rdev != 1<<8|3 {
		t.Errorf("null device number %#x, want 0x103", null.Sys().(*syscall.Stat_t).Rdev)
	}
	for _, rel := range []string{"bin/su", "bin"} {
		info, _ := os.Lstat(filepath.Join(dst, rel))
		if !info.ModTime().Equal(mtime) {
			t.Errorf("%s: mtime %v, want %v", rel, info.ModTime(), mtime)
		}
	}
}

func TestCopyTreeWithoutShiftKeepsOwners(t *testing.T) {
	requireRoot(t)
	src, files := makeSampleTree(t)
	dst := filepath.Join(t.TempDir(), "copy")
	if err := CopyTree(context.Background(), src, dst, nil); err != nil {
		t.Fatal(err)
	}
	checkTree(t, dst, files, unshifted)
}

func TestCopyTreeRefusesExistingDestination(t *testing.T) {
	src, _ := makeSampleTree(t)
	dst := t.TempDir()
	marker := filepath.Join(dst, "keep-me")
	if err := os.WriteFile(marker, []byte("mine"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := CopyTree(context.Background(), src, dst, nil); !errors.Is(err, os.ErrExist) {
		t.Fatalf("err = %v, want os.ErrExist", err)
	}
	entries, err := os.ReadDir(dst)
	if err != nil || len(entries) != 1 || entries[0].Name() != "keep-me" {
		t.Fatalf("existing destination was changed: %v, %v", entries, err)
	}
}

func TestCopyTreeFailureLeavesNoDestination(t *testing.T) {
	requireRoot(t)
	src, _ := makeSampleTree(t)
	dst := filepath.Join(t.TempDir(), "copy")
	failOnNobody := func(uid, gid uint32) (uint32, uint32, error) {
		if uid == 65534 {
			return 0, 0, errors.New("refusing nobody")
		}
		return uid, gid, nil
	}
	err := CopyTree(context.Background(), src, dst, failOnNobody)
	if err == nil {
		t.Fatal("CopyTree succeeded although shift failed")
	}
	t.Logf("error: %v", err)
	if _, statErr := os.Lstat(dst); !errors.Is(statErr, os.ErrNotExist) {
		t.Fatalf("destination left behind after failure: %v", statErr)
	}
}

func TestTreesStayOnOneFilesystem(t *testing.T) {
	root, _ := makeSampleTree(t)
	mnt := filepath.Join(root, "mnt")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount("tmpfs", mnt, "tmpfs", 0, "mode=0755"); err != nil {
		t.Skipf("skipping: cannot mount a tmpfs here: %v", err)
	}
	t.Cleanup(func() { syscall.Unmount(mnt, syscall.MNT_DETACH) })
	if err := os.WriteFile(filepath.Join(mnt, "other-fs"), nil, 0o644); err != nil {
		t.Fatal(err)
	}

	if err := ShiftTree(context.Background(), root, ShiftUp(Default())); err != nil {
		t.Fatal(err)
	}
	checkTree(t, mnt, []sampleFile{{".", os.ModeDir | 0o755, 0, 0}, {"other-fs", 0o644, 0, 0}}, unshifted)

	dst := filepath.Join(t.TempDir(), "copy")
	if err := CopyTree(context.Background(), root, dst, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(filepath.Join(dst, "mnt")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("CopyTree copied the mount point: %v", err)
	}
}
