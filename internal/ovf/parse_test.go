package ovf

import (
	"errors"
	"fmt"
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/polyvisor/polyvisor/internal/vmdef"
	"github.com/polyvisor/polyvisor/pkg/api"
)

func parseFile(t *testing.T, name string) *Descriptor {
	t.Helper()
	data, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	d, err := Parse(data)
	if err != nil {
		t.Fatalf("Parse %s: %v", name, err)
	}
	return d
}

// wantWarnings checks that each warning line contains one of the
// fragments, in order, and that there are no others.
func wantWarnings(t *testing.T, got []string, fragments ...string) {
	t.Helper()
	if len(got) != len(fragments) {
		t.Fatalf("warnings %q; want %d lines containing %q", got, len(fragments), fragments)
	}
	for i, f := range fragments {
		if !strings.Contains(got[i], f) {
			t.Errorf("warning %d %q does not contain %q", i, got[i], f)
		}
	}
}

const gib = 1 << 30

func TestParseVMwareOvftoolExport(t *testing.T) {
	d := parseFile(t, "vmware-ovftool.ovf")
	m := d.Machine
	if m.Source != "ovf" || m.Name != "web01" || m.CPUs != 4 || m.Memory != 8*gib {
		t.Errorf("source %q name %q cpus %d memory %d; want ovf web01 4 8 GiB", m.Source, m.Name, m.CPUs, m.Memory)
	}
	if m.Firmware != vmdef.FirmwareUEFI {
		t.Errorf("firmware %q; want uefi from vmw:Config firmware=efi", m.Firmware)
	}
	if m.OS != "debian11_64Guest" || m.OSFamily != vmdef.OSLinux {
		t.Errorf("OS %q family %q; want the vmw:osType debian11_64Guest, linux", m.OS, m.OSFamily)
	}
	// The DiskSection lists vmdisk2 first; the items attach vmdisk1 first.
	wantDisks := []vmdef.Disk{
		{Path: "web01-disk1.vmdk", Format: "vmdk", Capacity: 16 * gib},
		{Path: "web01-disk2.vmdk", Format: "vmdk", Capacity: 100 * gib},
	}
	if !reflect.DeepEqual(m.Disks, wantDisks) {
		t.Errorf("disks %+v; want %+v", m.Disks, wantDisks)
	}
	wantNICs := []vmdef.NIC{{MAC: "00:50:56:ab:cd:01", Network: "VM Network", Model: "vmxnet3"}}
	if !reflect.DeepEqual(m.NICs, wantNICs) {
		t.Errorf("NICs %+v; want %+v", m.NICs, wantNICs)
	}
	wantFiles := []File{{"file1", "web01-disk1.vmdk", 1024}, {"file2", "web01-file1.nvram", 12}, {"file3", "web01-disk2.vmdk", 1024}}
	if !reflect.DeepEqual(d.Files, wantFiles) {
		t.Errorf("files %+v; want %+v", d.Files, wantFiles)
	}
	wantWarnings(t, m.Warnings,
		`USB controller "USB controller" (ResourceType 23)`,
		`CD drive "CD/DVD drive 1" (ResourceType 15)`,
		`graphics controller "Video card" (ResourceType 24)`,
		`device "VMCI device" (ResourceType 1)`,
		`device "Sound card" (ResourceType 1)`)
}

func TestParseVirtualBox10Export(t *testing.T) {
	d := parseFile(t, "virtualbox-1.0.ovf")
	m := d.Machine
	if m.Name != "ubuntu2204" || m.CPUs != 2 || m.Memory != 4*gib {
		t.Errorf("name %q cpus %d memory %d; want ubuntu2204 (the ovf:id) 2 4 GiB", m.Name, m.CPUs, m.Memory)
	}
	if m.Firmware != vmdef.FirmwareUEFI {
		t.Errorf("firmware %q; want uefi from vbox:Machine Firmware type=EFI", m.Firmware)
	}
	if m.OS != "Ubuntu_64" || m.OSFamily != vmdef.OSLinux {
		t.Errorf("OS %q family %q; want Ubuntu_64, linux", m.OS, m.OSFamily)
	}
	wantDisks := []vmdef.Disk{{Path: "ubuntu2204-disk001.vmdk", Format: "vmdk", Capacity: 26843545600}}
	if !reflect.DeepEqual(m.Disks, wantDisks) {
		t.Errorf("disks %+v; want %+v", m.Disks, wantDisks)
	}
	// VirtualBox puts the MAC in its own section only.
	wantNICs := []vmdef.NIC{{MAC: "08:00:27:4b:5c:2d", Network: "NAT", Model: "e1000"}}
	if !reflect.DeepEqual(m.NICs, wantNICs) {
		t.Errorf("NICs %+v; want %+v", m.NICs, wantNICs)
	}
	if len(d.Files) != 1 || d.Files[0].Size != -1 {
		t.Errorf("files %+v; want one, its size not stated (-1)", d.Files)
	}
	wantWarnings(t, m.Warnings, `sound card "sound" (ResourceType 35)`, `CD drive "cdrom1" (ResourceType 15)`)
}

func TestParseVirtualBox20Export(t *testing.T) {
	d := parseFile(t, "virtualbox-2.0.ovf")
	m := d.Machine
	if m.CPUs != 1 || m.Memory != gib || m.Firmware != vmdef.FirmwareBIOS || m.OS != "Debian_64" {
		t.Errorf("cpus %d memory %d firmware %q OS %q; want 1 1 GiB bios Debian_64", m.CPUs, m.Memory, m.Firmware, m.OS)
	}
	wantDisks := []vmdef.Disk{{Path: "debian12-disk001.vmdk", Format: "vmdk", Capacity: 20 * gib}}
	if !reflect.DeepEqual(m.Disks, wantDisks) {
		t.Errorf("disks %+v; want %+v (a StorageItem)", m.Disks, wantDisks)
	}
	wantNICs := []vmdef.NIC{
		{MAC: "08:00:27:a1:b2:c3", Network: "Bridged", Model: "virtio"},
		{MAC: "08:00:27:d4:e5:f6", Network: "Bridged", Model: "e1000"},
	}
	if !reflect.DeepEqual(m.NICs, wantNICs) {
		t.Errorf("NICs %+v; want %+v (EthernetPortItems)", m.NICs, wantNICs)
	}
	wantWarnings(t, m.Warnings)
}

// envelope builds a small OVF 1.0 descriptor around the given parts.
func envelope(references, disks, systemExtra, items string) string {
	return fmt.Sprintf(`<?xml version="1.0"?>
<ovf:Envelope xmlns:ovf="http://schemas.dmtf.org/ovf/envelope/1" xmlns:rasd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData">
  <ovf:References>%s</ovf:References>
  <ovf:DiskSection><ovf:Info>disks</ovf:Info>%s</ovf:DiskSection>
  <ovf:VirtualSystem ovf:id="vm1">
    <ovf:Info>A virtual machine</ovf:Info>%s
    <ovf:VirtualHardwareSection><ovf:Info>hw</ovf:Info>%s</ovf:VirtualHardwareSection>
  </ovf:VirtualSystem>
</ovf:Envelope>`, references, disks, systemExtra, items)
}

const (
	oneFile  = `<ovf:File ovf:href="disk.vmdk" ovf:id="file1" ovf:size="1024"/>`
	oneDisk  = `<ovf:Disk ovf:capacity="1" ovf:capacityAllocationUnits="byte * 2^30" ovf:diskId="vmdisk1" ovf:fileRef="file1"/>`
	cpuItem  = `<ovf:Item><rasd:ElementName>cpu</rasd:ElementName><rasd:InstanceID>1</rasd:InstanceID><rasd:ResourceType>3</rasd:ResourceType><rasd:VirtualQuantity>%s</rasd:VirtualQuantity></ovf:Item>`
	memItem  = `<ovf:Item><rasd:AllocationUnits>%s</rasd:AllocationUnits><rasd:ElementName>mem</rasd:ElementName><rasd:InstanceID>2</rasd:InstanceID><rasd:ResourceType>4</rasd:ResourceType><rasd:VirtualQuantity>%s</rasd:VirtualQuantity></ovf:Item>`
	diskItem = `<ovf:Item><rasd:ElementName>Hard disk 1</rasd:ElementName><rasd:HostResource>%s</rasd:HostResource><rasd:InstanceID>3</rasd:InstanceID><rasd:ResourceType>17</rasd:ResourceType></ovf:Item>`
)

func basicItems() string {
	return fmt.Sprintf(cpuItem, "2") + fmt.Sprintf(memItem, "byte * 2^20", "512") + fmt.Sprintf(diskItem, "ovf:/disk/vmdisk1")
}

func TestParsePrefixedEnvelopeAndUnits(t *testing.T) {
	d, err := Parse([]byte(envelope(oneFile, oneDisk, "", basicItems())))
	if err != nil {
		t.Fatal(err)
	}
	m := d.Machine
	if m.CPUs != 2 || m.Memory != 512<<20 || len(m.Disks) != 1 || m.Disks[0].Capacity != gib || m.Disks[0].Format != "" {
		t.Errorf("cpus %d memory %d disks %+v; want 2, 512 MiB, one 1 GiB disk of undeclared format", m.CPUs, m.Memory, m.Disks)
	}
	if m.Name != "vm1" || m.Firmware != "" {
		t.Errorf("name %q firmware %q; want vm1 (the ovf:id) and firmware not stated", m.Name, m.Firmware)
	}
	wantWarnings(t, m.Warnings)
}

func TestParseRefuses(t *testing.T) {
	for _, tc := range []struct {
		name, descriptor, want string
	}{
		{"href with ..", envelope(`<ovf:File ovf:href="../etc/passwd" ovf:id="file1"/>`, "", "", basicItems()), `"../etc/passwd" is not a plain file name`},
		{"absolute href", envelope(`<ovf:File ovf:href="/etc/passwd" ovf:id="file1"/>`, "", "", basicItems()), `"/etc/passwd" is not a plain file name`},
		{"href in a subdirectory", envelope(`<ovf:File ovf:href="disks/disk.vmdk" ovf:id="file1"/>`, "", "", basicItems()), `"disks/disk.vmdk" is not a plain file name`},
		{"empty href", envelope(`<ovf:File ovf:href="" ovf:id="file1"/>`, "", "", basicItems()), `File "file1" href: "" is not a plain file name`},
		{"URL href", envelope(`<ovf:File ovf:href="http://example.com/disk.vmdk" ovf:id="file1"/>`, "", "", basicItems()), `"http://example.com/disk.vmdk" is not a plain file name`},
		{"gzip", envelope(`<ovf:File ovf:href="disk.vmdk" ovf:id="file1" ovf:compression="gzip"/>`, "", "", basicItems()), `File "disk.vmdk" is gzip-compressed`},
		{"chunked", envelope(`<ovf:File ovf:href="disk.vmdk" ovf:id="file1" ovf:chunkSize="1000"/>`, "", "", basicItems()), `File "disk.vmdk" is split in chunks`},
		{"negative size", envelope(`<ovf:File ovf:href="disk.vmdk" ovf:id="file1" ovf:size="-5"/>`, "", "", basicItems()), `File "disk.vmdk" ovf:size`},
		{"href twice", envelope(oneFile+`<ovf:File ovf:href="disk.vmdk" ovf:id="file2"/>`, "", "", basicItems()), `listed twice`},
		{"too many cpus", envelope(oneFile, oneDisk, "", fmt.Sprintf(cpuItem, "5000")), `CPU item "cpu" VirtualQuantity 5000: more than 1024 CPUs`},
		{"negative cpus", envelope(oneFile, oneDisk, "", fmt.Sprintf(cpuItem, "-1")), `CPU item "cpu" VirtualQuantity`},
		{"17 TiB of memory", envelope(oneFile, oneDisk, "", fmt.Sprintf(memItem, "MegaBytes", "17825792")), `memory item "mem"`},
		{"overflowing memory", envelope(oneFile, oneDisk, "", fmt.Sprintf(memItem, "byte * 2^40", "9223372036854775807")), `memory item "mem"`},
		{"unknown memory unit", envelope(oneFile, oneDisk, "", fmt.Sprintf(memItem, "furlongs", "1")), `memory item "mem" AllocationUnits`},
		{"absurd capacity", envelope(oneFile, `<ovf:Disk ovf:capacity="2" ovf:capacityAllocationUnits="byte * 2^50" ovf:diskId="vmdisk1" ovf:fileRef="file1"/>`, "", basicItems()), `Disk "vmdisk1" capacity`},
		{"capacity property", envelope(oneFile, `<ovf:Disk ovf:capacity="${disk.size}" ovf:diskId="vmdisk1" ovf:fileRef="file1"/>`, "", basicItems()), `Disk "vmdisk1" ovf:capacity`},
		{"fileRef to nothing", envelope(oneFile, `<ovf:Disk ovf:capacity="1" ovf:diskId="vmdisk1" ovf:fileRef="file9"/>`, "", basicItems()), `ovf:fileRef "file9" names no File`},
		{"disk to nothing", envelope(oneFile, oneDisk, "", fmt.Sprintf(diskItem, "ovf:/disk/vmdisk7")), `HostResource "ovf:/disk/vmdisk7" names no Disk`},
		{"disk attached twice", envelope(oneFile, oneDisk, "", fmt.Sprintf(diskItem, "ovf:/disk/vmdisk1")+fmt.Sprintf(diskItem, "ovf:/disk/vmdisk1")), `Disk "vmdisk1" is attached twice`},
		{"too many items", envelope(oneFile, oneDisk, "", strings.Repeat(fmt.Sprintf(cpuItem, "1"), 1025)), `items; a machine has at most 1024`},
		{"two systems", strings.Replace(envelope(oneFile, oneDisk, "", basicItems()), "</ovf:Envelope>",
			`<ovf:VirtualSystem ovf:id="vm2"><ovf:Info>x</ovf:Info></ovf:VirtualSystem></ovf:Envelope>`, 1), `2 virtual systems (vm1, vm2)`},
		{"no hardware", `<Envelope xmlns="http://schemas.dmtf.org/ovf/envelope/1"><VirtualSystem id="x"/></Envelope>`, `has no VirtualHardwareSection`},
		{"no system", `<Envelope xmlns="http://schemas.dmtf.org/ovf/envelope/1"/>`, `no VirtualSystem`},
		{"OVF 0.9", `<Envelope xmlns="http://www.vmware.com/schema/ovf/1/envelope"/>`, `OVF 0.9 is not read`},
		{"not an envelope", `<domain type="kvm"/>`, `the root element is <domain>`},
	} {
		_, err := Parse([]byte(tc.descriptor))
		if err == nil || !strings.Contains(err.Error(), tc.want) || !errors.Is(err, api.ErrInvalid) {
			t.Errorf("%s: error %v; want an invalid error containing %q", tc.name, err, tc.want)
		}
	}
}

func TestParseRefusesEntitiesAndDepth(t *testing.T) {
	laughs := `<?xml version="1.0"?>
<!DOCTYPE Envelope [
  <!ENTITY lol "lol">
  <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
  <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
  <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
]>
<Envelope xmlns="http://schemas.dmtf.org/ovf/envelope/1"><VirtualSystem id="&lol3;"/></Envelope>`
	external := `<?xml version="1.0"?>
<!DOCTYPE Envelope [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<Envelope xmlns="http://schemas.dmtf.org/ovf/envelope/1"><VirtualSystem id="&xxe;"/></Envelope>`
	deep := `<Envelope xmlns="http://schemas.dmtf.org/ovf/envelope/1">` + strings.Repeat("<a>", 100) + strings.Repeat("</a>", 100) + `</Envelope>`
	for _, tc := range []struct{ name, descriptor, want string }{
		{"billion laughs", laughs, "document type declaration"},
		{"external entity", external, "document type declaration"},
		{"too deep", deep, "nested deeper than"},
		{"undeclared entity", `<Envelope xmlns="http://schemas.dmtf.org/ovf/envelope/1"><VirtualSystem id="&xxe;"/></Envelope>`, "xxe"},
	} {
		_, err := Parse([]byte(tc.descriptor))
		if err == nil || !strings.Contains(err.Error(), tc.want) || !errors.Is(err, api.ErrInvalid) {
			t.Errorf("%s: error %v; want an invalid error containing %q", tc.name, err, tc.want)
		}
	}
}

func TestParseWarnsOfWhatItDoesNotCarry(t *testing.T) {
	extra := `<ovf:BootOrderSection xmlns:x="urn:x"><ovf:Info>boot</ovf:Info></ovf:BootOrderSection>
    <ovf:SomethingOptional ovf:required="false"/>`
	items := fmt.Sprintf(memItem, "byte * 2^20", "256") + fmt.Sprintf(diskItem, "ovf:/disk/vmdisk1") +
		`<ovf:Item><rasd:ElementName>Floppy</rasd:ElementName><rasd:InstanceID>9</rasd:InstanceID><rasd:ResourceType>14</rasd:ResourceType></ovf:Item>` +
		`<ovf:Item><rasd:ElementName>eth0</rasd:ElementName><rasd:Address>01:00:5e:00:00:01</rasd:Address><rasd:InstanceID>10</rasd:InstanceID><rasd:ResourceType>10</rasd:ResourceType></ovf:Item>`
	d, err := Parse([]byte(envelope(oneFile, oneDisk+`<ovf:Disk ovf:capacity="5" ovf:diskId="spare"/>`, extra, items)))
	if err != nil {
		t.Fatal(err)
	}
	wantWarnings(t, d.Machine.Warnings,
		"section BootOrderSection is required by the descriptor but not understood",
		`floppy drive "Floppy" (ResourceType 14)`,
		`network adapter "eth0": MAC address "01:00:5e:00:00:01"`,
		`disk "spare" of the DiskSection is attached to no item`,
		"no CPU count stated")
	if len(d.Machine.NICs) != 1 || d.Machine.NICs[0].MAC != "" {
		t.Errorf("NICs %+v; want one without its multicast MAC", d.Machine.NICs)
	}
}

func TestParseArmGuest(t *testing.T) {
	for _, os := range []string{
		`<ovf:OperatingSystemSection ovf:id="101" vmw:osType="arm-debian12-64" xmlns:vmw="http://www.vmware.com/schema/ovf"><ovf:Info>os</ovf:Info></ovf:OperatingSystemSection>`,
		`<ovf:OperatingSystemSection ovf:id="94"><ovf:Info>os</ovf:Info><vbox:OSType xmlns:vbox="http://www.virtualbox.org/ovf/machine">Ubuntu_arm64</vbox:OSType></ovf:OperatingSystemSection>`,
	} {
		d, err := Parse([]byte(envelope(oneFile, oneDisk, os, basicItems())))
		if err != nil {
			t.Fatal(err)
		}
		if d.Machine.Arch != "aarch64" || d.Machine.OSFamily != vmdef.OSLinux {
			t.Errorf("arch %q family %q for OS %q; want aarch64, linux", d.Machine.Arch, d.Machine.OSFamily, d.Machine.OS)
		}
	}
	if d := parseFile(t, "vmware-ovftool.ovf"); d.Machine.Arch != "" {
		t.Errorf("arch %q for an x86 guest; want not stated", d.Machine.Arch)
	}
}

func TestParseDeploymentOptionsAndCollection(t *testing.T) {
	items := `<ovf:Item ovf:configuration="small"><rasd:ElementName>cpu</rasd:ElementName><rasd:InstanceID>1</rasd:InstanceID><rasd:ResourceType>3</rasd:ResourceType><rasd:VirtualQuantity>2</rasd:VirtualQuantity></ovf:Item>
      <ovf:Item ovf:configuration="large"><rasd:ElementName>cpu</rasd:ElementName><rasd:InstanceID>1</rasd:InstanceID><rasd:ResourceType>3</rasd:ResourceType><rasd:VirtualQuantity>16</rasd:VirtualQuantity></ovf:Item>
      <ovf:Item><rasd:AllocationUnits>MB</rasd:AllocationUnits><rasd:ElementName>mem</rasd:ElementName><rasd:InstanceID>2</rasd:InstanceID><rasd:ResourceType>4</rasd:ResourceType><rasd:VirtualQuantity>1024</rasd:VirtualQuantity></ovf:Item>
      <ovf:Item ovf:configuration="large"><rasd:AllocationUnits>MB</rasd:AllocationUnits><rasd:ElementName>mem</rasd:ElementName><rasd:InstanceID>2</rasd:InstanceID><rasd:ResourceType>4</rasd:ResourceType><rasd:VirtualQuantity>65536</rasd:VirtualQuantity></ovf:Item>` +
		fmt.Sprintf(diskItem, "ovf:/disk/vmdisk1")
	doc := envelope(oneFile, oneDisk, "", items)
	doc = strings.Replace(doc, "<ovf:VirtualSystem ", `<ovf:DeploymentOptionSection><ovf:Info>sizes</ovf:Info>
    <ovf:Configuration ovf:id="small"><ovf:Label>Small</ovf:Label></ovf:Configuration>
    <ovf:Configuration ovf:id="large" ovf:default="true"><ovf:Label>Large</ovf:Label></ovf:Configuration>
  </ovf:DeploymentOptionSection>
  <ovf:VirtualSystemCollection ovf:id="vapp"><ovf:Info>a vApp</ovf:Info><ovf:VirtualSystem `, 1)
	doc = strings.Replace(doc, "</ovf:VirtualSystem>", "</ovf:VirtualSystem></ovf:VirtualSystemCollection>", 1)
	d, err := Parse([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	if d.Machine.CPUs != 16 || d.Machine.Memory != 64*gib {
		t.Errorf("cpus %d memory %d; want the default option's 16 and 64 GiB", d.Machine.CPUs, d.Machine.Memory)
	}
	wantWarnings(t, d.Machine.Warnings, `deployment option "large" used`)
}
