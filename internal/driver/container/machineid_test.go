package container

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/polyvisor/polyvisor/internal/idmap"
)

// hostID is the content of a host file a hostile guest points its tree at.
const hostID = "host-machine-id-0123456789abcdef\n"

// hostDir is a directory outside every guest tree holding a non-empty
// machine-id, as a host's /etc does.
func hostDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	mustWrite(t, filepath.Join(dir, "machine-id"), hostID)
	return dir
}

// templateTree is a lower (template) tree with a machine id of its own.
func templateTree(t *testing.T) string {
	t.Helper()
	lower := t.TempDir()
	mustWrite(t, filepath.Join(lower, machineID), "0123456789abcdef0123456789abcdef\n")
	must(t, os.Chmod(filepath.Join(lower, machineID), 0o444))
	return lower
}

// assertHostIntact fails unless the host dir still holds exactly the
// machine-id hostDir put there, with its content and size.
func assertHostIntact(t *testing.T, dir string) {
	t.Helper()
	path := filepath.Join(dir, "machine-id")
	data, err := os.ReadFile(path)
	if err != nil || string(data) != hostID {
		t.Errorf("the host's %s: %q %v, want it untouched (%q)", path, data, err, hostID)
	}
	if info, err := os.Lstat(path); err != nil || info.Size() != int64(len(hostID)) || !info.Mode().IsRegular() {
		t.Errorf("the host's %s: %v %v, want a regular file of %d bytes", path, info, err, len(hostID))
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("the host dir %s holds %v, want machine-id alone", dir, entries)
	}
}

// Each case is a guest tree (an overlay's upper dir over a template, or a
// full copy) that a hostile guest made point outside itself.
func TestResetMachineIDStaysInsideTheTree(t *testing.T) {
	cases := []struct {
		name    string
		overlay bool
		plant   func(t *testing.T, tree, host string)
	}{
		{"etc links to a host dir, overlay", true, linkEtc(absolute)},
		{"etc links to a host dir, full copy", false, linkEtc(absolute)},
		{"etc climbs out by a relative link, overlay", true, linkEtc(relativeTo)},
		{"etc climbs out by a relative link, full copy", false, linkEtc(relativeTo)},
		{"machine-id links to a host file, overlay", true, linkMachineID},
		{"machine-id links to a host file, full copy", false, linkMachineID},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			host := hostDir(t)
			tree := filepath.Join(t.TempDir(), "tree")
			must(t, os.Mkdir(tree, 0o755))
			c.plant(t, tree, host)
			lower := ""
			if c.overlay {
				lower = templateTree(t)
			}
			if err := resetMachineID(tree, lower, sameIDs); err != nil {
				t.Errorf("resetMachineID: %v, want the guest's own layout left alone", err)
			}
			assertHostIntact(t, host)
		})
	}
}

// linkEtc replaces the tree's /etc by a symlink to target(host, tree), as
// `mv /etc /etc.orig && ln -s HOSTDIR /etc` in the guest does.
func linkEtc(target func(t *testing.T, host, tree string) string) func(t *testing.T, tree, host string) {
	return func(t *testing.T, tree, host string) {
		t.Helper()
		mustWrite(t, filepath.Join(tree, "etc.orig", "machine-id"), "fedcba9876543210fedcba9876543210\n")
		must(t, os.Symlink(target(t, host, tree), filepath.Join(tree, "etc")))
	}
}

// absolute is the host dir as an absolute path.
func absolute(t *testing.T, host, tree string) string { return host }

// relativeTo is the host dir as a ../../ path from the tree's /etc.
func relativeTo(t *testing.T, host, tree string) string {
	rel, err := filepath.Rel(tree, host)
	must(t, err)
	return rel
}

// linkMachineID makes the tree's /etc/machine-id a symlink to the host's.
func linkMachineID(t *testing.T, tree, host string) {
	t.Helper()
	must(t, os.Mkdir(filepath.Join(tree, "etc"), 0o755))
	must(t, os.Symlink(filepath.Join(host, "machine-id"), filepath.Join(tree, machineID)))
}

// A template whose /etc is a symlink (to a host dir, here) is read through
// no further: no /etc directory is made in the copy's upper dir, which
// would hide the template's link in the merged tree.
func TestResetMachineIDIgnoresATemplatesLinkedEtc(t *testing.T) {
	host := hostDir(t)
	lower := t.TempDir()
	must(t, os.Symlink(host, filepath.Join(lower, "etc")))
	tree := t.TempDir()
	if err := resetMachineID(tree, lower, sameIDs); err != nil {
		t.Errorf("resetMachineID: %v", err)
	}
	assertHostIntact(t, host)
	if _, err := os.Lstat(filepath.Join(tree, "etc")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the copy's upper dir got an /etc (%v), want none", err)
	}
}

// The reset itself, without root: a full copy's id is emptied in place, an
// overlay's is hidden by an empty file with the template's mode.
func TestResetMachineIDEmptiesTheCopysID(t *testing.T) {
	full := t.TempDir()
	mustWrite(t, filepath.Join(full, machineID), "fedcba9876543210fedcba9876543210\n")
	if err := resetMachineID(full, "", sameIDs); err != nil {
		t.Fatal(err)
	}
	if data, err := os.ReadFile(filepath.Join(full, machineID)); err != nil || len(data) != 0 {
		t.Errorf("a full copy's machine id: %q %v, want it empty", data, err)
	}
	lower := templateTree(t)
	owner, shift := os.Geteuid(), sameIDs
	if owner == 0 {
		// The container's root, as in a template stored shifted to the
		// shared range; the copy is an isolated guest's, so its files
		// are owned in its own range.
		must(t, os.Lchown(filepath.Join(lower, "etc"), idmap.HostBase, idmap.HostBase))
		must(t, os.Lchown(filepath.Join(lower, machineID), idmap.HostBase, idmap.HostBase))
		own := idmap.Map{HostBase: idmap.IsolatedPool().First, Size: idmap.Size}
		owner, shift = int(own.HostBase), idmap.Between(idmap.Default(), own)
	}
	upper := t.TempDir()
	if err := resetMachineID(upper, lower, shift); err != nil {
		t.Fatal(err)
	}
	info, err := os.Lstat(filepath.Join(upper, machineID))
	if err != nil || info.Size() != 0 || !info.Mode().IsRegular() || info.Mode().Perm() != 0o444 {
		t.Errorf("an overlay copy's machine id: %v %v, want an empty regular file of mode 0444", info, err)
	} else if uid := info.Sys().(*syscall.Stat_t).Uid; int(uid) != owner {
		t.Errorf("an overlay copy's machine id is owned by %d, want %d like the template's", uid, owner)
	}
	if info, err := os.Lstat(filepath.Join(upper, "etc")); err != nil || !info.IsDir() || info.Mode().Perm() != 0o755 {
		t.Errorf("an overlay copy's /etc: %v %v, want a directory of mode 0755 like the template's", info, err)
	} else if uid := info.Sys().(*syscall.Stat_t).Uid; int(uid) != owner {
		t.Errorf("an overlay copy's /etc is owned by %d, want %d like the template's", uid, owner)
	}
}

// sameIDs keeps every owner: a shared guest's copy.
var sameIDs = idmap.Between(idmap.Default(), idmap.Default())
