package qemu

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/polyvisor/polyvisor/internal/exporter"
	"github.com/polyvisor/polyvisor/internal/guest"
	"github.com/polyvisor/polyvisor/internal/hostreq"
	"github.com/polyvisor/polyvisor/internal/layout"
	"github.com/polyvisor/polyvisor/internal/template"
	"github.com/polyvisor/polyvisor/pkg/api"
)

// twoDiskGuest makes a template with a boot disk (pattern 0x11) and a data
// disk (0x44), as an import of a two-disk definition does, and creates a
// stopped guest of it with the driver.
func twoDiskGuest(t *testing.T) (*Driver, *guest.Definition) {
	t.Helper()
	hostreq.Need(t, "qemu-img")
	hostreq.Need(t, "qemu-io")
	l := layout.New(t.TempDir())
	d := New(Options{Layout: l})
	tm := &api.Template{
		ID: template.Key("db", template.TypeVM, "amd64"), Name: "db", Type: template.TypeVM, Arch: "amd64", Source: "import",
		Boot: &api.TemplateBoot{Disk: "disk.qcow2", DataDisks: []string{"data1.qcow2"}, Machine: "q35", Firmware: "bios", QEMU: "qemu-system-x86_64", NoAgent: true},
	}
	err := d.templates.Add(tm, func(staging string) error {
		run(t, "qemu-img", "create", "-q", "-f", "qcow2", filepath.Join(staging, "disk.qcow2"), "64M")
		run(t, "qemu-io", "-f", "qcow2", "-c", "write -q -P 0x11 0 1M", filepath.Join(staging, "disk.qcow2"))
		run(t, "qemu-img", "create", "-q", "-f", "qcow2", filepath.Join(staging, "data1.qcow2"), "32M")
		run(t, "qemu-io", "-f", "qcow2", "-c", "write -q -P 0x44 0 1M", filepath.Join(staging, "data1.qcow2"))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	def := &guest.Definition{Name: "db", Type: guest.TypeVM, Template: "db", Arch: "amd64", Rootfs: guest.RootfsQcow2, Status: guest.Status{State: api.StateStopped}}
	if err := d.Create(context.Background(), l.GuestDir(def.Name), def); err != nil {
		t.Fatal(err)
	}
	return d, def
}

// A guest of a template with a data disk gets its own overlay of it, and
// its snapshots, restores, deletes and copies cover both disks.
func TestVMWithADataDisk(t *testing.T) {
	d, def := twoDiskGuest(t)
	ctx := context.Background()
	data, ok := def.Disk("data1")
	if !ok || data.Path != "disks/data1.qcow2" || data.Kind != guest.RootfsQcow2 || data.Size != 32<<20 {
		t.Fatalf("disks %+v: want data1, a 32 MiB qcow2 overlay at disks/data1.qcow2", def.Disks)
	}
	if drives := d.dataDrives(def); len(drives) != 1 || drives[0].Name != "data1" || drives[0].Path != filepath.Join(d.guestDir(def), "disks/data1.qcow2") {
		t.Errorf("drives %+v", drives)
	}
	root, dataPath := d.rootPath(def), filepath.Join(d.guestDir(def), data.Path)
	run(t, "qemu-io", "-f", "qcow2", "-c", "read -q -P 0x44 0 1M", dataPath) // the template's content, through the overlay

	snap := t.TempDir()
	if _, err := d.CreateSnapshot(ctx, def, "s1", snap); err != nil {
		t.Fatal(err)
	}
	for _, disk := range []string{root, dataPath} {
		if tags, _ := snapshotTags(ctx, disk); tags["s1"] != 1 {
			t.Errorf("%s: tags %v, want s1", filepath.Base(disk), tags)
		}
	}
	// The guest writes to both disks and grows its data disk.
	run(t, "qemu-io", "-f", "qcow2", "-c", "write -q -P 0x22 0 1M", root)
	run(t, "qemu-io", "-f", "qcow2", "-c", "write -q -P 0x55 0 1M", dataPath)
	run(t, "qemu-img", "resize", "-q", dataPath, "48M")
	next := def.Clone()
	if disk, _ := next.Disk("data1"); disk != nil {
		disk.Size = 48 << 20
	}
	if err := d.RestoreSnapshot(ctx, next, "s1", snap); err != nil {
		t.Fatal(err)
	}
	run(t, "qemu-io", "-f", "qcow2", "-c", "read -q -P 0x11 0 1M", root)
	run(t, "qemu-io", "-f", "qcow2", "-c", "read -q -P 0x44 0 1M", dataPath)
	if disk, _ := next.Disk("data1"); disk == nil || disk.Size != 32<<20 {
		t.Errorf("data disk after restore: %+v, want the snapshot's 32 MiB", disk)
	}

	// A snapshot one disk lacks is not restored on any.
	run(t, "qemu-img", "snapshot", "-c", "half", root)
	run(t, "qemu-io", "-f", "qcow2", "-c", "write -q -P 0x66 0 1M", root)
	if err := d.RestoreSnapshot(ctx, next, "half", snap); err == nil || !strings.Contains(err.Error(), "disk data1 has no such snapshot") {
		t.Errorf("restore of a snapshot the data disk lacks: %v", err)
	}
	run(t, "qemu-io", "-f", "qcow2", "-c", "read -q -P 0x66 0 1M", root)
	if err := d.DeleteSnapshot(ctx, def, "half", snap); err != nil {
		t.Fatal(err)
	}

	// The copy has both disks, each an overlay on the template's base
	// holding what the guest wrote, without the snapshots.
	run(t, "qemu-io", "-f", "qcow2", "-c", "write -q -P 0x77 1M 1M", dataPath)
	cp := &guest.Definition{Name: "db2"}
	cpDir := d.opts.Layout.GuestDir(cp.Name)
	if err := d.Copy(ctx, def, cpDir, cp); err != nil {
		t.Fatal(err)
	}
	cpData, ok := cp.Disk("data1")
	if !ok || len(cp.Disks) != 2 {
		t.Fatalf("the copy's disks: %+v", cp.Disks)
	}
	run(t, "qemu-io", "-f", "qcow2", "-c", "read -q -P 0x44 0 1M", "-c", "read -q -P 0x77 1M 1M", filepath.Join(cpDir, cpData.Path))
	if tags, _ := snapshotTags(ctx, filepath.Join(cpDir, cpData.Path)); len(tags) != 0 {
		t.Errorf("the copy's data disk has snapshots %v", tags)
	}

	if err := d.DeleteSnapshot(ctx, def, "s1", snap); err != nil {
		t.Fatal(err)
	}
	for _, disk := range []string{root, dataPath} {
		if tags, _ := snapshotTags(ctx, disk); len(tags) != 0 {
			t.Errorf("%s: tags after delete %v", filepath.Base(disk), tags)
		}
		run(t, "qemu-img", "check", "-q", disk)
	}
	if _, err := os.Stat(filepath.Join(cpDir, rootDisk)); err != nil {
		t.Errorf("the copy's root disk: %v", err)
	}
}

// An OVA holds one disk: a VM with a data disk is refused one, in one
// line naming the disk, rather than exported without it; a disk format
// exports the root disk with a warning naming the data disk.
func TestExportOfAVMWithADataDisk(t *testing.T) {
	d, def := twoDiskGuest(t)
	ctx := context.Background()
	dir := t.TempDir()
	noProgress := func(string, int64, int64) {}
	var warnings []string
	warn := func(w string) { warnings = append(warnings, w) }
	err := d.Export(ctx, def, api.Export{Format: exporter.FormatOVA, Path: filepath.Join(dir, "db.ova")}, noProgress, warn)
	if !errors.Is(err, api.ErrInvalid) || !strings.Contains(err.Error(), "data1") || strings.Contains(err.Error(), "\n") {
		t.Errorf("OVA of a VM with a data disk: %v, want one line refusing it, naming data1", err)
	}
	if left, _ := os.ReadDir(dir); len(left) > 0 {
		t.Errorf("the refused export left %v", left)
	}
	if err := d.Export(ctx, def, api.Export{Format: "qcow2", Path: filepath.Join(dir, "db.qcow2")}, noProgress, warn); err != nil {
		t.Fatal(err)
	}
	if len(warnings) != 1 || !strings.Contains(warnings[0], "data disk data1") {
		t.Errorf("warnings %q: want one naming data disk data1", warnings)
	}
}
