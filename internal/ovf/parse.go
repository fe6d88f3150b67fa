package ovf

import (
	"encoding/xml"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/polyvisor/polyvisor/internal/vmdef"
)

// The descriptor as encoding/xml reads it. Tags carry no namespace, so an
// element or attribute matches by its local name under any prefix: OVF
// 1.x and 2.x put the same names in different namespaces, and vendors
// write both prefixed and default-namespace forms. Parse checks the
// Envelope's own namespace.
type (
	xmlEnvelope struct {
		XMLName           xml.Name
		Files             []xmlFile          `xml:"References>File"`
		Disks             []xmlDisk          `xml:"DiskSection>Disk"`
		DeploymentOptions []xmlConfiguration `xml:"DeploymentOptionSection>Configuration"`
		Systems           []xmlSystem        `xml:"VirtualSystem"`
		Collections       []xmlCollection    `xml:"VirtualSystemCollection"`
		Other             []xmlElement       `xml:",any"`
	}
	xmlFile struct {
		ID          string `xml:"id,attr"`
		Href        string `xml:"href,attr"`
		Size        string `xml:"size,attr"`
		Compression string `xml:"compression,attr"`
		ChunkSize   string `xml:"chunkSize,attr"`
	}
	xmlDisk struct {
		ID            string `xml:"diskId,attr"`
		FileRef       string `xml:"fileRef,attr"`
		Capacity      string `xml:"capacity,attr"`
		CapacityUnits string `xml:"capacityAllocationUnits,attr"`
		Format        string `xml:"format,attr"`
	}
	xmlConfiguration struct {
		ID      string `xml:"id,attr"`
		Default string `xml:"default,attr"`
	}
	xmlCollection struct {
		Systems     []xmlSystem     `xml:"VirtualSystem"`
		Collections []xmlCollection `xml:"VirtualSystemCollection"`
	}
	xmlSystem struct {
		ID       string        `xml:"id,attr"`
		Name     string        `xml:"Name"`
		OS       []xmlOS       `xml:"OperatingSystemSection"`
		Hardware []xmlHardware `xml:"VirtualHardwareSection"`
		VBox     []xmlVBox     `xml:"Machine"` // vbox:Machine
		Other    []xmlElement  `xml:",any"`
	}
	xmlOS struct {
		ID          string `xml:"id,attr"`
		OSType      string `xml:"osType,attr"` // vmw:osType
		Description string `xml:"Description"`
		VBoxOSType  string `xml:"OSType"` // vbox:OSType
	}
	xmlHardware struct {
		System struct {
			Type string `xml:"VirtualSystemType"`
		} `xml:"System"`
		// Children keeps Item, StorageItem, EthernetPortItem and vmw:Config
		// in document order: disk order is item order.
		Children []xmlElement `xml:",any"`
	}
	// xmlElement is any child of a section: a hardware item (rasd, sasd
	// and epasd share these local names), a vmw:Config or ExtraConfig
	// (key, value), or a section Parse does not know.
	xmlElement struct {
		XMLName         xml.Name
		Required        string   `xml:"required,attr"`
		Configuration   string   `xml:"configuration,attr"`
		Bound           string   `xml:"bound,attr"`
		Key             string   `xml:"key,attr"`
		Value           string   `xml:"value,attr"`
		Address         string   `xml:"Address"`
		AllocationUnits string   `xml:"AllocationUnits"`
		Caption         string   `xml:"Caption"`
		Connection      []string `xml:"Connection"`
		Description     string   `xml:"Description"`
		ElementName     string   `xml:"ElementName"`
		HostResource    []string `xml:"HostResource"`
		InstanceID      string   `xml:"InstanceID"`
		ResourceSubType string   `xml:"ResourceSubType"`
		ResourceType    string   `xml:"ResourceType"`
		VirtualQuantity string   `xml:"VirtualQuantity"`
	}
	xmlVBox struct {
		Firmware struct {
			Type string `xml:"type,attr"`
		} `xml:"Hardware>Firmware"`
		Adapters []struct {
			Enabled string `xml:"enabled,attr"`
			MAC     string `xml:"MACAddress,attr"`
		} `xml:"Hardware>Network>Adapter"`
	}
)

// knownSections are the children of an Envelope or VirtualSystem that
// Parse reads or that change nothing in the guest (licences, product
// text, start order, networks described by name only).
var knownSections = []string{
	"Info", "Name", "References", "DiskSection", "NetworkSection", "DeploymentOptionSection",
	"VirtualSystem", "VirtualSystemCollection", "OperatingSystemSection", "VirtualHardwareSection",
	"AnnotationSection", "ProductSection", "EulaSection", "StartupSection", "InstallSection",
	"ResourceAllocationSection", "Strings",
}

// Parse reads an OVF descriptor. The machine's disks name their files by
// href (a plain name, checked here); which of them exist, their sizes and
// digests are for ExtractOVA and OpenDir to check.
//
// One VirtualSystem is imported: a VirtualSystemCollection holding one is
// accepted, several are refused (export each VM as its own appliance).
func Parse(data []byte) (*Descriptor, error) {
	var env xmlEnvelope
	if err := vmdef.DecodeXML(data, "OVF descriptor", &env); err != nil {
		return nil, invalidf("%w", err)
	}
	if env.XMLName.Local != "Envelope" || (env.XMLName.Space != NamespaceOVF1 && env.XMLName.Space != NamespaceOVF2) {
		return nil, invalidf("OVF descriptor: the root element is <%s> in namespace %q; an OVF 1.x or 2.x descriptor is an Envelope in %s (OVF 0.9 is not read: re-export as OVF 1.0 or 2.0)",
			truncate(env.XMLName.Local, 40), truncate(env.XMLName.Space, 80), NamespaceOVF1)
	}
	d := &Descriptor{Machine: vmdef.Machine{Source: "ovf"}}
	m := &d.Machine
	if err := d.readFiles(env.Files); err != nil {
		return nil, err
	}
	disks, err := d.readDisks(env.Disks)
	if err != nil {
		return nil, err
	}
	sys, err := oneSystem(env)
	if err != nil {
		return nil, err
	}
	warnUnknown(m, env.Other)
	warnUnknown(m, sys.Other)

	m.Name = truncate(strings.TrimSpace(sys.Name), 255)
	if m.Name == "" {
		m.Name = truncate(strings.TrimSpace(sys.ID), 255)
	}
	readOS(m, sys.OS)
	if len(sys.Hardware) == 0 {
		return nil, invalidf("OVF descriptor: VirtualSystem %q has no VirtualHardwareSection: it describes no machine", truncate(sys.ID, 60))
	}
	if len(sys.Hardware) > 1 {
		m.Warnf("%d VirtualHardwareSections: the first (type %q) is used", len(sys.Hardware), truncate(sys.Hardware[0].System.Type, 40))
	}
	config := chooseConfiguration(m, env.DeploymentOptions)
	attached, err := readHardware(d, disks, applicable(sys.Hardware[0].Children, config))
	if err != nil {
		return nil, err
	}
	for _, vbox := range sys.VBox {
		readVBox(m, vbox)
	}
	for _, x := range env.Disks {
		if id := x.ID; !attached[id] {
			m.Warnf("disk %q of the DiskSection is attached to no item: not imported", truncate(id, 60))
		}
	}
	warnAbsent(m)
	return d, nil
}

// readFiles reads the References section.
func (d *Descriptor) readFiles(files []xmlFile) error {
	if len(files) > maxFiles {
		return invalidf("OVF descriptor: References lists %d files; an appliance has at most %d", len(files), maxFiles)
	}
	for _, f := range files {
		if err := checkPlainName(f.Href); err != nil {
			return invalidf("OVF descriptor: File %q href: %w", truncate(f.ID, 60), err)
		}
		if f.ID == "" {
			return invalidf("OVF descriptor: File %q has no ovf:id", f.Href)
		}
		if c := strings.ToLower(f.Compression); c != "" && c != "identity" {
			return invalidf("OVF descriptor: File %q is %s-compressed (ovf:compression): not supported; re-export the appliance without compression", f.Href, truncate(c, 20))
		}
		if f.ChunkSize != "" {
			return invalidf("OVF descriptor: File %q is split in chunks (ovf:chunkSize): not supported; re-export the appliance without chunking", f.Href)
		}
		size, err := parseCount(f.Size)
		switch {
		case errors.Is(err, errNotStated):
			size = -1
		case err != nil:
			return invalidf("OVF descriptor: File %q ovf:size: %w", f.Href, err)
		}
		for _, prev := range d.Files {
			if prev.ID == f.ID || prev.Href == f.Href {
				return invalidf("OVF descriptor: File %q (id %q) is listed twice in References", f.Href, truncate(f.ID, 60))
			}
		}
		d.Files = append(d.Files, File{ID: f.ID, Href: f.Href, Size: size})
	}
	return nil
}

// sectionDisk is a DiskSection entry, resolved: its file's href (or "",
// a blank disk the importer creates), format and capacity in bytes.
type sectionDisk struct {
	path, format string
	capacity     int64
}

// readDisks reads the DiskSection, keyed by diskId.
func (d *Descriptor) readDisks(list []xmlDisk) (map[string]sectionDisk, error) {
	disks := map[string]sectionDisk{}
	for _, x := range list {
		if x.ID == "" {
			return nil, invalidf("OVF descriptor: a Disk has no ovf:diskId")
		}
		if _, dup := disks[x.ID]; dup {
			return nil, invalidf("OVF descriptor: Disk %q is listed twice in DiskSection", truncate(x.ID, 60))
		}
		var disk sectionDisk
		if x.FileRef != "" {
			f, ok := d.fileByID(x.FileRef)
			if !ok {
				return nil, invalidf("OVF descriptor: Disk %q ovf:fileRef %q names no File of References", truncate(x.ID, 60), truncate(x.FileRef, 60))
			}
			for id, other := range disks {
				if other.path == f.Href {
					return nil, invalidf("OVF descriptor: Disks %q and %q use the same file %q", truncate(id, 60), truncate(x.ID, 60), f.Href)
				}
			}
			disk.path = f.Href
		}
		quantity, err := parseCount(x.Capacity)
		if err != nil {
			return nil, invalidf("OVF descriptor: Disk %q ovf:capacity: %w", truncate(x.ID, 60), err)
		}
		unit := int64(1)
		if x.CapacityUnits != "" {
			if unit, err = unitBytes(x.CapacityUnits); err != nil {
				return nil, invalidf("OVF descriptor: Disk %q ovf:capacityAllocationUnits: %w", truncate(x.ID, 60), err)
			}
		}
		if disk.capacity, err = scaled(quantity, unit, MaxCapacity); err != nil {
			return nil, invalidf("OVF descriptor: Disk %q capacity: %w", truncate(x.ID, 60), err)
		}
		disk.format = formatOfURI(x.Format)
		disks[x.ID] = disk
	}
	return disks, nil
}

// fileByID returns the References entry whose ovf:id is id.
func (d *Descriptor) fileByID(id string) (File, bool) {
	for _, f := range d.Files {
		if f.ID == id {
			return f, true
		}
	}
	return File{}, false
}

// formatOfURI maps a DiskSection ovf:format URI to a vmdef format name;
// "" when it names none polyvisor knows (the content decides then).
func formatOfURI(uri string) string {
	u := strings.ToLower(uri)
	switch {
	case u == "":
		return ""
	case strings.Contains(u, "vmdk"):
		return "vmdk" // http://www.vmware.com/interfaces/specifications/vmdk.html#streamOptimized
	case strings.Contains(u, "vhdx"):
		return "vhdx"
	case strings.Contains(u, "vhd") || strings.Contains(u, "bb676673"):
		return "vhd" // Microsoft's VHD specification page
	case strings.Contains(u, "qcow"):
		return "qcow2"
	case strings.Contains(u, "vdi"):
		return "vdi"
	case strings.Contains(u, "raw"):
		return "raw"
	}
	return ""
}

// oneSystem returns the one VirtualSystem, at the top or in collections.
func oneSystem(env xmlEnvelope) (xmlSystem, error) {
	systems := env.Systems
	var collect func([]xmlCollection)
	collect = func(cs []xmlCollection) {
		for _, c := range cs {
			systems = append(systems, c.Systems...)
			collect(c.Collections)
		}
	}
	collect(env.Collections)
	switch len(systems) {
	case 0:
		return xmlSystem{}, invalidf("OVF descriptor: no VirtualSystem: the appliance describes no machine")
	case 1:
		return systems[0], nil
	}
	var names []string
	for _, s := range systems {
		names = append(names, truncate(s.ID, 40))
	}
	return xmlSystem{}, invalidf("OVF descriptor: %d virtual systems (%s): polyvisor imports one machine; export each VM as its own appliance",
		len(systems), truncate(strings.Join(names, ", "), 200))
}

// warnUnknown warns of sections Parse does not read unless they say
// they may be ignored (ovf:required="false"; the default is true).
func warnUnknown(m *vmdef.Machine, others []xmlElement) {
	for _, o := range others {
		if o.Required == "false" || slices.Contains(knownSections, o.XMLName.Local) {
			continue
		}
		m.Warnf("section %s is required by the descriptor but not understood: ignored", truncate(o.XMLName.Local, 60))
	}
}

// cimOSNames names the CIM_OperatingSystem OsType numbers commonly found
// in OperatingSystemSection ovf:id, for descriptors that give no name.
var cimOSNames = map[string]string{
	"1": "Other", "36": "Linux", "79": "RedHat Enterprise Linux", "80": "RedHat Enterprise Linux 64-Bit",
	"93": "Ubuntu", "94": "Ubuntu 64-Bit", "95": "Debian", "96": "Debian 64-Bit",
	"99": "Linux 2.6.x", "100": "Linux 2.6.x 64-Bit", "101": "Linux 64-Bit", "102": "Other 64-Bit",
	"106": "CentOS 32-bit", "107": "CentOS 64-bit", "105": "Microsoft Windows 7", "103": "Microsoft Windows Server 2008 R2",
}

// readOS reads the OperatingSystemSection: the vendor's own type name
// when there is one (vmw:osType, vbox:OSType), else the description, else
// the CIM number's name.
func readOS(m *vmdef.Machine, sections []xmlOS) {
	if len(sections) == 0 {
		return
	}
	s := sections[0]
	for _, hint := range []string{s.OSType, s.VBoxOSType, s.Description, cimOSNames[strings.TrimSpace(s.ID)]} {
		if hint = strings.TrimSpace(hint); hint != "" {
			m.OS = truncate(hint, 200)
			break
		}
	}
	m.OSFamily = vmdef.OSFamilyOf(m.OS)
	// Fusion on Apple silicon names its guests arm-debian12-64, VirtualBox
	// Ubuntu_arm64; every other type is an x86 one, which OVF does not say.
	if strings.HasPrefix(strings.ToLower(s.OSType), "arm-") || strings.HasSuffix(strings.ToLower(s.VBoxOSType), "_arm64") {
		m.Arch = "aarch64"
	}
}

// chooseConfiguration picks the deployment option whose items apply:
// the one marked default, else the first.
func chooseConfiguration(m *vmdef.Machine, options []xmlConfiguration) string {
	if len(options) == 0 {
		return ""
	}
	chosen := options[0].ID
	for _, o := range options {
		if o.Default == "true" {
			chosen = o.ID
			break
		}
	}
	if len(options) > 1 {
		m.Warnf("deployment option %q used, the descriptor's default of %d", truncate(chosen, 60), len(options))
	}
	return chosen
}

// applicable drops the items of other deployment options and range
// bounds (ovf:bound min/max), and a general item that a chosen
// configuration's item with the same InstanceID overrides.
func applicable(children []xmlElement, config string) []xmlElement {
	overridden := map[string]bool{}
	for _, c := range children {
		if c.Configuration != "" && slices.Contains(strings.Fields(c.Configuration), config) {
			overridden[c.InstanceID] = true
		}
	}
	var out []xmlElement
	for _, c := range children {
		switch {
		case c.Bound == "min" || c.Bound == "max":
		case c.Configuration != "" && !slices.Contains(strings.Fields(c.Configuration), config):
		case c.Configuration == "" && c.InstanceID != "" && overridden[c.InstanceID]:
		default:
			out = append(out, c)
		}
	}
	return out
}

// warnAbsent warns of a CPU count or memory size the descriptor does not
// state (readItem refuses values out of bounds).
func warnAbsent(m *vmdef.Machine) {
	if m.CPUs == 0 {
		m.Warnf("no CPU count stated: the importer's default applies")
	}
	if m.Memory == 0 {
		m.Warnf("no memory size stated: the importer's default applies")
	}
}

// label names an item for a warning line: its ElementName as vendors
// show it, else its caption, description or instance id.
func (e xmlElement) label() string {
	for _, s := range []string{e.ElementName, e.Caption, e.Description} {
		if s = strings.TrimSpace(s); s != "" {
			return truncate(s, 80)
		}
	}
	return fmt.Sprintf("InstanceID %s", truncate(e.InstanceID, 20))
}

// readVBox reads what VirtualBox states only in its own vbox:Machine
// section: the firmware, and the NICs' MAC addresses (its Ethernet items
// carry none), matched in order when the enabled adapters are the NICs.
func readVBox(m *vmdef.Machine, vbox xmlVBox) {
	switch t := strings.ToUpper(vbox.Firmware.Type); {
	case strings.HasPrefix(t, "EFI"):
		m.Firmware = vmdef.FirmwareUEFI
	case t == "BIOS" && m.Firmware == "":
		m.Firmware = vmdef.FirmwareBIOS
	}
	var macs []string
	for _, a := range vbox.Adapters {
		if a.Enabled == "true" {
			macs = append(macs, a.MAC)
		}
	}
	if len(macs) != len(m.NICs) {
		return
	}
	for i := range m.NICs {
		if m.NICs[i].MAC != "" || macs[i] == "" {
			continue
		}
		if mac, err := vmdef.CanonicalMAC(truncate(macs[i], 40)); err == nil {
			m.NICs[i].MAC = mac
		}
	}
}
