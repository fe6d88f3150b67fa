package vmdef

import (
	"encoding/xml"
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// vboxNamespace is the namespace of every .vbox file's root element.
const vboxNamespace = "http://www.virtualbox.org/"

// The subset of a .vbox file read here. Elements that VirtualBox moved
// between versions are read from both places: StorageControllers sits in
// Machine up to VirtualBox 6.0 and in Hardware after; the CPU count moved
// into Platform with 7.1.
type vboxFile struct {
	XMLName xml.Name
	Machine *vboxMachine `xml:"Machine"`
}

type vboxMachine struct {
	Name        string            `xml:"name,attr"`
	OSType      string            `xml:"OSType,attr"`
	Media       vboxMediaRegistry `xml:"MediaRegistry"`
	Hardware    vboxHardware      `xml:"Hardware"`
	Platform    vboxPlatform      `xml:"Platform"`
	Controllers []vboxController  `xml:"StorageControllers>StorageController"`
	Snapshots   []vboxSnapshot    `xml:"Snapshot"`
}

type vboxMediaRegistry struct {
	HardDisks []vboxHardDisk `xml:"HardDisks>HardDisk"`
	DVDs      []vboxImage    `xml:"DVDImages>Image"`
	Floppies  []vboxImage    `xml:"FloppyImages>Image"`
}

// vboxHardDisk is a registered disk image; the ones nested in it are
// differencing images (snapshots) on top of it.
type vboxHardDisk struct {
	UUID     string         `xml:"uuid,attr"`
	Location string         `xml:"location,attr"`
	Format   string         `xml:"format,attr"`
	Children []vboxHardDisk `xml:"HardDisk"`
}

type vboxImage struct {
	UUID     string `xml:"uuid,attr"`
	Location string `xml:"location,attr"`
}

type vboxHardware struct {
	CPU struct {
		Count string `xml:"count,attr"`
	} `xml:"CPU"`
	Memory struct {
		RAMSize string `xml:"RAMSize,attr"`
	} `xml:"Memory"`
	Firmware struct {
		Type string `xml:"type,attr"`
	} `xml:"Firmware"`
	Platform       vboxPlatform `xml:"Platform"`
	USBControllers []struct {
		Name string `xml:"name,attr"`
		Type string `xml:"type,attr"`
	} `xml:"USB>Controllers>Controller"`
	// USBController is the form before VirtualBox 4.3.
	USBController struct {
		Enabled string `xml:"enabled,attr"`
	} `xml:"USBController"`
	Adapters []vboxAdapter `xml:"Network>Adapter"`
	Audio    struct {
		Enabled    string `xml:"enabled,attr"`
		Controller string `xml:"controller,attr"`
	} `xml:"AudioAdapter"`
	SharedFolders []struct {
		Name     string `xml:"name,attr"`
		HostPath string `xml:"hostPath,attr"`
	} `xml:"SharedFolders>SharedFolder"`
	SerialPorts []vboxPort       `xml:"UART>Port"`
	LPTPorts    []vboxPort       `xml:"LPT>Port"`
	Controllers []vboxController `xml:"StorageControllers>StorageController"`
}

type vboxPlatform struct {
	Architecture string `xml:"architecture,attr"`
	CPU          struct {
		Count string `xml:"count,attr"`
	} `xml:"CPU"`
}

type vboxPort struct {
	Slot    string `xml:"slot,attr"`
	Enabled string `xml:"enabled,attr"`
}

// vboxAdapter is a NIC. Its attachment is the one child element that
// names a network; the same names inside DisabledModes are the
// attachments it is not using, and are not read.
type vboxAdapter struct {
	Slot       string     `xml:"slot,attr"`
	Enabled    string     `xml:"enabled,attr"`
	MACAddress string     `xml:"MACAddress,attr"`
	Type       string     `xml:"type,attr"`
	NAT        *struct{}  `xml:"NAT"`
	Bridged    *vboxNamed `xml:"BridgedInterface"`
	Internal   *vboxNamed `xml:"InternalNetwork"`
	HostOnly   *vboxNamed `xml:"HostOnlyInterface"`
	NATNetwork *vboxNamed `xml:"NATNetwork"`
	HostOnlyNW *vboxNamed `xml:"HostOnlyNetwork"`
	Generic    *struct {
		Driver string `xml:"driver,attr"`
	} `xml:"GenericInterface"`
}

type vboxNamed struct {
	Name string `xml:"name,attr"`
}

type vboxController struct {
	Name     string               `xml:"name,attr"`
	Attached []vboxAttachedDevice `xml:"AttachedDevice"`
}

type vboxAttachedDevice struct {
	Type   string `xml:"type,attr"`
	Port   string `xml:"port,attr"`
	Device string `xml:"device,attr"`
	Image  *struct {
		UUID string `xml:"uuid,attr"`
	} `xml:"Image"`
	HostDrive *struct {
		Src string `xml:"src,attr"`
	} `xml:"HostDrive"`
}

type vboxSnapshot struct {
	Name     string         `xml:"name,attr"`
	Children []vboxSnapshot `xml:"Snapshots>Snapshot"`
}

// vboxMedium is a registry entry found by UUID; parent is nil for a base
// image.
type vboxMedium struct {
	location, format string
	parent           *vboxMedium
}

// ParseVBox reads a VirtualBox .vbox machine definition. Disks are the
// attached hard disks, looked up in the file's own media registry;
// snapshots, DVDs, audio, USB and shared folders become warnings.
func ParseVBox(data []byte) (*Machine, error) {
	var f vboxFile
	if err := DecodeXML(data, "vbox", &f); err != nil {
		return nil, err
	}
	if f.XMLName.Space != vboxNamespace || f.XMLName.Local != "VirtualBox" {
		return nil, fmt.Errorf("vbox: the root element is <%.40s>, not VirtualBox's <VirtualBox xmlns=%q>", f.XMLName.Local, vboxNamespace)
	}
	if f.Machine == nil {
		return nil, fmt.Errorf("vbox: no <Machine> element: this is not a machine's .vbox file (VirtualBox.xml is the global registry)")
	}
	vm, hw := f.Machine, &f.Machine.Hardware
	m := &Machine{Source: "vbox", Name: vm.Name, OS: vm.OSType, OSFamily: OSFamilyOf(vm.OSType)}

	// VirtualBox writes the CPU count only when it is not its default, 1.
	m.CPUs = 1
	if count := firstNonEmpty(hw.CPU.Count, hw.Platform.CPU.Count, vm.Platform.CPU.Count); count != "" {
		var err error
		if m.CPUs, err = parseCPUs("vbox", "Hardware/CPU count", count); err != nil {
			return nil, err
		}
	}
	if hw.Memory.RAMSize != "" {
		var err error
		if m.Memory, err = parseMemory("vbox", "Hardware/Memory RAMSize", hw.Memory.RAMSize, mib); err != nil {
			return nil, err
		}
	}
	switch fw := strings.ToUpper(hw.Firmware.Type); {
	case strings.HasPrefix(fw, "EFI"):
		m.Firmware = FirmwareUEFI
	case fw == "BIOS":
		m.Firmware = FirmwareBIOS
	case fw != "":
		m.Warnf("Firmware type %s is not one polyvisor knows (BIOS, EFI); BIOS is assumed", clip(hw.Firmware.Type))
	}
	m.Arch = vboxArch(firstNonEmpty(hw.Platform.Architecture, vm.Platform.Architecture), vm.OSType)

	vboxDisks(vm, m)
	if err := vboxNICs(hw.Adapters, m); err != nil {
		return nil, err
	}
	vboxOtherDevices(hw, m)
	switch n := countSnapshots(vm.Snapshots); {
	case n == 1:
		m.Warnf("snapshot %s is not imported: only the current state is", clip(vm.Snapshots[0].Name))
	case n > 1:
		m.Warnf("%d snapshots (the first %s) are not imported: only the current state is", n, clip(vm.Snapshots[0].Name))
	}
	return m, nil
}

// vboxArch reads VirtualBox 7.1's Platform architecture, or, before it,
// the _arm64 suffix of the OS type. Before 7.1 every guest is x86, which the
// file does not say.
func vboxArch(platform, osType string) string {
	switch strings.ToLower(platform) {
	case "arm":
		return "aarch64"
	case "x86":
		return "x86_64"
	}
	if strings.HasSuffix(strings.ToLower(osType), "_arm64") {
		return "aarch64"
	}
	return ""
}

// vboxRegistry indexes the media registry by UUID, braces and case
// dropped.
func vboxRegistry(disks []vboxHardDisk, parent *vboxMedium, into map[string]*vboxMedium) {
	for _, d := range disks {
		format := d.Format
		if format == "" && parent != nil {
			format = parent.format // a differencing image has its base's format
		}
		medium := &vboxMedium{location: d.Location, format: format, parent: parent}
		into[vboxUUID(d.UUID)] = medium
		vboxRegistry(d.Children, medium, into)
	}
}

func vboxUUID(s string) string {
	return strings.ToLower(strings.Trim(strings.TrimSpace(s), "{}"))
}

func vboxDisks(vm *vboxMachine, m *Machine) {
	disks := map[string]*vboxMedium{}
	vboxRegistry(vm.Media.HardDisks, nil, disks)
	images := map[string]string{}
	for _, img := range append(append([]vboxImage(nil), vm.Media.DVDs...), vm.Media.Floppies...) {
		images[vboxUUID(img.UUID)] = img.Location
	}
	controllers := append(append([]vboxController(nil), vm.Controllers...), vm.Hardware.Controllers...)
	for _, c := range controllers {
		attached := append([]vboxAttachedDevice(nil), c.Attached...)
		sort.SliceStable(attached, func(i, j int) bool {
			pi, _ := strconv.Atoi(attached[i].Port)
			pj, _ := strconv.Atoi(attached[j].Port)
			if pi != pj {
				return pi < pj
			}
			di, _ := strconv.Atoi(attached[i].Device)
			dj, _ := strconv.Atoi(attached[j].Device)
			return di < dj
		})
		for _, a := range attached {
			where := fmt.Sprintf("%s port %s device %s", clip(c.Name), orZero(a.Port), orZero(a.Device))
			uuid := ""
			if a.Image != nil {
				uuid = vboxUUID(a.Image.UUID)
			}
			switch a.Type {
			case "HardDisk":
				vboxDisk(disks[uuid], uuid, where, m)
			case "DVD", "Floppy":
				what := "empty"
				switch {
				case a.Image != nil:
					what = orEmpty(images[uuid])
				case a.HostDrive != nil:
					what = "host drive " + clip(a.HostDrive.Src)
				}
				m.Warnf("%s drive on %s (%s) is not imported", a.Type, where, what)
			default:
				m.Warnf("device of type %s on %s is not imported", clip(a.Type), where)
			}
		}
	}
}

// vboxDisk maps one attached hard disk. A differencing image is mapped as
// it is, the current state, with a warning: its data needs the whole chain
// below it, which polyvisor does not assemble, so the conversion of it
// fails rather than quietly importing the older base.
func vboxDisk(medium *vboxMedium, uuid, where string, m *Machine) {
	switch {
	case medium == nil:
		m.Warnf("hard disk on %s is medium {%s}, which is not in this file's media registry (an old machine keeps it in VirtualBox.xml); not imported", where, uuid)
		m.Disks = append(m.Disks, Disk{Path: "{" + uuid + "}", Device: DeviceUnregistered})
	case strings.EqualFold(medium.format, "iSCSI"):
		m.Warnf("hard disk on %s is the iSCSI target %s and cannot be imported; copy it into an image file first", where, clip(medium.location))
		m.Disks = append(m.Disks, Disk{Path: firstNonEmpty(medium.location, "unnamed"), Device: DeviceNetwork})
	case medium.location == "":
		m.Warnf("hard disk on %s has no location; not imported", where)
	default:
		m.Disks = append(m.Disks, Disk{Path: medium.location, Format: strings.ToLower(medium.format)})
		if medium.parent == nil {
			return
		}
		base := medium.parent
		for base.parent != nil {
			base = base.parent
		}
		m.Warnf("disk %s is a differencing image (a snapshot) on top of %s: polyvisor cannot follow the chain; merge it first (VBoxManage clonemedium disk %s merged.vdi) and import the merged image",
			clip(medium.location), clip(base.location), clip(medium.location))
	}
}

// orZero is a slot, port or device number for a message; VirtualBox
// leaves out 0.
func orZero(s string) string {
	if s == "" {
		return "0"
	}
	if _, err := strconv.ParseUint(s, 10, 16); err == nil {
		return s
	}
	return clip(s)
}

func vboxNICs(adapters []vboxAdapter, m *Machine) error {
	enabled := make([]vboxAdapter, 0, len(adapters))
	for _, a := range adapters {
		if a.Enabled == "true" {
			enabled = append(enabled, a)
		}
	}
	sort.SliceStable(enabled, func(i, j int) bool {
		si, _ := strconv.Atoi(enabled[i].Slot)
		sj, _ := strconv.Atoi(enabled[j].Slot)
		return si < sj
	})
	for _, a := range enabled {
		nic := NIC{Model: a.Type, Network: vboxNetwork(a)}
		if a.MACAddress != "" {
			mac, err := CanonicalMAC(a.MACAddress)
			if err != nil {
				return fmt.Errorf("vbox: network adapter in slot %s: %w; correct MACAddress, or delete it to get a new one", orZero(a.Slot), err)
			}
			nic.MAC = mac
		}
		m.NICs = append(m.NICs, nic)
	}
	return nil
}

// vboxNetwork names what an adapter is attached to: the named network or
// host interface, or "NAT"; "" when it is not attached.
func vboxNetwork(a vboxAdapter) string {
	for _, n := range []*vboxNamed{a.Bridged, a.Internal, a.HostOnly, a.NATNetwork, a.HostOnlyNW} {
		if n != nil {
			return n.Name
		}
	}
	switch {
	case a.NAT != nil:
		return "NAT"
	case a.Generic != nil:
		return a.Generic.Driver
	}
	return ""
}

func vboxOtherDevices(hw *vboxHardware, m *Machine) {
	if hw.Audio.Enabled == "true" {
		m.Warnf("audio adapter (%s) is not imported", orUnstated(hw.Audio.Controller))
	}
	var usb []string
	for _, c := range hw.USBControllers {
		usb = append(usb, firstNonEmpty(c.Type, c.Name))
	}
	if hw.USBController.Enabled == "true" {
		usb = append(usb, "OHCI")
	}
	if len(usb) > 0 {
		m.Warnf("USB controllers (%s) are not imported", strings.Join(usb, ", "))
	}
	for _, s := range hw.SharedFolders {
		m.Warnf("shared folder %s (host path %s) is not imported", clip(s.Name), clip(s.HostPath))
	}
	for _, p := range hw.SerialPorts {
		if p.Enabled == "true" {
			m.Warnf("serial port %s is not imported", orZero(p.Slot))
		}
	}
	for _, p := range hw.LPTPorts {
		if p.Enabled == "true" {
			m.Warnf("parallel port %s is not imported", orZero(p.Slot))
		}
	}
}

func countSnapshots(snapshots []vboxSnapshot) int {
	n := len(snapshots)
	for _, s := range snapshots {
		n += countSnapshots(s.Children)
	}
	return n
}
