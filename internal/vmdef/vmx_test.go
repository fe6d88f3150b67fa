package vmdef

import (
	"strings"
	"testing"
)

func TestParseVMXWorkstationDebian(t *testing.T) {
	m, err := ParseVMX(readTestdata(t, "debian12-workstation.vmx"))
	if err != nil {
		t.Fatal(err)
	}
	checkMachine(t, m, &Machine{
		Source:   "vmx",
		Name:     `Debian 12 "bookworm"`, // written with |22 escapes
		CPUs:     2,
		Memory:   4096 << 20,
		Firmware: FirmwareUEFI,
		OS:       "debian12-64",
		OSFamily: OSLinux,
		Disks: []Disk{
			{Path: "Debian 12.vmdk", Format: "vmdk"},
			{Path: "Debian 12-data.vmdk", Format: "vmdk"},
		},
		NICs: []NIC{
			{MAC: "00:0c:29:c3:b7:19", Network: "nat", Model: "vmxnet3"},
			{MAC: "00:50:56:3a:7c:01", Network: "VMnet2", Model: "e1000e"},
		},
		Warnings: []string{
			`UEFI Secure Boot is enabled in the source; polyvisor does not carry that setting`,
			`UEFI variables (nvram = "Debian 12.nvram") are not imported: the guest's boot entries are lost and it boots through the removable-media path`,
			`CD-ROM sata0:1 ("/home/alice/Downloads/debian-12.5.0-amd64-netinst.iso") is not imported`,
			`serial port serial0 ("thinprint") is not imported`,
			`sound card ("hdaudio") is not imported`,
			`USB controllers (ehci, usb, usb_xhci) are not imported`,
		},
	})
}

// TestParseVMXDefaults covers what a hand-written file leaves out or
// spells differently: no numvcpus (VMware's default is 1), unquoted values,
// keys in any case, CRLF line ends, and the default boot order.
func TestParseVMXDefaults(t *testing.T) {
	vmx := strings.ReplaceAll(`# hand-written
DISPLAYNAME = "a|7Cb"
MemSize = 512
ide0:0.present = "TRUE"
ide0:0.fileName = "ide.vmdk"
nvme0:0.present = "TRUE"
nvme0:0.fileName = "nvme.vmdk"
scsi0:1.present = "TRUE"
scsi0:1.fileName = "scsi-1.vmdk"
sata0:0.present = "TRUE"
sata0:0.fileName = "sata.img"
scsi1.present = "FALSE"
scsi1:0.present = "TRUE"
scsi1:0.fileName = "off.vmdk"
ethernet0.present = "TRUE"
`, "\n", "\r\n")
	m, err := ParseVMX([]byte(vmx))
	if err != nil {
		t.Fatal(err)
	}
	checkMachine(t, m, &Machine{
		Source: "vmx",
		Name:   "a|b",
		CPUs:   1,
		Memory: 512 << 20,
		Disks: []Disk{
			{Path: "sata.img"},
			{Path: "ide.vmdk", Format: "vmdk"},
			{Path: "nvme.vmdk", Format: "vmdk"},
			{Path: "scsi-1.vmdk", Format: "vmdk"},
		},
		// No addressType and no generatedAddress: VMware makes one up.
		NICs: []NIC{{}},
	})
}

func TestParseVMXBootOrder(t *testing.T) {
	m, err := ParseVMX([]byte(`bios.hddOrder = "scsi0:1,scsi0:0"
scsi0:0.present = "TRUE"
scsi0:0.fileName = "data.vmdk"
scsi0:1.present = "TRUE"
scsi0:1.fileName = "boot.vmdk"
`))
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Disks) != 2 || m.Disks[0].Path != "boot.vmdk" || m.Disks[1].Path != "data.vmdk" {
		t.Errorf("Disks = %+v, want boot.vmdk first as bios.hddOrder says", m.Disks)
	}
}

func TestParseVMXWarnings(t *testing.T) {
	m, err := ParseVMX([]byte(`guestOS = "arm-debian12-64"
firmware = "bios"
scsi0:0.present = "TRUE"
scsi0:0.deviceType = "rawDisk"
scsi0:0.fileName = "physical.vmdk"
ide1:0.present = "TRUE"
ide1:0.deviceType = "atapi-cdrom"
ide1:0.fileName = "auto detect"
floppy0.fileType = "file"
floppy0.fileName = "boot.flp"
sharedFolder0.present = "TRUE"
sharedFolder0.hostPath = "/home/alice/share"
pciPassthru0.present = "TRUE"
vtpm.present = "TRUE"
vmci0.present = "TRUE"
hpet0.present = "TRUE"
frobnicator.present = "TRUE"
ethernet0.present = "TRUE"
ethernet0.addressType = "static"
`))
	if err != nil {
		t.Fatal(err)
	}
	checkMachine(t, m, &Machine{
		Source:   "vmx",
		CPUs:     1,
		Firmware: FirmwareBIOS,
		OS:       "arm-debian12-64",
		OSFamily: OSLinux,
		Arch:     "aarch64",
		Disks:    []Disk{{Path: "physical.vmdk", Device: DeviceRaw}},
		NICs:     []NIC{{}},
		Warnings: []string{
			`disk scsi0:0 is a host disk (deviceType "rawdisk") and cannot be imported; copy it into an image file first`,
			`CD-ROM ide1:0 (a host drive) is not imported`,
			`ethernet0 has a static MAC address but no ethernet0.address; it gets a new address`,
			`"frobnicator.present" = TRUE: a device polyvisor does not know; not imported`,
			`PCI pass-through device pciPassthru0 is not imported`,
			`shared folder sharedFolder0 (host path "/home/alice/share") is not imported`,
			`virtual TPM (vtpm) is not imported: secrets the guest sealed in it (BitLocker, LUKS with TPM) need their recovery key`,
			`floppy drive floppy0 ("boot.flp") is not imported`,
		},
	})
}

func TestParseVMXErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		vmx  string
		want []string
	}{
		{"no equals sign", "memsize = \"1024\"\nthis line is broken\n", []string{"vmx line 2", "key = \"value\""}},
		{"unclosed quote", "displayName = \"web\n", []string{"vmx line 1", "closing quote"}},
		{"text after the quote", "displayName = \"web\" extra\n", []string{"vmx line 1", "follows the closing quote"}},
		{"key with a space", "display name = \"web\"\n", []string{"vmx line 1", "not a key"}},
		{"bad MAC", "ethernet0.present = \"TRUE\"\nethernet0.addressType = \"static\"\nethernet0.address = \"00:50:56:zz:00:01\"\n",
			[]string{"ethernet0", `"00:50:56:zz:00:01"`}},
		{"multicast MAC", "ethernet1.present = \"TRUE\"\nethernet1.generatedAddress = \"01:00:5e:00:00:01\"\n", []string{"ethernet1", "multicast"}},
		{"too many CPUs", "numvcpus = \"5000\"\n", []string{"numvcpus", "5000", "1024"}},
		{"negative CPUs", "numvcpus = \"-2\"\n", []string{"numvcpus", "-2"}},
		{"CPUs not a number", "numvcpus = \"two\"\n", []string{"numvcpus", "not a whole number"}},
		{"absurd memory", "memsize = \"99999999999\"\n", []string{"memsize", "16 TiB"}},
		{"negative memory", "memsize = \"-1\"\n", []string{"memsize", "-1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := ParseVMX([]byte(tc.vmx))
			if m != nil {
				t.Errorf("a machine came with the error")
			}
			wantError(t, err, tc.want...)
		})
	}
}

func TestParseVMXRefusesOversize(t *testing.T) {
	_, err := ParseVMX(oversize("guestinfo.padding = \"xxxxxxxxxxxxxxxx\"\n"))
	wantError(t, err, "vmx", "larger than")
}

func FuzzParseVMX(f *testing.F) {
	f.Add(readTestdata(f, "debian12-workstation.vmx"))
	f.Add([]byte("ethernet0.present = \"TRUE\"\nethernet0.generatedAddress = \"00:0c:29:00:00:01\"\n"))
	f.Add([]byte("scsi0:0.present = \"TRUE\"\nscsi0:0.fileName = \"a|22b.vmdk\"\nbios.hddOrder = \"scsi0:0\"\n"))
	f.Add([]byte("numvcpus = \"1024\"\nmemsize = \"16777216\"\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := ParseVMX(data)
		checkInvariants(t, "vmx", m, err)
	})
}
