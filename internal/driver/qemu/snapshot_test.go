package qemu

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/polyvisor/polyvisor/internal/guest"
	"github.com/polyvisor/polyvisor/internal/hostreq"
	"github.com/polyvisor/polyvisor/internal/layout"
	"github.com/polyvisor/polyvisor/pkg/api"
)

// stoppedVM lays out a stopped UEFI guest whose root disk is a real qcow2
// overlay on a base image, with a pattern written by qemu-io.
func stoppedVM(t *testing.T) (*Driver, *guest.Definition) {
	t.Helper()
	hostreq.Need(t, "qemu-img")
	hostreq.Need(t, "qemu-io")
	l := layout.New(t.TempDir())
	def := &guest.Definition{Name: "vm", Rootfs: guest.RootfsQcow2, Status: guest.Status{State: api.StateStopped}}
	dir := l.GuestDir(def.Name)
	if err := os.MkdirAll(filepath.Join(dir, "disks"), 0o700); err != nil {
		t.Fatal(err)
	}
	base := filepath.Join(t.TempDir(), "base.qcow2")
	run(t, "qemu-img", "create", "-q", "-f", "qcow2", base, "64M")
	run(t, "qemu-io", "-f", "qcow2", "-c", "write -q -P 0x11 0 1M", base)
	run(t, "qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", base, filepath.Join(dir, rootDisk))
	run(t, "qemu-io", "-f", "qcow2", "-c", "write -q -P 0x22 1M 1M", filepath.Join(dir, rootDisk))
	if err := os.WriteFile(filepath.Join(dir, uefiVars), []byte("vars-at-snapshot"), 0o600); err != nil {
		t.Fatal(err)
	}
	def.Disks = []guest.Disk{
		{Name: "root", Path: rootDisk, Kind: guest.RootfsQcow2, Size: 64 << 20},
		{Name: "uefi-vars", Path: uefiVars, Kind: "uefi-vars"},
	}
	return New(Options{Layout: l}), def
}

func TestVMSnapshotOfAStoppedGuest(t *testing.T) {
	d, def := stoppedVM(t)
	ctx := context.Background()
	disk := d.rootPath(def)
	snap := filepath.Join(t.TempDir(), "s1")
	if err := os.Mkdir(snap, 0o700); err != nil {
		t.Fatal(err)
	}
	// A tag a crashed snapshot left under the same name is replaced, not doubled.
	run(t, "qemu-img", "snapshot", "-c", "s1", disk)
	info, err := d.CreateSnapshot(ctx, def, "s1", snap)
	if err != nil {
		t.Fatal(err)
	}
	if info.Kind != SnapshotKind {
		t.Errorf("kind %q", info.Kind)
	}
	if tags, _ := snapshotTags(ctx, disk); tags["s1"] != 1 || len(tags) != 1 {
		t.Errorf("tags after the snapshot: %v, want s1 once", tags)
	}
	// The guest writes, its disk grows, its firmware changes a variable.
	run(t, "qemu-io", "-f", "qcow2", "-c", "write -q -P 0x33 1M 1M", disk)
	run(t, "qemu-img", "resize", "-q", disk, "128M")
	os.WriteFile(filepath.Join(d.guestDir(def), uefiVars), []byte("vars-later"), 0o600)
	next := def.Clone()
	next.Disks[0].Size = 128 << 20
	if err := d.RestoreSnapshot(ctx, next, "s1", snap); err != nil {
		t.Fatal(err)
	}
	run(t, "qemu-io", "-f", "qcow2", "-c", "read -q -P 0x22 1M 1M", "-c", "read -q -P 0x11 0 1M", disk)
	if next.Disks[0].Size != 64<<20 {
		t.Errorf("the restored disk's size in the definition: %d, want the snapshot's 64 MiB", next.Disks[0].Size)
	}
	if vars, _ := os.ReadFile(filepath.Join(d.guestDir(def), uefiVars)); string(vars) != "vars-at-snapshot" {
		t.Errorf("UEFI vars after restore: %q", vars)
	}
	if err := d.RestoreSnapshot(ctx, next, "nope", snap); err == nil || !strings.Contains(err.Error(), "no such snapshot") {
		t.Errorf("restore of a tag the disk lacks: %v", err)
	}
	if err := d.DeleteSnapshot(ctx, def, "s1", snap); err != nil {
		t.Fatal(err)
	}
	if tags, _ := snapshotTags(ctx, disk); len(tags) != 0 {
		t.Errorf("tags after delete: %v", tags)
	}
	// Deleting a snapshot whose tag is gone still succeeds: the record goes.
	if err := d.DeleteSnapshot(ctx, def, "s1", snap); err != nil {
		t.Errorf("second delete: %v", err)
	}
	run(t, "qemu-img", "check", "-q", disk)
}

func run(t *testing.T, name string, args ...string) {
	t.Helper()
	if out, err := exec.Command(hostreq.Need(t, name), args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v: %s", name, strings.Join(args, " "), err, out)
	}
}
