package qemu

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/polyvisor/polyvisor/internal/arch"
	"github.com/polyvisor/polyvisor/internal/driver"
	"github.com/polyvisor/polyvisor/internal/exporter"
	"github.com/polyvisor/polyvisor/internal/guest"
	"github.com/polyvisor/polyvisor/internal/hostreq"
	"github.com/polyvisor/polyvisor/internal/network"
	"github.com/polyvisor/polyvisor/pkg/api"
)

// The optional abilities the QEMU driver has, as Capabilities says.
var (
	_ driver.Execer        = (*Driver)(nil)
	_ driver.Consoler      = (*Driver)(nil)
	_ driver.DiskResizer   = (*Driver)(nil)
	_ driver.Snapshotter   = (*Driver)(nil)
	_ driver.Copier        = (*Driver)(nil)
	_ driver.Exporter      = (*Driver)(nil)
	_ driver.Sweeper       = (*Driver)(nil)
	_ driver.UsageReporter = (*Driver)(nil)
)

// Name implements driver.Driver.
func (d *Driver) Name() string { return Class }

// Type implements driver.Driver.
func (d *Driver) Type() string { return guest.TypeVM }

// Capabilities implements driver.Driver: a VM's disk is copied only while
// it is stopped, and it runs every arch this host has a QEMU system
// emulator for.
func (d *Driver) Capabilities() api.Capabilities {
	c := api.Capabilities{
		Exec: true, Console: true, DiskResize: true, Snapshots: true, Copy: true,
		Export: true, Networks: true, Usage: true, ExportFormats: exporter.VMFormats,
	}
	for _, a := range arch.All() {
		if _, err := hostreq.Lookup(a.Emulator); err == nil {
			c.Arches = append(c.Arches, a.Debian)
		}
	}
	return c
}

// Define implements driver.Driver: a VM's root disk is its own qcow2
// overlay on the template's, grown to the size the request gives; it has
// no id map and no container confinement.
func (d *Driver) Define(def *guest.Definition, req api.GuestCreate) error {
	if req.Copy || req.Privileged {
		return fmt.Errorf("%w: --copy and --privileged are for containers; a VM's disk is always its own qcow2 overlay", api.ErrInvalid)
	}
	def.Rootfs = guest.RootfsQcow2
	if req.Disk != "" {
		size, err := guest.ParseDiskQuota("disk", req.Disk)
		if err != nil {
			return err
		}
		if req.Disk == guest.NoDiskQuota {
			return fmt.Errorf("%w: disk: a vm's root disk has a size; give one, like 10GiB, or leave --disk out for the template's", api.ErrInvalid)
		}
		def.Disks = []guest.Disk{{Name: "root", Size: size}}
	}
	if req.Nesting || req.Capabilities != nil {
		return fmt.Errorf("%w: nesting and capabilities are for unprivileged containers (a privileged one holds every capability already); drop --nesting and --capabilities", api.ErrInvalid)
	}
	if req.IDMap != "" {
		return fmt.Errorf("%w: idmap: only unprivileged containers have an id map; drop --idmap", api.ErrInvalid)
	}
	return nil
}

// View implements driver.Driver: a VM shows as "hypervisor" when it runs
// under KVM and "emulation" under TCG (or until it has run).
func (d *Driver) View(def *guest.Definition, g *api.Guest) {
	g.Class = "emulation"
	if def.Status.Accel == "kvm" {
		g.Class = "hypervisor"
	}
}

// handle is what Start records for Recover (guest.Status.Handle), as
// JSON: the QMP socket of the VM's QEMU.
type handle struct {
	QMP string `json:"qmp"`
}

// encode writes h for guest.Status.Handle.
func (h handle) encode() string {
	data, _ := json.Marshal(h) // one string: it cannot fail
	return string(data)
}

// readHandle reads the handle Start wrote for def. A definition written
// before handles were (version 1 or none, no handle) gets this driver's
// defaults; a version this driver does not know is refused.
func (d *Driver) readHandle(def *guest.Definition) (handle, error) {
	s := def.Status
	if s.HandleVersion > handleVersion {
		return handle{}, fmt.Errorf("guest %s: handle version %d: this polyvisor knows version %d at most; leave the guest running and upgrade polyvisor", def.Name, s.HandleVersion, handleVersion)
	}
	if s.Handle == "" {
		return handle{QMP: d.qmpSocket(def)}, nil
	}
	var h handle
	if err := json.Unmarshal([]byte(s.Handle), &h); err != nil {
		return handle{}, fmt.Errorf("guest %s: handle: %w", def.Name, err)
	}
	if h.QMP == "" {
		return handle{}, fmt.Errorf("guest %s: handle names no QMP socket", def.Name)
	}
	return h, nil
}

// Export implements driver.Exporter: the VM's root disk converted to a
// disk format, or an OVA appliance of it (which needs a template that
// boots through firmware, so that the disk carries a bootloader). An OVA
// holds one disk, so a VM with data disks is refused one; a disk format
// holds the root disk, with a warning naming each data disk left out.
func (d *Driver) Export(ctx context.Context, def *guest.Definition, req api.Export, progress exporter.Progress, warn func(string)) error {
	root, ok := def.Disk("root")
	if !ok {
		return errors.New("it has no root disk")
	}
	disk := filepath.Join(d.guestDir(def), root.Path)
	t, err := d.templates.Find(def.Template, def.Type, def.Arch)
	if err != nil {
		return err
	}
	bootable := t.Boot != nil && t.Boot.Firmware != ""
	var data []string
	for _, disk := range dataDisks(def) {
		data = append(data, disk.Name+" ("+d.diskPath(def, disk)+")")
	}
	if len(data) > 0 && req.Format == exporter.FormatOVA {
		return fmt.Errorf("%w: %s has data disks beside its root disk, %s, and an OVA of it would carry the root disk alone; export the root disk with --format vmdk and convert each data disk's file with qemu-img convert -O vmdk", api.ErrInvalid, def.Name, strings.Join(data, ", "))
	}
	for _, disk := range data {
		warn(fmt.Sprintf("data disk %s is not in the export, which holds the root disk alone: convert its file with qemu-img convert", disk))
	}
	if req.Format != exporter.FormatOVA {
		if !bootable {
			warn(fmt.Sprintf("template %s boots its kernel directly, so this disk carries no bootloader: attach it as a data disk, or export a guest of a template built with --firmware bios|uefi", t.ID))
		}
		return exporter.Disk(ctx, disk, req.Path, req.Format, progress)
	}
	if !bootable {
		return fmt.Errorf("%w: template %s boots its kernel directly, so its disk carries no bootloader and an appliance of it would not boot; build the template with --firmware bios or uefi", api.ErrInvalid, t.ID)
	}
	var nics []exporter.NIC
	for _, n := range network.GuestNICs(def) {
		nics = append(nics, exporter.NIC{MAC: n.MAC.String(), Network: n.Network})
	}
	return exporter.OVA(ctx, exporter.Appliance{
		Name: def.Name, CPUs: def.CPUs, Memory: int64(def.Memory), Firmware: t.Boot.Firmware,
		Disk: disk, NICs: nics,
	}, req.Path, progress)
}
