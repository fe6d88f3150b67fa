package vmdef

import (
	"encoding/xml"
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// The subset of a libvirt domain XML read here.
type libvirtDomain struct {
	XMLName    xml.Name
	Type       string         `xml:"type,attr"`
	Name       string         `xml:"name"`
	Memory     *libvirtAmount `xml:"memory"`
	VCPU       *string        `xml:"vcpu"`
	OS         libvirtOS      `xml:"os"`
	Bootloader string         `xml:"bootloader"`
	// OSInfo is what virt-install and virt-manager record of the guest OS.
	OSInfo struct {
		ID string `xml:"id,attr"`
	} `xml:"metadata>libosinfo>os"`
	Devices libvirtDevices `xml:"devices"`
}

type libvirtAmount struct {
	Unit  string `xml:"unit,attr"`
	Value string `xml:",chardata"`
}

type libvirtOS struct {
	Firmware string `xml:"firmware,attr"`
	Type     struct {
		Arch  string `xml:"arch,attr"`
		Value string `xml:",chardata"`
	} `xml:"type"`
	Loader *struct {
		Type   string `xml:"type,attr"`
		Secure string `xml:"secure,attr"`
		Path   string `xml:",chardata"`
	} `xml:"loader"`
	NVRAM    *string `xml:"nvram"`
	Kernel   string  `xml:"kernel"`
	Features []struct {
		Name    string `xml:"name,attr"`
		Enabled string `xml:"enabled,attr"`
	} `xml:"firmware>feature"`
}

type libvirtDevices struct {
	Disks      []libvirtDisk      `xml:"disk"`
	Interfaces []libvirtInterface `xml:"interface"`
	Serials    []libvirtDevice    `xml:"serial"`
	Redirdevs  []libvirtDevice    `xml:"redirdev"`
	Other      []libvirtDevice    `xml:",any"`
}

// libvirtDevice is any other device: its element name and the attributes
// that say what kind it is.
type libvirtDevice struct {
	XMLName xml.Name
	Type    string `xml:"type,attr"`
	Model   string `xml:"model,attr"`
}

type libvirtDisk struct {
	Type   string `xml:"type,attr"`
	Device string `xml:"device,attr"`
	Driver struct {
		Type string `xml:"type,attr"`
	} `xml:"driver"`
	Source struct {
		File     string `xml:"file,attr"`
		Dev      string `xml:"dev,attr"`
		Dir      string `xml:"dir,attr"`
		Protocol string `xml:"protocol,attr"`
		Name     string `xml:"name,attr"`
		Pool     string `xml:"pool,attr"`
		Volume   string `xml:"volume,attr"`
		Hosts    []struct {
			Name string `xml:"name,attr"`
			Port string `xml:"port,attr"`
		} `xml:"host"`
	} `xml:"source"`
	Target struct {
		Dev string `xml:"dev,attr"`
	} `xml:"target"`
	Boot *struct {
		Order string `xml:"order,attr"`
	} `xml:"boot"`
}

type libvirtInterface struct {
	Type string `xml:"type,attr"`
	MAC  struct {
		Address string `xml:"address,attr"`
	} `xml:"mac"`
	Source struct {
		Network string `xml:"network,attr"`
		Bridge  string `xml:"bridge,attr"`
		Dev     string `xml:"dev,attr"`
	} `xml:"source"`
	Model struct {
		Type string `xml:"type,attr"`
	} `xml:"model"`
}

// ParseLibvirt reads a libvirt domain XML (virsh dumpxml, or a file under
// /etc/libvirt/qemu). Disks are the file-backed hard disks; host block
// devices, remote disks, CD-ROMs and pass-through devices become warnings.
func ParseLibvirt(data []byte) (*Machine, error) {
	var d libvirtDomain
	if err := DecodeXML(data, "libvirt", &d); err != nil {
		return nil, err
	}
	if d.XMLName.Local != "domain" {
		return nil, fmt.Errorf("libvirt: the root element is <%.40s>, not <domain>", d.XMLName.Local)
	}
	if d.Type == "lxc" || d.Type == "openvz" || strings.TrimSpace(d.OS.Type.Value) == "exe" {
		return nil, fmt.Errorf("libvirt: domain type %s is a container, not a virtual machine; import its root filesystem as a container instead", clip(d.Type))
	}
	m := &Machine{Source: "libvirt", Name: strings.TrimSpace(d.Name), Arch: d.OS.Type.Arch}
	var err error
	if d.VCPU != nil {
		if m.CPUs, err = parseCPUs("libvirt", "<vcpu>", *d.VCPU); err != nil {
			return nil, err
		}
	}
	if d.Memory != nil {
		unit, ok := libvirtUnit(d.Memory.Unit)
		if !ok {
			return nil, fmt.Errorf("libvirt: <memory unit=%s>: not a unit libvirt knows; use KiB, MiB or GiB", clip(d.Memory.Unit))
		}
		if m.Memory, err = parseMemory("libvirt", "<memory>", d.Memory.Value, unit); err != nil {
			return nil, err
		}
	}
	if id := d.OSInfo.ID; id != "" {
		m.OS, m.OSFamily = id, OSFamilyOf(id)
	}
	libvirtFirmware(&d, m)
	libvirtDisks(d.Devices.Disks, m)
	if err := libvirtNICs(d.Devices.Interfaces, m); err != nil {
		return nil, err
	}
	libvirtOtherDevices(&d.Devices, m)
	return m, nil
}

// libvirtUnit is the size in bytes of a libvirt memory unit: the SI ones
// (KB, MB) are powers of 1000, the others powers of 1024. KiB when absent.
func libvirtUnit(unit string) (int64, bool) {
	switch strings.ToLower(strings.TrimSpace(unit)) {
	case "b", "bytes":
		return 1, true
	case "kb":
		return 1000, true
	case "", "k", "kib":
		return 1 << 10, true
	case "mb":
		return 1000 * 1000, true
	case "m", "mib":
		return 1 << 20, true
	case "gb":
		return 1000 * 1000 * 1000, true
	case "g", "gib":
		return 1 << 30, true
	case "tb":
		return 1000 * 1000 * 1000 * 1000, true
	case "t", "tib":
		return 1 << 40, true
	}
	return 0, false
}

func libvirtFirmware(d *libvirtDomain, m *Machine) {
	loader := d.OS.Loader
	switch {
	case d.OS.Firmware == "efi":
		m.Firmware = FirmwareUEFI
	case d.OS.Firmware == "bios":
		m.Firmware = FirmwareBIOS
	case loader != nil && (loader.Type == "pflash" || looksUEFI(loader.Path)):
		// A pflash loader is UEFI (OVMF, AAVMF) in practice; older
		// domains load OVMF as a ROM, recognisable by its file name.
		m.Firmware = FirmwareUEFI
	}
	secure := loader != nil && loader.Secure == "yes"
	for _, f := range d.OS.Features {
		secure = secure || (f.Name == "secure-boot" && f.Enabled == "yes")
	}
	if secure {
		m.Warnf("UEFI Secure Boot is enabled in the source; polyvisor does not carry that setting")
	}
	if d.OS.NVRAM != nil && m.Firmware == FirmwareUEFI {
		m.Warnf("UEFI variables (nvram %s) are not imported: the guest's boot entries are lost and it boots through the removable-media path", orUnstated(strings.TrimSpace(*d.OS.NVRAM)))
	}
	pv := d.Type == "xen" && strings.TrimSpace(d.OS.Type.Value) != "hvm"
	switch kernel := strings.TrimSpace(d.OS.Kernel); {
	case pv || d.Bootloader != "":
		m.Warnf("Xen PV guest (bootloader %s, kernel %s): that boot arrangement is not mapped; the disk will be booted by firmware and needs a bootloader installed in it",
			orUnstated(strings.TrimSpace(d.Bootloader)), orUnstated(kernel))
	case kernel != "":
		m.Warnf("direct kernel boot (kernel %s) is not imported; the disk will be booted by firmware and needs a bootloader installed in it", clip(kernel))
	}
}

func looksUEFI(path string) bool {
	p := strings.ToLower(path)
	return strings.Contains(p, "ovmf") || strings.Contains(p, "aavmf") || strings.Contains(p, "edk2") || strings.Contains(p, "uefi")
}

func libvirtDisks(disks []libvirtDisk, m *Machine) {
	// The disks with a <boot order> come first, in that order; the rest
	// keep the file's order.
	order := func(d libvirtDisk) int {
		if d.Boot != nil {
			if n, err := strconv.Atoi(d.Boot.Order); err == nil && n > 0 {
				return n
			}
		}
		return int(^uint(0) >> 1)
	}
	sorted := append([]libvirtDisk(nil), disks...)
	sort.SliceStable(sorted, func(i, j int) bool { return order(sorted[i]) < order(sorted[j]) })
	for _, d := range sorted {
		target := orUnstated(d.Target.Dev)
		switch device := firstNonEmpty(d.Device, "disk"); device {
		case "disk":
		case "cdrom", "floppy":
			m.Warnf("%s %s (%s) is not imported", device, target, orEmpty(firstNonEmpty(d.Source.File, d.Source.Dev)))
			continue
		default: // lun: SCSI commands passed through to a host device
			m.Warnf("disk %s is a host device passed through as a %s and cannot be imported", target, clip(device))
			m.Disks = append(m.Disks, Disk{Path: firstNonEmpty(d.Source.Dev, d.Source.File, d.Source.Name, d.Target.Dev, "unnamed"), Device: DeviceLUN})
			continue
		}
		switch typ := firstNonEmpty(d.Type, "file"); typ {
		case "file":
			if d.Source.File == "" {
				m.Warnf("disk %s names no source file; not imported", target)
				continue
			}
			m.Disks = append(m.Disks, Disk{Path: d.Source.File, Format: libvirtFormat(d.Driver.Type)})
		case "block":
			m.Warnf("disk %s is the host block device %s and cannot be imported; copy it into an image file first (qemu-img convert)", target, clip(d.Source.Dev))
			m.Disks = append(m.Disks, Disk{Path: firstNonEmpty(d.Source.Dev, d.Target.Dev, "unnamed"), Device: DeviceBlock})
		case "network":
			m.Warnf("disk %s is the remote %s disk %s and cannot be imported; copy it into an image file first", target, orUnstated(d.Source.Protocol), clip(d.Source.Name))
			m.Disks = append(m.Disks, Disk{Path: libvirtNetworkDisk(d), Device: DeviceNetwork})
		case "volume":
			m.Warnf("disk %s is volume %s of storage pool %s and cannot be imported; find its file with virsh vol-path and attach that", target, clip(d.Source.Volume), clip(d.Source.Pool))
			m.Disks = append(m.Disks, Disk{Path: d.Source.Pool + "/" + d.Source.Volume, Device: DeviceVolume})
		default:
			m.Warnf("disk %s of type %s cannot be imported", target, clip(typ))
		}
	}
}

// libvirtNetworkDisk names a network disk as qemu-img's protocol syntax
// does (rbd:pool/image, iscsi://host/target/lun...), so that the command an
// import suggests can read it.
func libvirtNetworkDisk(d libvirtDisk) string {
	protocol := strings.ToLower(d.Source.Protocol)
	switch protocol {
	case "":
		return firstNonEmpty(d.Source.Name, "unnamed")
	case "rbd", "sheepdog":
		return protocol + ":" + d.Source.Name
	}
	host := "HOST"
	if len(d.Source.Hosts) > 0 && d.Source.Hosts[0].Name != "" {
		host = d.Source.Hosts[0].Name
		if d.Source.Hosts[0].Port != "" {
			host += ":" + d.Source.Hosts[0].Port
		}
	}
	return protocol + "://" + host + "/" + strings.TrimPrefix(d.Source.Name, "/")
}

// libvirtFormat maps libvirt's driver type to polyvisor's format names.
// libvirt does not probe an unstated format, it reads it as raw, and so does
// this: probing a raw image a guest wrote would let the guest pick its
// format.
func libvirtFormat(driverType string) string {
	switch f := strings.ToLower(driverType); f {
	case "", "iso":
		return "raw"
	case "vpc":
		return "vhd"
	default:
		return f
	}
}

func libvirtNICs(interfaces []libvirtInterface, m *Machine) error {
	for i, iface := range interfaces {
		var network string
		switch iface.Type {
		case "network":
			network = iface.Source.Network
		case "bridge":
			network = iface.Source.Bridge
		case "direct":
			network = iface.Source.Dev
		case "hostdev":
			m.Warnf("interface %d is a host network device passed through (SR-IOV) and is not imported", i+1)
			continue
		default: // user, ethernet, vhostuser...: the kind is all there is to say
			network = iface.Type
		}
		nic := NIC{Network: network, Model: iface.Model.Type}
		if iface.MAC.Address != "" {
			mac, err := CanonicalMAC(iface.MAC.Address)
			if err != nil {
				return fmt.Errorf("libvirt: interface %d (%s): %w; correct <mac address>, or delete it to get a new one", i+1, orUnstated(network), err)
			}
			nic.MAC = mac
		}
		m.NICs = append(m.NICs, nic)
	}
	return nil
}

// libvirtOtherDevices warns for the devices that give the guest hardware
// polyvisor does not carry. Not for all of them: polyvisor provides its own
// console, display, input, controllers and guest agent, so graphics,
// video, input, console, channel, controller, memballoon, rng, panic,
// audio, hub, vsock, the emulator and the watchdog (which libvirt adds to
// every q35 guest) are left out silently, as are a pty serial port (the
// console) and a spicevmc USB redirection (a feature of the SPICE client).
func libvirtOtherDevices(devices *libvirtDevices, m *Machine) {
	for _, s := range devices.Serials {
		if s.Type != "pty" {
			m.Warnf("serial port of type %s is not imported", orUnstated(s.Type))
		}
	}
	for _, r := range devices.Redirdevs {
		if r.Type != "spicevmc" {
			m.Warnf("USB redirection of type %s is not imported", orUnstated(r.Type))
		}
	}
	for _, d := range devices.Other {
		kind := orUnstated(firstNonEmpty(d.Model, d.Type))
		switch d.XMLName.Local {
		case "emulator", "controller", "input", "graphics", "video", "console", "channel",
			"memballoon", "rng", "panic", "audio", "hub", "vsock", "watchdog":
		case "sound":
			m.Warnf("sound card (%s) is not imported", kind)
		case "hostdev":
			m.Warnf("host device pass-through (%s) is not imported", kind)
		case "filesystem":
			m.Warnf("shared folder (filesystem of type %s) is not imported", kind)
		case "tpm":
			m.Warnf("TPM (%s) is not imported: secrets the guest sealed in it (BitLocker, LUKS with TPM) need their recovery key", kind)
		default:
			m.Warnf("device <%.40s> (%s) is not imported", d.XMLName.Local, kind)
		}
	}
}
