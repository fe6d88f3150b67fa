package ovf

import (
	"errors"
	"strings"

	"github.com/polyvisor/polyvisor/internal/vmdef"
)

// CIM ResourceType numbers (CIM_ResourceAllocationSettingData) that
// Parse maps to the Machine.
const (
	resourceCPU          = 3
	resourceMemory       = 4
	resourceIDE          = 5
	resourceSCSI         = 6
	resourceEthernet     = 10
	resourceDisk         = 17
	resourceOtherStorage = 20 // SATA, NVMe
)

// deviceKinds names the ResourceTypes that become a warning line.
var deviceKinds = map[int64]string{
	1: "device", 7: "Fibre Channel adapter", 8: "iSCSI adapter", 9: "InfiniBand adapter",
	11: "network adapter", 12: "I/O slot", 13: "I/O device", 14: "floppy drive", 15: "CD drive",
	16: "DVD drive", 18: "tape drive", 19: "storage extent", 21: "serial port", 22: "parallel port",
	23: "USB controller", 24: "graphics controller", 25: "IEEE 1394 controller", 35: "sound card",
}

// readHardware maps a VirtualHardwareSection's items, in document order,
// onto d.Machine. It returns the diskIds the items attach.
func readHardware(d *Descriptor, disks map[string]sectionDisk, children []xmlElement) (map[string]bool, error) {
	m := &d.Machine
	if len(children) > maxItems {
		return nil, invalidf("OVF descriptor: the VirtualHardwareSection has %d items; a machine has at most %d", len(children), maxItems)
	}
	attached := map[string]bool{}
	for _, c := range children {
		switch c.XMLName.Local {
		case "Item", "StorageItem", "EthernetPortItem":
			if err := readItem(d, disks, attached, c); err != nil {
				return nil, err
			}
		case "Config", "ExtraConfig":
			readConfig(m, c)
		case "Info":
		default:
			warnUnknown(m, []xmlElement{c})
		}
	}
	return attached, nil
}

// readItem maps one hardware item by its ResourceType.
func readItem(d *Descriptor, disks map[string]sectionDisk, attached map[string]bool, it xmlElement) error {
	m := &d.Machine
	rt, err := parseCount(it.ResourceType)
	if err != nil {
		m.Warnf("item %q has ResourceType %q, not a CIM number: ignored", it.label(), truncate(it.ResourceType, 20))
		return nil
	}
	switch rt {
	case resourceCPU:
		n, err := quantity(it, "CPU")
		if err != nil || n == 0 {
			return err
		}
		if n > MaxCPUs {
			return invalidf("OVF descriptor: CPU item %q VirtualQuantity %d: more than %d CPUs", it.label(), n, MaxCPUs)
		}
		m.CPUs = int(n)
	case resourceMemory:
		n, err := quantity(it, "memory")
		if err != nil || n == 0 {
			return err
		}
		unit := int64(1 << 20)
		if it.AllocationUnits == "" {
			m.Warnf("memory item %q states no AllocationUnits: read as MiB", it.label())
		} else if unit, err = unitBytes(it.AllocationUnits); err != nil {
			return invalidf("OVF descriptor: memory item %q AllocationUnits: %w", it.label(), err)
		}
		if m.Memory, err = scaled(n, unit, MaxMemory); err != nil {
			return invalidf("OVF descriptor: memory item %q: %w (16 TiB)", it.label(), err)
		}
	case resourceIDE, resourceSCSI, resourceOtherStorage:
		// Controllers only carry the disks; polyvisor picks its own.
	case resourceDisk:
		return readDiskItem(d, disks, attached, it)
	case resourceEthernet:
		readNIC(m, it)
	default:
		kind, ok := deviceKinds[rt]
		if !ok {
			kind = "device"
		}
		m.Warnf("%s %q (ResourceType %d) is not imported", kind, it.label(), rt)
	}
	return nil
}

// quantity reads an item's VirtualQuantity; 0 when absent.
func quantity(it xmlElement, what string) (int64, error) {
	n, err := parseCount(it.VirtualQuantity)
	if errors.Is(err, errNotStated) {
		return 0, nil
	}
	if err != nil {
		return 0, invalidf("OVF descriptor: %s item %q VirtualQuantity: %w", what, it.label(), err)
	}
	return n, nil
}

// readDiskItem attaches the disk an item's HostResource names:
// ovf:/disk/ID (a DiskSection entry) or ovf:/file/ID (a file as is).
// OVF 2.0 exports by VirtualBox drop the "ovf:" prefix.
func readDiskItem(d *Descriptor, disks map[string]sectionDisk, attached map[string]bool, it xmlElement) error {
	m := &d.Machine
	ref := ""
	if len(it.HostResource) > 0 {
		ref = strings.TrimSpace(it.HostResource[0])
	}
	if ref == "" {
		m.Warnf("disk drive %q has no HostResource (an empty drive): not imported", it.label())
		return nil
	}
	path := strings.TrimPrefix(ref, "ovf:")
	if id, ok := strings.CutPrefix(path, "/disk/"); ok {
		disk, ok := disks[id]
		if !ok {
			return invalidf("OVF descriptor: disk drive %q HostResource %q names no Disk of the DiskSection", it.label(), truncate(ref, 80))
		}
		if attached[id] {
			return invalidf("OVF descriptor: Disk %q is attached twice (again by item %q)", truncate(id, 60), it.label())
		}
		attached[id] = true
		m.Disks = append(m.Disks, vmdef.Disk{Path: disk.path, Format: disk.format, Capacity: disk.capacity})
		return nil
	}
	if id, ok := strings.CutPrefix(path, "/file/"); ok {
		f, ok := d.fileByID(id)
		if !ok {
			return invalidf("OVF descriptor: disk drive %q HostResource %q names no File of References", it.label(), truncate(ref, 80))
		}
		m.Disks = append(m.Disks, vmdef.Disk{Path: f.Href})
		return nil
	}
	return invalidf("OVF descriptor: disk drive %q HostResource %q: expected ovf:/disk/ID", it.label(), truncate(ref, 80))
}

// readNIC maps an Ethernet adapter item.
func readNIC(m *vmdef.Machine, it xmlElement) {
	nic := vmdef.NIC{Model: truncate(strings.ToLower(strings.TrimSpace(it.ResourceSubType)), 40)}
	if len(it.Connection) > 0 {
		nic.Network = truncate(strings.TrimSpace(it.Connection[0]), 200)
	}
	if a := strings.TrimSpace(it.Address); a != "" {
		mac, err := vmdef.CanonicalMAC(truncate(a, 40))
		if err != nil {
			m.Warnf("network adapter %q: %v: a new address will be generated", it.label(), err)
		}
		nic.MAC = mac
	}
	m.NICs = append(m.NICs, nic)
}

// readConfig reads the VMware vmw:Config keys that change the guest.
func readConfig(m *vmdef.Machine, c xmlElement) {
	switch strings.ToLower(c.Key) {
	case "firmware":
		switch strings.ToLower(c.Value) {
		case "efi":
			m.Firmware = vmdef.FirmwareUEFI
		case "bios":
			if m.Firmware == "" {
				m.Firmware = vmdef.FirmwareBIOS
			}
		}
	case "bootoptions.efisecurebootenabled", "uefi.secureboot.enabled":
		if strings.EqualFold(c.Value, "true") {
			m.Warnf("UEFI secure boot (%s) is not carried over", c.Key)
		}
	}
}
