package libvirt

import (
	"fmt"
	"strings"

	"libvirt.org/go/libvirtxml"

	"github.com/polyvisor/polyvisor/internal/vendorhost"
)

// guestOf reads a domain XML into a Guest (its State is the caller's).
func guestOf(xml string) (vendorhost.Guest, error) {
	var d libvirtxml.Domain
	if err := d.Unmarshal(xml); err != nil {
		return vendorhost.Guest{}, fmt.Errorf("%w: domain XML: %w", vendorhost.ErrInvalid, err)
	}
	g := vendorhost.Guest{Name: d.Name, Detail: d.Type, Firmware: firmwareOf(d.OS)}
	if d.VCPU != nil {
		g.CPUs = int(d.VCPU.Value)
		if d.VCPU.Current != 0 {
			g.CPUs = int(d.VCPU.Current)
		}
	}
	g.MemoryMiB = memoryMiB(&d)
	if d.OS != nil && d.OS.Type != nil {
		g.OS = strings.TrimSpace(d.OS.Type.Type) // hvm, xen (PV), exe (container)
	}
	if d.Type == "lxc" {
		g.Firmware = ""
	}
	if d.Devices == nil {
		return g, nil
	}
	for _, disk := range d.Devices.Disks {
		if disk.Device != "" && disk.Device != "disk" {
			continue // CD-ROMs and floppies are media, not the guest's disks
		}
		vd := vendorhost.Disk{Path: diskPath(disk.Source)}
		if disk.Driver != nil {
			vd.Format = disk.Driver.Type
		}
		g.Disks = append(g.Disks, vd)
	}
	for _, fs := range d.Devices.Filesystems {
		// An LXC domain's root and other trees.
		if fs.Source != nil && fs.Source.Mount != nil {
			g.Disks = append(g.Disks, vendorhost.Disk{Path: fs.Source.Mount.Dir, Format: "dir"})
		}
	}
	for _, iface := range d.Devices.Interfaces {
		nic := vendorhost.NIC{Network: networkOf(iface.Source)}
		if iface.MAC != nil {
			nic.MAC = strings.ToLower(iface.MAC.Address)
		}
		if iface.Model != nil {
			nic.Model = iface.Model.Type
		}
		g.NICs = append(g.NICs, nic)
	}
	return g, nil
}

// firmwareOf is uefi for a domain with firmware='efi' or a pflash/OVMF
// loader, else bios.
func firmwareOf(os *libvirtxml.DomainOS) string {
	if os == nil {
		return "bios"
	}
	if os.Firmware == "efi" {
		return "uefi"
	}
	if l := os.Loader; l != nil {
		p := strings.ToLower(l.Path)
		if l.Type == "pflash" || strings.Contains(p, "ovmf") || strings.Contains(p, "aavmf") || strings.Contains(p, "edk2") {
			return "uefi"
		}
	}
	return "bios"
}

// memoryMiB is the memory the guest runs with: <currentMemory> when
// ballooned below <memory>, in MiB.
func memoryMiB(d *libvirtxml.Domain) int64 {
	var v uint
	var unit string
	switch {
	case d.CurrentMemory != nil && d.CurrentMemory.Value != 0:
		v, unit = d.CurrentMemory.Value, d.CurrentMemory.Unit
	case d.Memory != nil:
		v, unit = d.Memory.Value, d.Memory.Unit
	default:
		return 0
	}
	return int64(bytesOf(v, unit) >> 20)
}

// bytesOf converts a libvirt amount; libvirt writes KiB, and KiB is its
// default.
func bytesOf(v uint, unit string) uint64 {
	n := uint64(v)
	switch strings.ToLower(unit) {
	case "b", "bytes":
		return n
	case "kb":
		return n * 1000
	case "mb":
		return n * 1000 * 1000
	case "m", "mib":
		return n << 20
	case "gb":
		return n * 1000 * 1000 * 1000
	case "g", "gib":
		return n << 30
	}
	return n << 10
}

// diskPath names a disk's source: a file, a block device, pool/volume, or
// protocol://host/name.
func diskPath(s *libvirtxml.DomainDiskSource) string {
	switch {
	case s == nil:
		return ""
	case s.File != nil:
		return s.File.File
	case s.Block != nil:
		return s.Block.Dev
	case s.Volume != nil:
		return s.Volume.Pool + "/" + s.Volume.Volume
	case s.Dir != nil:
		return s.Dir.Dir
	case s.Network != nil:
		host := ""
		if len(s.Network.Hosts) > 0 {
			host = s.Network.Hosts[0].Name
		}
		return s.Network.Protocol + "://" + host + "/" + s.Network.Name
	}
	return ""
}

// networkOf names what a NIC is plugged into: a libvirt network, a bridge,
// a host device, or the interface's kind.
func networkOf(s *libvirtxml.DomainInterfaceSource) string {
	switch {
	case s == nil:
		return ""
	case s.Network != nil:
		return s.Network.Network
	case s.Bridge != nil:
		return s.Bridge.Bridge
	case s.Direct != nil:
		return s.Direct.Dev
	case s.User != nil:
		return "user"
	case s.Ethernet != nil:
		return "ethernet"
	}
	return ""
}
