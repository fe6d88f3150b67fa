package ovf

import (
	"encoding/xml"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/polyvisor/polyvisor/internal/vmdef"
)

// ExportSpec is the machine Write describes: one disk, its NICs.
type ExportSpec struct {
	Name     string
	CPUs     int
	Memory   int64  // bytes; written in MiB, rounded up
	Firmware string // vmdef.FirmwareBIOS, vmdef.FirmwareUEFI or "" (BIOS)
	// OSType is a VMware guest id (vmw:osType), e.g. "debian12_64Guest";
	// "" writes otherLinux64Guest.
	OSType string
	Disk   ExportDisk
	NICs   []vmdef.NIC
}

// ExportDisk is the disk file of an export: a streamOptimized VMDK.
type ExportDisk struct {
	Href     string // its plain name in the appliance
	FileSize int64  // the file's size in bytes (References ovf:size)
	Capacity int64  // the size the guest sees, in bytes
}

// The namespaces an OVF 1.0 envelope written by VMware's ovftool declares.
const (
	namespaceCIM  = "http://schemas.dmtf.org/wbem/wscim/1/common"
	namespaceRASD = "http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData"
	namespaceVSSD = "http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_VirtualSystemSettingData"
	namespaceVMW  = "http://www.vmware.com/schema/ovf"
	namespaceXSI  = "http://www.w3.org/2001/XMLSchema-instance"
)

// StreamOptimizedVMDK is the ovf:format of the disk Write declares.
const StreamOptimizedVMDK = "http://www.vmware.com/interfaces/specifications/vmdk.html#streamOptimized"

// The envelope as Write emits it. encoding/xml writes a tag's name as
// given, so the prefixes are spelled out as ovftool writes them; the
// rasd elements of an Item follow the CIM schema's alphabetical sequence,
// which strict importers validate.
type (
	outEnvelope struct {
		XMLName        xml.Name       `xml:"Envelope"`
		Version        string         `xml:"ovf:version,attr"`
		Xmlns          string         `xml:"xmlns,attr"`
		XmlnsCIM       string         `xml:"xmlns:cim,attr"`
		XmlnsOVF       string         `xml:"xmlns:ovf,attr"`
		XmlnsRASD      string         `xml:"xmlns:rasd,attr"`
		XmlnsVMW       string         `xml:"xmlns:vmw,attr"`
		XmlnsVSSD      string         `xml:"xmlns:vssd,attr"`
		XmlnsXSI       string         `xml:"xmlns:xsi,attr"`
		Files          []outFile      `xml:"References>File"`
		DiskSection    outDiskSection `xml:"DiskSection"`
		NetworkSection *outNetworks   `xml:"NetworkSection,omitempty"`
		VirtualSystem  outSystem      `xml:"VirtualSystem"`
	}
	outFile struct {
		Href string `xml:"ovf:href,attr"`
		ID   string `xml:"ovf:id,attr"`
		Size int64  `xml:"ovf:size,attr"`
	}
	outDiskSection struct {
		Info  string    `xml:"Info"`
		Disks []outDisk `xml:"Disk"`
	}
	outDisk struct {
		Capacity      int64  `xml:"ovf:capacity,attr"`
		CapacityUnits string `xml:"ovf:capacityAllocationUnits,attr"`
		DiskID        string `xml:"ovf:diskId,attr"`
		FileRef       string `xml:"ovf:fileRef,attr"`
		Format        string `xml:"ovf:format,attr"`
	}
	outNetworks struct {
		Info     string       `xml:"Info"`
		Networks []outNetwork `xml:"Network"`
	}
	outNetwork struct {
		Name        string `xml:"ovf:name,attr"`
		Description string `xml:"Description"`
	}
	outSystem struct {
		ID       string      `xml:"ovf:id,attr"`
		Info     string      `xml:"Info"`
		Name     string      `xml:"Name"`
		OS       outOS       `xml:"OperatingSystemSection"`
		Hardware outHardware `xml:"VirtualHardwareSection"`
	}
	outOS struct {
		ID          int    `xml:"ovf:id,attr"`
		OSType      string `xml:"vmw:osType,attr"`
		Info        string `xml:"Info"`
		Description string `xml:"Description"`
	}
	outHardware struct {
		Info   string      `xml:"Info"`
		System outVSSD     `xml:"System"`
		Items  []outItem   `xml:"Item"`
		Config []outConfig `xml:"vmw:Config"`
	}
	outVSSD struct {
		ElementName             string `xml:"vssd:ElementName"`
		InstanceID              int    `xml:"vssd:InstanceID"`
		VirtualSystemIdentifier string `xml:"vssd:VirtualSystemIdentifier"`
		VirtualSystemType       string `xml:"vssd:VirtualSystemType"`
	}
	outItem struct {
		Address             string `xml:"rasd:Address,omitempty"`
		AddressOnParent     string `xml:"rasd:AddressOnParent,omitempty"`
		AllocationUnits     string `xml:"rasd:AllocationUnits,omitempty"`
		AutomaticAllocation string `xml:"rasd:AutomaticAllocation,omitempty"`
		Connection          string `xml:"rasd:Connection,omitempty"`
		Description         string `xml:"rasd:Description,omitempty"`
		ElementName         string `xml:"rasd:ElementName"`
		HostResource        string `xml:"rasd:HostResource,omitempty"`
		InstanceID          int    `xml:"rasd:InstanceID"`
		Parent              string `xml:"rasd:Parent,omitempty"`
		ResourceSubType     string `xml:"rasd:ResourceSubType,omitempty"`
		ResourceType        int    `xml:"rasd:ResourceType"`
		VirtualQuantity     string `xml:"rasd:VirtualQuantity,omitempty"`
	}
	outConfig struct {
		Required string `xml:"ovf:required,attr"`
		Key      string `xml:"vmw:key,attr"`
		Value    string `xml:"vmw:value,attr"`
	}
)

// defaultOSType is VMware's guest id for a 64-bit Linux it has no name for.
const defaultOSType = "otherLinux64Guest"

// defaultNetwork names the network of a NIC that states none: the port
// group every ESXi host has.
const defaultNetwork = "VM Network"

// Write returns an OVF 1.0 descriptor (DSP0243 1.0.0) for spec, shaped
// like VMware ovftool's exports, which VMware and VirtualBox import:
// virtual hardware family vmx-07, an LSI Logic SCSI controller carrying
// the disk, E1000 (or VMXNET3) NICs, and UEFI as vmw:Config firmware=efi.
func Write(spec ExportSpec) ([]byte, error) {
	if err := spec.check(); err != nil {
		return nil, err
	}
	osType := spec.OSType
	if osType == "" {
		osType = defaultOSType
	}
	env := outEnvelope{
		Version: "1.0", Xmlns: NamespaceOVF1, XmlnsCIM: namespaceCIM, XmlnsOVF: NamespaceOVF1,
		XmlnsRASD: namespaceRASD, XmlnsVMW: namespaceVMW, XmlnsVSSD: namespaceVSSD, XmlnsXSI: namespaceXSI,
		Files: []outFile{{Href: spec.Disk.Href, ID: "file1", Size: spec.Disk.FileSize}},
		DiskSection: outDiskSection{Info: "Virtual disk information", Disks: []outDisk{{
			Capacity: spec.Disk.Capacity, CapacityUnits: "byte", DiskID: "vmdisk1", FileRef: "file1", Format: StreamOptimizedVMDK,
		}}},
		VirtualSystem: outSystem{
			ID: spec.Name, Info: "A virtual machine", Name: spec.Name,
			OS: outOS{ID: cimOSID(osType), OSType: osType, Info: "The kind of installed guest operating system", Description: osType},
			Hardware: outHardware{
				Info: "Virtual hardware requirements",
				System: outVSSD{ElementName: "Virtual Hardware Family", InstanceID: 0,
					VirtualSystemIdentifier: spec.Name, VirtualSystemType: "vmx-07"},
			},
		},
	}
	memoryMiB := (spec.Memory + 1<<20 - 1) >> 20
	hw := &env.VirtualSystem.Hardware
	hw.Items = []outItem{
		{AllocationUnits: "hertz * 10^6", Description: "Number of Virtual CPUs", ElementName: fmt.Sprintf("%d virtual CPU(s)", spec.CPUs),
			InstanceID: 1, ResourceType: resourceCPU, VirtualQuantity: strconv.Itoa(spec.CPUs)},
		{AllocationUnits: "byte * 2^20", Description: "Memory Size", ElementName: fmt.Sprintf("%dMB of memory", memoryMiB),
			InstanceID: 2, ResourceType: resourceMemory, VirtualQuantity: strconv.FormatInt(memoryMiB, 10)},
		{Address: "0", Description: "SCSI Controller", ElementName: "SCSI Controller 0",
			InstanceID: 3, ResourceSubType: "lsilogic", ResourceType: resourceSCSI},
		{AddressOnParent: "0", ElementName: "Hard Disk 1", HostResource: "ovf:/disk/vmdisk1",
			InstanceID: 4, Parent: "3", ResourceType: resourceDisk},
	}
	var networks []string
	for i, nic := range spec.NICs {
		network := nic.Network
		if network == "" {
			network = defaultNetwork
		}
		if !slices.Contains(networks, network) {
			networks = append(networks, network)
		}
		model := nicSubType(nic.Model)
		mac := ""
		if nic.MAC != "" {
			mac, _ = vmdef.CanonicalMAC(nic.MAC) // checked by spec.check
		}
		hw.Items = append(hw.Items, outItem{
			Address: mac, AddressOnParent: strconv.Itoa(7 + i), AutomaticAllocation: "true", Connection: network,
			Description: fmt.Sprintf("%s ethernet adapter on %q", model, network), ElementName: fmt.Sprintf("Network adapter %d", i+1),
			InstanceID: 5 + i, ResourceSubType: model, ResourceType: resourceEthernet,
		})
	}
	if len(networks) > 0 {
		env.NetworkSection = &outNetworks{Info: "The list of logical networks"}
		for _, n := range networks {
			env.NetworkSection.Networks = append(env.NetworkSection.Networks, outNetwork{Name: n, Description: fmt.Sprintf("The %s network", n)})
		}
	}
	switch spec.Firmware {
	case vmdef.FirmwareUEFI:
		hw.Config = append(hw.Config, outConfig{Required: "false", Key: "firmware", Value: "efi"})
	case vmdef.FirmwareBIOS:
		hw.Config = append(hw.Config, outConfig{Required: "false", Key: "firmware", Value: "bios"})
	}
	out, err := xml.MarshalIndent(env, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("write OVF descriptor: %w", err)
	}
	return append([]byte(xml.Header), append(out, '\n')...), nil
}

// check refuses a spec no importer would accept.
func (s ExportSpec) check() error {
	switch {
	case strings.TrimSpace(s.Name) == "":
		return invalidf("export: the name is empty")
	case s.CPUs < 1 || s.CPUs > MaxCPUs:
		return invalidf("export: cpus %d: use 1 to %d", s.CPUs, MaxCPUs)
	case s.Memory < 1<<20 || s.Memory > MaxMemory:
		return invalidf("export: memory %d bytes: use 1 MiB to 16 TiB", s.Memory)
	case s.Firmware != "" && s.Firmware != vmdef.FirmwareBIOS && s.Firmware != vmdef.FirmwareUEFI:
		return invalidf("export: firmware %q: use %s or %s", s.Firmware, vmdef.FirmwareBIOS, vmdef.FirmwareUEFI)
	case s.Disk.FileSize < 0:
		return invalidf("export: disk file size %d: it cannot be negative", s.Disk.FileSize)
	case s.Disk.Capacity < 1 || s.Disk.Capacity > MaxCapacity:
		return invalidf("export: disk capacity %d bytes: use 1 byte to 1 PiB", s.Disk.Capacity)
	}
	if err := checkPlainName(s.Disk.Href); err != nil {
		return invalidf("export: disk href: %w", err)
	}
	for i, nic := range s.NICs {
		if nic.MAC == "" {
			continue
		}
		if _, err := vmdef.CanonicalMAC(nic.MAC); err != nil {
			return invalidf("export: NIC %d: %w", i+1, err)
		}
	}
	return nil
}

// nicSubType maps a NIC model to the ResourceSubType VMware and
// VirtualBox both know; E1000 for models they do not (virtio).
func nicSubType(model string) string {
	switch strings.ToLower(model) {
	case "vmxnet3":
		return "VmxNet3"
	case "e1000e":
		return "E1000e"
	}
	return "E1000"
}

// cimOSID maps a VMware guest id to the CIM_OperatingSystem OsType
// number of OperatingSystemSection ovf:id; the guest id itself travels
// as vmw:osType and the Description.
func cimOSID(osType string) int {
	t := strings.ToLower(osType)
	pick := func(bits32, bits64 int) int {
		if strings.Contains(t, "64") {
			return bits64
		}
		return bits32
	}
	switch {
	case strings.HasPrefix(t, "ubuntu"):
		return pick(93, 94)
	case strings.HasPrefix(t, "debian"):
		return pick(95, 96)
	case strings.HasPrefix(t, "rhel"):
		return pick(79, 80)
	case strings.HasPrefix(t, "centos"):
		return pick(106, 107)
	case vmdef.OSFamilyOf(osType) == vmdef.OSLinux:
		return pick(36, 101)
	}
	return pick(1, 102)
}
