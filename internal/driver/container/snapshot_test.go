package container

import (
	"context"
	"crypto/sha256"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/polyvisor/polyvisor/internal/guest"
	"github.com/polyvisor/polyvisor/internal/layout"
	"github.com/polyvisor/polyvisor/internal/procutil"
	"github.com/polyvisor/polyvisor/internal/testgate"
	"github.com/polyvisor/polyvisor/pkg/api"
)

// snapshotHost is a state dir with a template tree and one stopped
// overlay guest whose upper dir holds what overlayfs itself writes: a
// whiteout, an opaque directory, files of the guest's ids.
func snapshotHost(t *testing.T) (*Driver, *guest.Definition) {
	t.Helper()
	testgate.RequireRoot(t, "whiteouts (mknod) and trusted.* xattrs need root")
	l := layout.New(t.TempDir())
	lower := filepath.Join(l.TemplatesDir(), "tmpl", "rootfs")
	mustWrite(t, filepath.Join(lower, "etc", "machine-id"), "0123456789abcdef0123456789abcdef\n")
	mustWrite(t, filepath.Join(lower, "etc", "motd"), "template\n")
	def := &guest.Definition{Name: "g", Template: "tmpl", Rootfs: guest.RootfsOverlay, Status: guest.Status{State: api.StateStopped}}
	d := New(Options{Layout: l})
	if err := os.MkdirAll(l.GuestDir(def.Name), 0o711); err != nil {
		t.Fatal(err)
	}
	if err := d.Create(context.Background(), l.GuestDir(def.Name), def); err != nil {
		t.Fatal(err)
	}
	upper := filepath.Join(l.GuestDir(def.Name), upperDir)
	mustWrite(t, filepath.Join(upper, "root", "kept"), "kept\n")
	must(t, os.Lchown(filepath.Join(upper, "root", "kept"), 100000, 100000))
	must(t, os.Chtimes(filepath.Join(upper, "root", "kept"), time.Unix(1e9, 0), time.Unix(1e9, 0)))
	must(t, os.Link(filepath.Join(upper, "root", "kept"), filepath.Join(upper, "root", "link")))
	must(t, unix.Mknod(filepath.Join(upper, "etc-motd-whiteout"), unix.S_IFCHR, 0))
	must(t, os.Mkdir(filepath.Join(upper, "opaque"), 0o750))
	must(t, unix.Lsetxattr(filepath.Join(upper, "opaque"), "trusted.overlay.opaque", []byte("y"), 0))
	must(t, os.Symlink("/root/kept", filepath.Join(upper, "root", "sym")))
	f, err := os.Create(filepath.Join(upper, "sparse"))
	must(t, err)
	must(t, f.Truncate(16<<20))
	f.Close()
	return d, def
}

func TestContainerSnapshotRestoresTheTreeExactly(t *testing.T) {
	d, def := snapshotHost(t)
	ctx := context.Background()
	upper := filepath.Join(d.guestDir(def), upperDir)
	before := describeTree(t, upper)
	snap := filepath.Join(d.guestDir(def), "snapshots", "s1")
	must(t, os.MkdirAll(snap, 0o700))
	info, err := d.CreateSnapshot(ctx, def, "s1", snap)
	if err != nil {
		t.Fatal(err)
	}
	if info.Kind != kindOverlayUpper || info.Size <= 0 || info.Size > 1<<20 {
		t.Errorf("snapshot info %+v: want overlay-upper and a size that counts blocks, not the sparse file's length", info)
	}
	if got := describeTree(t, filepath.Join(snap, snapshotUpper)); !equalTrees(before, got) {
		t.Fatalf("the snapshot differs from the upper dir:\n%s", diffTrees(before, got))
	}
	// The guest changes its tree, and overlayfs leaves its work dir dirty.
	must(t, os.Remove(filepath.Join(upper, "etc-motd-whiteout")))
	must(t, unix.Lremovexattr(filepath.Join(upper, "opaque"), "trusted.overlay.opaque"))
	mustWrite(t, filepath.Join(upper, "root", "kept"), "changed\n")
	mustWrite(t, filepath.Join(upper, "root", "new"), "new\n")
	mustWrite(t, filepath.Join(d.guestDir(def), workDir, "work", "leftover"), "x")
	if err := d.RestoreSnapshot(ctx, def, "s1", snap); err != nil {
		t.Fatal(err)
	}
	if got := describeTree(t, upper); !equalTrees(before, got) {
		t.Errorf("the restored upper dir differs:\n%s", diffTrees(before, got))
	}
	if entries, err := os.ReadDir(filepath.Join(d.guestDir(def), workDir)); err != nil || len(entries) > 0 {
		t.Errorf("the overlay's work dir after restore: %v %v", entries, err)
	}
	if entries, _ := os.ReadDir(filepath.Join(d.guestDir(def), "disks")); len(entries) != 2 {
		t.Errorf("restore left something beside upper and work: %v", entries)
	}
	// The snapshot itself is untouched by the restore, and can be restored again.
	if got := describeTree(t, filepath.Join(snap, snapshotUpper)); !equalTrees(before, got) {
		t.Errorf("restoring changed the snapshot:\n%s", diffTrees(before, got))
	}
}

func TestContainerCopyHasItsOwnMachineID(t *testing.T) {
	d, def := snapshotHost(t)
	ctx := context.Background()
	dst := filepath.Join(d.opts.Layout.GuestsDir(), ".creating-copy")
	must(t, os.Mkdir(dst, 0o711))
	next := def.Clone()
	next.Name = "copy"
	if err := d.Copy(ctx, def, dst, next); err != nil {
		t.Fatal(err)
	}
	if len(next.Disks) != 1 || next.Disks[0].Path != upperDir || next.Disks[0].Kind != kindOverlayUpper {
		t.Errorf("copy's disks: %+v", next.Disks)
	}
	src := describeTree(t, filepath.Join(d.guestDir(def), upperDir))
	got := describeTree(t, filepath.Join(dst, upperDir))
	delete(got, "etc")
	delete(got, "etc/machine-id")
	if !equalTrees(src, got) {
		t.Errorf("the copy differs from its source:\n%s", diffTrees(src, got))
	}
	// The template's machine id is hidden by an empty one in the copy's upper dir.
	var st unix.Stat_t
	must(t, unix.Lstat(filepath.Join(dst, upperDir, machineID), &st))
	if st.Size != 0 || st.Mode&unix.S_IFMT != unix.S_IFREG {
		t.Errorf("the copy's /etc/machine-id: size %d mode %o, want an empty file", st.Size, st.Mode)
	}
	if _, err := os.Stat(filepath.Join(dst, workDir)); err != nil {
		t.Errorf("the copy has no overlay work dir: %v", err)
	}
	// A guest that wrote its own id gets it emptied in the copy.
	mustWrite(t, filepath.Join(d.guestDir(def), upperDir, machineID), "fedcba9876543210fedcba9876543210\n")
	dst2 := filepath.Join(d.opts.Layout.GuestsDir(), ".creating-copy2")
	must(t, os.Mkdir(dst2, 0o711))
	if err := d.Copy(ctx, def, dst2, def.Clone()); err != nil {
		t.Fatal(err)
	}
	if data, err := os.ReadFile(filepath.Join(dst2, upperDir, machineID)); err != nil || len(data) != 0 {
		t.Errorf("the copy's own machine id: %q %v", data, err)
	}
	if data, _ := os.ReadFile(filepath.Join(d.guestDir(def), upperDir, machineID)); len(data) == 0 {
		t.Error("copying emptied the source's machine id")
	}
}

func TestRestoreRefusesARunningContainer(t *testing.T) {
	d, def := snapshotHost(t)
	self, err := procutil.Identify(os.Getpid())
	must(t, err)
	running := def.Clone()
	running.Status = guest.Status{State: api.StateRunning, InitPID: self.PID, InitStart: self.Start}
	err = d.RestoreSnapshot(context.Background(), running, "s1", t.TempDir())
	if err == nil || !strings.Contains(err.Error(), "stop it first") {
		t.Errorf("restore of a running guest: %v", err)
	}
}

// describeTree maps each path under root to what must survive a copy:
// type, mode, owner, device, size, mtime, content, xattrs, link target
// and which paths share an inode.
func describeTree(t *testing.T, root string) map[string]string {
	t.Helper()
	out := map[string]string{}
	inodes := map[uint64]string{}
	err := filepath.Walk(root, func(path string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		var st unix.Stat_t
		if err := unix.Lstat(path, &st); err != nil {
			return err
		}
		desc := fmt.Sprintf("mode=%o uid=%d gid=%d rdev=%d", st.Mode, st.Uid, st.Gid, st.Rdev)
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFREG:
			data, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			desc += fmt.Sprintf(" size=%d mtime=%d sha256=%x", st.Size, st.Mtim.Nano(), sha256.Sum256(data))
			if st.Nlink > 1 {
				if first, ok := inodes[st.Ino]; ok {
					desc += " link-of=" + first
				} else {
					inodes[st.Ino] = rel
				}
			}
		case unix.S_IFLNK:
			target, _ := os.Readlink(path)
			desc += " -> " + target
		case unix.S_IFDIR:
			if rel != "." {
				desc += fmt.Sprintf(" mtime=%d", st.Mtim.Nano())
			}
		}
		desc += " xattrs=" + xattrs(path)
		out[rel] = desc
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func xattrs(path string) string {
	buf := make([]byte, 4096)
	n, err := unix.Llistxattr(path, buf)
	if err != nil || n == 0 {
		return ""
	}
	names := strings.Split(strings.TrimRight(string(buf[:n]), "\x00"), "\x00")
	sort.Strings(names)
	var parts []string
	for _, name := range names {
		val := make([]byte, 256)
		m, _ := unix.Lgetxattr(path, name, val)
		parts = append(parts, fmt.Sprintf("%s=%q", name, val[:max(m, 0)]))
	}
	return strings.Join(parts, ",")
}

func equalTrees(a, b map[string]string) bool { return diffTrees(a, b) == "" }

func diffTrees(want, got map[string]string) string {
	var lines []string
	for k, w := range want {
		if g, ok := got[k]; !ok {
			lines = append(lines, "missing "+k+": "+w)
		} else if g != w {
			lines = append(lines, "changed "+k+": "+w+" -> "+g)
		}
	}
	for k, g := range got {
		if _, ok := want[k]; !ok {
			lines = append(lines, "extra "+k+": "+g)
		}
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

func mustWrite(t *testing.T, path, content string) {
	t.Helper()
	must(t, os.MkdirAll(filepath.Dir(path), 0o755))
	must(t, os.WriteFile(path, []byte(content), 0o644))
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
