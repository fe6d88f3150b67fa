package e2e

import (
	"bytes"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/polyvisor/polyvisor/internal/layout"
	"github.com/polyvisor/polyvisor/internal/testenv"
	"github.com/polyvisor/polyvisor/pkg/api"
)

// snapshots lists a guest's snapshots through the CLI's JSON.
func snapshots(t *testing.T, d *testenv.Daemon, name string) []api.Snapshot {
	t.Helper()
	var list []api.Snapshot
	if err := jsonUnmarshal(d.Must(t, "snapshot", "list", name, "--format", "json"), &list); err != nil {
		t.Fatal(err)
	}
	return list
}

// snapshotEntries lists what a guest's snapshots dir holds, leftovers included.
func snapshotEntries(t *testing.T, d *testenv.Daemon, name string) []string {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(layout.New(d.StateDir).GuestDir(name), "snapshots"))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

// qcow2Tags lists the internal snapshots in a VM's root disk.
func qcow2Tags(t *testing.T, d *testenv.Daemon, name string) []string {
	t.Helper()
	disk := filepath.Join(layout.New(d.StateDir).GuestDir(name), "disks", "root.qcow2")
	out, err := exec.Command("qemu-img", "info", "-U", "--output", "json", disk).Output()
	if err != nil {
		t.Fatalf("qemu-img info %s: %v", disk, err)
	}
	var info struct {
		Snapshots []struct{ Name string } `json:"snapshots"`
	}
	if err := json.Unmarshal(out, &info); err != nil {
		t.Fatal(err)
	}
	var tags []string
	for _, s := range info.Snapshots {
		tags = append(tags, s.Name)
	}
	return tags
}

func expectOutput(t *testing.T, d *testenv.Daemon, name, want string, command ...string) {
	t.Helper()
	if out := d.Must(t, append([]string{"exec", name, "--"}, command...)...); out != want {
		t.Errorf("%s in %s: %q, want %q", strings.Join(command, " "), name, out, want)
	}
}

// TestSnapshotContainer snapshots a running overlay guest (frozen for the
// copy), changes and deletes files (one of the template's, so the upper
// dir holds a whiteout), and restores: every file is back as it was.
func TestSnapshotContainer(t *testing.T) {
	requireRoot(t)
	d := env.main
	g := launch(t, d, "busybox", "e2e-snap")
	d.Must(t, "exec", g.Name, "--", "sh", "-c", "echo one > /root/a; mkdir /root/dir; echo two > /root/dir/b")
	if out := d.Must(t, "snapshot", "create", g.Name, "s1"); !strings.Contains(out, "Snapshot s1 of e2e-snap taken") {
		t.Errorf("snapshot create said %q", out)
	}
	list := snapshots(t, d, g.Name)
	if len(list) != 1 || list[0].Name != "s1" || list[0].Kind != "overlay-upper" || !list[0].Running || list[0].Size <= 0 || list[0].CreatedAt.IsZero() {
		t.Fatalf("snapshot list: %+v", list)
	}
	if table := d.Must(t, "snapshot", "list", g.Name); !strings.Contains(table, "NAME") || !strings.Contains(table, "s1") || !strings.Contains(table, "running") {
		t.Errorf("snapshot list table:\n%s", table)
	}
	// Thawed: the guest runs on.
	expectOutput(t, d, g.Name, "thawed\n", "echo", "thawed")
	d.Must(t, "exec", g.Name, "--", "sh", "-c", "echo changed > /root/a; rm -r /root/dir; rm /bin/vi; echo new > /root/new")

	before := guestDirEntries(t, d)
	expectError(t, d, "stop it first", "snapshot", "restore", g.Name, "s1")
	expectError(t, d, "already exists", "snapshot", "create", g.Name, "s1")
	expectError(t, d, "snapshot name", "snapshot", "create", g.Name, "Bad_Snap")
	expectError(t, d, "not found", "snapshot", "create", "e2e-nosuch", "s1")
	expectError(t, d, "not found", "snapshot", "restore", g.Name, "s9")
	expectError(t, d, "not found", "snapshot", "delete", g.Name, "s9")
	if after := guestDirEntries(t, d); strings.Join(before, ",") != strings.Join(after, ",") {
		t.Errorf("failed snapshot commands changed the guests dir: %v -> %v", before, after)
	}
	if entries := snapshotEntries(t, d, g.Name); strings.Join(entries, ",") != "s1" {
		t.Errorf("snapshots dir after failed commands: %v", entries)
	}

	d.Must(t, "stop", g.Name, "--force")
	if out := d.Must(t, "snapshot", "restore", g.Name, "s1"); !strings.Contains(out, "restored to snapshot s1") {
		t.Errorf("snapshot restore said %q", out)
	}
	d.Must(t, "start", g.Name)
	expectOutput(t, d, g.Name, "one\n", "cat", "/root/a")
	expectOutput(t, d, g.Name, "two\n", "cat", "/root/dir/b")
	expectOutput(t, d, g.Name, "vi back\n", "sh", "-c", "test -x /bin/vi && echo vi back")
	expectOutput(t, d, g.Name, "gone\n", "sh", "-c", "test -e /root/new || echo gone")

	d.Must(t, "snapshot", "delete", g.Name, "s1")
	if list := snapshots(t, d, g.Name); len(list) != 0 {
		t.Errorf("snapshot list after delete: %+v", list)
	}
	if entries := snapshotEntries(t, d, g.Name); len(entries) != 0 {
		t.Errorf("snapshots dir after delete: %v", entries)
	}

	// A copy guest's whole tree is its snapshot.
	c := launch(t, d, "busybox", "e2e-snapcopy", "--copy")
	d.Must(t, "exec", c.Name, "--", "sh", "-c", "echo one > /root/a")
	d.Must(t, "snapshot", "create", c.Name, "s1")
	if list := snapshots(t, d, c.Name); len(list) != 1 || list[0].Kind != "rootfs-copy" {
		t.Errorf("snapshot list of a copy guest: %+v", list)
	}
	d.Must(t, "exec", c.Name, "--", "sh", "-c", "echo two > /root/a; rm /bin/vi")
	d.Must(t, "stop", c.Name, "--force")
	d.Must(t, "snapshot", "restore", c.Name, "s1")
	d.Must(t, "start", c.Name)
	expectOutput(t, d, c.Name, "one\n", "cat", "/root/a")
	expectOutput(t, d, c.Name, "vi back\n", "sh", "-c", "test -x /bin/vi && echo vi back")
}

// TestCopyContainer copies a running container (frozen meanwhile): the
// copy is stopped, gets its own name as hostname and its own machine id,
// and its files are independent of the source's.
func TestCopyContainer(t *testing.T) {
	requireRoot(t)
	d := env.main
	src := launch(t, d, "busybox", "e2e-cpsrc")
	d.Must(t, "exec", src.Name, "--", "sh", "-c", "echo src > /root/a; echo 0123456789abcdef0123456789abcdef > /etc/machine-id")
	d.Must(t, "snapshot", "create", src.Name, "s1")
	t.Cleanup(func() { d.Run("delete", "--force", "e2e-cpdst") })
	if out := d.Must(t, "copy", src.Name, "e2e-cpdst"); !strings.Contains(out, "Guest e2e-cpdst copied from e2e-cpsrc") {
		t.Errorf("copy said %q", out)
	}
	dst := info(t, d, "e2e-cpdst")
	if dst.State != api.StateStopped || dst.Template != "busybox" || dst.Rootfs != "overlay" {
		t.Errorf("the copy: %+v", dst)
	}
	if list := snapshots(t, d, dst.Name); len(list) != 0 {
		t.Errorf("the copy has the source's snapshots: %+v", list)
	}
	expectOutput(t, d, src.Name, "running\n", "echo", "running")
	d.Must(t, "start", dst.Name)
	expectOutput(t, d, dst.Name, "e2e-cpdst\n", "hostname")
	expectOutput(t, d, dst.Name, "src\n", "cat", "/root/a")
	expectOutput(t, d, dst.Name, "", "cat", "/etc/machine-id")
	d.Must(t, "exec", dst.Name, "--", "sh", "-c", "echo dst > /root/a; rm /bin/vi")
	expectOutput(t, d, src.Name, "src\n", "cat", "/root/a")
	expectOutput(t, d, src.Name, "vi kept\n", "sh", "-c", "test -x /bin/vi && echo vi kept")
	expectOutput(t, d, src.Name, "0123456789abcdef0123456789abcdef\n", "cat", "/etc/machine-id")

	before := guestDirEntries(t, d)
	expectError(t, d, "already exists", "copy", src.Name, dst.Name)
	expectError(t, d, "not found", "copy", "e2e-nosuch", "e2e-cpx")
	expectError(t, d, "name", "copy", src.Name, "Bad_Name")
	if after := guestDirEntries(t, d); strings.Join(before, ",") != strings.Join(after, ",") {
		t.Errorf("failed copies changed the guests dir: %v -> %v", before, after)
	}
}

// TestSnapshotVM snapshots a running busybox VM (paused for the moment),
// restores it stopped, copies it and boots the copy under its own name.
func TestSnapshotVM(t *testing.T) {
	requireVMTemplates(t)
	d := env.main
	g := launch(t, d, "busybox", "e2e-snapvm", "--type", "vm")
	d.Must(t, "exec", g.Name, "--", "sh", "-c", "echo one > /root/mark")
	d.Must(t, "snapshot", "create", g.Name, "s1")
	list := snapshots(t, d, g.Name)
	if len(list) != 1 || list[0].Kind != "qcow2-internal" || !list[0].Running {
		t.Fatalf("snapshot list: %+v", list)
	}
	if tags := qcow2Tags(t, d, g.Name); strings.Join(tags, ",") != "s1" {
		t.Errorf("the root disk's snapshots: %v", tags)
	}
	expectOutput(t, d, g.Name, "resumed\n", "echo", "resumed")
	d.Must(t, "exec", g.Name, "--", "sh", "-c", "echo two > /root/mark; sync")

	expectError(t, d, "stop it first", "snapshot", "restore", g.Name, "s1")
	expectError(t, d, "already exists", "snapshot", "create", g.Name, "s1")
	before := guestDirEntries(t, d)
	expectError(t, d, "stop it first", "copy", g.Name, "e2e-snapvm2")
	if after := guestDirEntries(t, d); strings.Join(before, ",") != strings.Join(after, ",") {
		t.Errorf("a refused copy changed the guests dir: %v -> %v", before, after)
	}

	d.Must(t, "stop", g.Name, "--timeout", "30s")
	d.Must(t, "snapshot", "restore", g.Name, "s1")
	// A stopped guest's snapshots go through qemu-img.
	d.Must(t, "snapshot", "create", g.Name, "s2")
	t.Cleanup(func() { d.Run("delete", "--force", "e2e-snapvm2") })
	d.Must(t, "copy", g.Name, "e2e-snapvm2")
	if tags := qcow2Tags(t, d, "e2e-snapvm2"); len(tags) != 0 {
		t.Errorf("the copy's disk holds the source's snapshots: %v", tags)
	}
	if list := snapshots(t, d, "e2e-snapvm2"); len(list) != 0 {
		t.Errorf("the copy lists snapshots: %+v", list)
	}
	d.Must(t, "start", g.Name)
	d.Must(t, "start", "e2e-snapvm2")
	expectOutput(t, d, g.Name, "one\n", "cat", "/root/mark")
	expectOutput(t, d, "e2e-snapvm2", "one\n", "cat", "/root/mark")
	expectOutput(t, d, "e2e-snapvm2", "e2e-snapvm2\n", "hostname")
	d.Must(t, "exec", "e2e-snapvm2", "--", "sh", "-c", "echo copy > /root/mark; sync")
	expectOutput(t, d, g.Name, "one\n", "cat", "/root/mark")

	// Deleted while running, over QMP; and stopped, by qemu-img.
	d.Must(t, "snapshot", "delete", g.Name, "s1")
	if tags := qcow2Tags(t, d, g.Name); strings.Join(tags, ",") != "s2" {
		t.Errorf("the root disk's snapshots after deleting s1: %v", tags)
	}
	d.Must(t, "stop", g.Name, "--force")
	d.Must(t, "snapshot", "delete", g.Name, "s2")
	if tags := qcow2Tags(t, d, g.Name); len(tags) != 0 {
		t.Errorf("the root disk's snapshots after deleting s2: %v", tags)
	}
	if entries := snapshotEntries(t, d, g.Name); len(entries) != 0 {
		t.Errorf("snapshots dir after deleting both: %v", entries)
	}

	t.Run("uefi-vars", func(t *testing.T) {
		// No boot needed: the variable store is a file beside the disk.
		d.Must(t, "create", "buefi", "e2e-snapuefi", "--type", "vm")
		t.Cleanup(func() { d.Run("delete", "--force", "e2e-snapuefi") })
		dir := layout.New(d.StateDir).GuestDir("e2e-snapuefi")
		vars := filepath.Join(dir, "disks", "uefi-vars.fd")
		saved, err := os.ReadFile(vars)
		if err != nil {
			t.Fatal(err)
		}
		d.Must(t, "snapshot", "create", "e2e-snapuefi", "s1")
		if copied, _ := os.ReadFile(filepath.Join(dir, "snapshots", "s1", "uefi-vars.fd")); !bytes.Equal(copied, saved) {
			t.Error("the snapshot holds no copy of the UEFI variable store")
		}
		os.WriteFile(vars, bytes.Repeat([]byte{0xee}, len(saved)), 0o600)
		d.Must(t, "snapshot", "restore", "e2e-snapuefi", "s1")
		if restored, _ := os.ReadFile(vars); !bytes.Equal(restored, saved) {
			t.Error("restore did not put the UEFI variable store back")
		}
		t.Cleanup(func() { d.Run("delete", "--force", "e2e-snapuefi2") })
		d.Must(t, "copy", "e2e-snapuefi", "e2e-snapuefi2")
		if copied, _ := os.ReadFile(filepath.Join(layout.New(d.StateDir).GuestDir("e2e-snapuefi2"), "disks", "uefi-vars.fd")); !bytes.Equal(copied, saved) {
			t.Error("the copy has no copy of the UEFI variable store")
		}
	})
}

// TestSnapshotAndCopyFailuresLeaveNothing breaks a snapshot after its disk
// part and a copy after its disks: no record, no copied tree, no qcow2
// snapshot, no guest; a running guest runs on.
func TestSnapshotAndCopyFailuresLeaveNothing(t *testing.T) {
	requireRoot(t)
	d := ownDaemon(t, "--inject-fault", "snapshot-after-disks,copy-after-disks")
	d.Must(t, "template", "build", "busybox", "--type", "vm")
	ct := launch(t, d, "busybox", "ct")
	vm := launch(t, d, "busybox", "vm", "--type", "vm")
	d.Must(t, "create", "busybox", "vmoff", "--type", "vm")
	for _, name := range []string{ct.Name, vm.Name, "vmoff"} {
		expectError(t, d, "injected fault at snapshot-after-disks", "snapshot", "create", name, "s1")
		if entries := snapshotEntries(t, d, name); len(entries) != 0 {
			t.Errorf("%s: a failed snapshot left %v", name, entries)
		}
		if name != ct.Name {
			if tags := qcow2Tags(t, d, name); len(tags) != 0 {
				t.Errorf("%s: a failed snapshot left qcow2 snapshots %v", name, tags)
			}
		}
	}
	expectOutput(t, d, ct.Name, "thawed\n", "echo", "thawed")
	expectOutput(t, d, vm.Name, "resumed\n", "echo", "resumed")
	for _, name := range []string{ct.Name, "vmoff"} {
		expectError(t, d, "injected fault at copy-after-disks", "copy", name, "copy")
	}
	for _, e := range guestDirEntries(t, d) {
		if strings.HasPrefix(e, ".") || e == "copy" {
			t.Errorf("a failed copy left %s in the guests dir", e)
		}
	}
	if gs, _ := d.Guests(); len(gs) != 3 {
		t.Errorf("after failed copies the daemon lists %d guests", len(gs))
	}
	// The name is free again.
	d.Must(t, "create", "busybox", "copy")
}
