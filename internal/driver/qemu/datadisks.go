package qemu

import (
	"context"
	"fmt"
	"path/filepath"
	"strconv"

	"github.com/polyvisor/polyvisor/internal/guest"
	"github.com/polyvisor/polyvisor/pkg/api"
)

// A VM's data disks are the disks it has beside its root disk: an imported
// definition's second disk, third... (api.TemplateBoot.DataDisks). Like
// the root disk, each is the guest's own qcow2 overlay on the template's
// base, named data1, data2... in the template's order, and attached after
// the root disk, so that the guest sees them as vdb, vdc...

// dataDiskName is the name of a guest's data disk i (0-based).
func dataDiskName(i int) string { return "data" + strconv.Itoa(i+1) }

// dataDiskPath is where a guest's data disk named name lies in its directory.
func dataDiskPath(name string) string { return "disks/" + name + ".qcow2" }

// qcow2Disks returns the guest's qcow2 disks, the root disk first and then
// its data disks in order: what a snapshot or a copy covers. A definition
// that lists none (written before disks were) has its root disk.
func qcow2Disks(def *guest.Definition) []guest.Disk {
	var disks []guest.Disk
	for _, disk := range def.Disks {
		if disk.Kind == guest.RootfsQcow2 {
			disks = append(disks, disk)
		}
	}
	if len(disks) == 0 {
		disks = []guest.Disk{{Name: "root", Path: rootDisk, Kind: guest.RootfsQcow2}}
	}
	return disks
}

// dataDisks returns the guest's data disks, in order.
func dataDisks(def *guest.Definition) []guest.Disk {
	var disks []guest.Disk
	for _, disk := range qcow2Disks(def) {
		if disk.Name != "root" {
			disks = append(disks, disk)
		}
	}
	return disks
}

// dataDrive is a data disk on QEMU's command line.
type dataDrive struct {
	Name string // the drive's id: the disk's name
	Path string
}

// dataDrives returns the guest's data disks as QEMU opens them.
func (d *Driver) dataDrives(def *guest.Definition) []dataDrive {
	var drives []dataDrive
	for _, disk := range dataDisks(def) {
		drives = append(drives, dataDrive{Name: disk.Name, Path: filepath.Join(d.guestDir(def), disk.Path)})
	}
	return drives
}

// templateBase returns the template's base of the guest disk named name:
// its boot disk for root, data base i for data disk i.
func templateBase(t *api.Template, tdir, name string) (string, error) {
	if name == "root" {
		return filepath.Join(tdir, t.Boot.Disk), nil
	}
	for i, file := range t.Boot.DataDisks {
		if dataDiskName(i) != name {
			continue
		}
		// The template's metadata names a file in its own directory.
		if file == "" || filepath.Base(file) != file || file == "." || file == ".." {
			return "", fmt.Errorf("template %s: data disk %q is not a file name of the template; import the template again", t.ID, file)
		}
		return filepath.Join(tdir, file), nil
	}
	return "", fmt.Errorf("template %s has no base of disk %s", t.ID, name)
}

// createDataDisks makes, in dir (a new guest's directory), a qcow2
// overlay of each of the template's data disks, and returns them.
func createDataDisks(ctx context.Context, t *api.Template, tdir, dir string) ([]guest.Disk, error) {
	var disks []guest.Disk
	for i := range t.Boot.DataDisks {
		name := dataDiskName(i)
		base, err := templateBase(t, tdir, name)
		if err != nil {
			return nil, err
		}
		path := dataDiskPath(name)
		if err := qemuImg(ctx, "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", base, filepath.Join(dir, path)); err != nil {
			return nil, fmt.Errorf("create disk %s: %w", name, err)
		}
		info, err := inspectImage(ctx, filepath.Join(dir, path))
		if err != nil {
			return nil, fmt.Errorf("create disk %s: %w", name, err)
		}
		disks = append(disks, guest.Disk{Name: name, Path: path, Kind: guest.RootfsQcow2, Size: guest.Size(info.VirtualSize)})
	}
	return disks, nil
}
