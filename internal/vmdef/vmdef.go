// Package vmdef is the vendor-neutral reading of another product's guest
// definition (OVF, VMware .vmx, VirtualBox .vbox, libvirt domain XML, Xen
// xl.cfg): what polyvisor can map, and a warning line for everything it
// cannot, so that nothing is dropped silently.
package vmdef

import (
	"fmt"
	"net"
	"strings"
)

// Firmware values a Machine can carry.
const (
	FirmwareBIOS = "bios"
	FirmwareUEFI = "uefi"
)

// OS families of a guest OS hint.
const (
	OSLinux   = "linux"
	OSWindows = "windows"
	OSOther   = "other"
)

// Machine is a guest definition read from another product's format.
type Machine struct {
	// Source names the format it was read from: ovf, vmx, vbox, libvirt, xl.
	Source string
	Name   string
	CPUs   int   // 0: not stated
	Memory int64 // bytes; 0: not stated
	// Firmware is FirmwareBIOS, FirmwareUEFI, or "" when not stated (BIOS,
	// the default of every format read here).
	Firmware string
	// OS is the guest OS hint as the source states it (e.g.
	// "debian10_64Guest", "Ubuntu_64", an OVF OperatingSystemSection id or
	// description); OSFamily is its family: OSLinux, OSWindows, OSOther or "".
	OS       string
	OSFamily string
	// Arch is the guest's CPU architecture in the kernel's naming (x86_64,
	// aarch64, i686) when the source states it, "" when it does not. The
	// parser cannot know the host; the importer compares the two.
	Arch string
	// Disks are the hard disks, boot disk first. CD-ROMs and floppies are
	// not disks: they become warnings.
	Disks []Disk
	NICs  []NIC
	// Warnings are one line each, naming what the source defines that the
	// Machine does not carry (sound cards, USB controllers, CD-ROMs, PCI
	// pass-through, unknown keys that change the guest...).
	Warnings []string
}

// Disk is one hard disk of a Machine.
type Disk struct {
	// Path is the disk file as the source names it: relative to the
	// definition's directory (or an OVA's member name), or absolute. The
	// caller decides whether to open it; parsers never do.
	Path string
	// Format is the image format the source declares (qcow2, raw, vmdk,
	// vdi, vhd, vhdx), or "" when it does not say.
	Format string
	// Capacity is the size the guest sees, in bytes; 0 when not stated.
	Capacity int64
	// Device says what the disk is when it is not an image file, and so
	// cannot be imported: DeviceBlock, DeviceNetwork... Path then names
	// the device, volume or network disk. Such disks are kept, not
	// dropped, so that disk N is still the definition's own disk N.
	// The parser's warning names the disk's slot.
	Device string
}

// Kinds of Disk.Device: disks that are not image files.
const (
	DeviceBlock   = "host block device"
	DeviceNetwork = "network disk"
	DeviceVolume  = "storage pool volume"
	DeviceRaw     = "raw device mapping"
	DeviceLUN     = "host device passed through"
	// DeviceUnregistered is a VirtualBox medium the .vbox attaches but does
	// not list: its file is unknown. Path is its {UUID}.
	DeviceUnregistered = "medium missing from the media registry"
)

// NIC is one network interface of a Machine.
type NIC struct {
	// MAC is the address the source gives, canonical lower-case
	// "aa:bb:cc:dd:ee:ff"; "" when the source generates one.
	MAC string
	// Network is the source's name for what it connects to (a bridge,
	// a port group, a libvirt network); informational.
	Network string
	// Model is the source's device model (e1000, vmxnet3, virtio...).
	Model string
}

// Warnf appends a warning line.
func (m *Machine) Warnf(format string, args ...any) {
	m.Warnings = append(m.Warnings, fmt.Sprintf(format, args...))
}

// CanonicalMAC returns s as a canonical lower-case colon-separated MAC, or
// an error naming it. VMware writes "00:50:56:...", VirtualBox
// "080027AABBCC", libvirt and xl "52:54:00:...".
func CanonicalMAC(s string) (string, error) {
	s = strings.TrimSpace(s)
	if len(s) == 12 && !strings.ContainsAny(s, ":-.") {
		s = s[0:2] + ":" + s[2:4] + ":" + s[4:6] + ":" + s[6:8] + ":" + s[8:10] + ":" + s[10:12]
	}
	hw, err := net.ParseMAC(s)
	if err != nil || len(hw) != 6 {
		return "", fmt.Errorf("MAC address %q: not a 6-byte Ethernet address", s)
	}
	if hw[0]&1 == 1 {
		return "", fmt.Errorf("MAC address %q: a multicast address cannot be a NIC's", s)
	}
	return hw.String(), nil
}

// OSFamilyOf guesses the family of a guest OS hint: "windows" for
// anything naming Windows, "linux" for the Linux distributions the vendors
// list, "other" for what is neither, "" for an empty hint.
func OSFamilyOf(hint string) string {
	h := strings.ToLower(hint)
	switch {
	case h == "":
		return ""
	case strings.Contains(h, "win"):
		return OSWindows
	}
	for _, l := range []string{"linux", "debian", "ubuntu", "rhel", "redhat", "centos", "fedora", "suse", "sles", "opensuse", "oracle", "arch", "gentoo", "mandriva", "turbolinux", "xandros", "alpine", "rocky", "alma", "coreos", "photon", "amazonlinux", "asianux", "miracle"} {
		if strings.Contains(h, l) {
			return OSLinux
		}
	}
	return OSOther
}
