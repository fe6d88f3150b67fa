package vmdef

import (
	"strings"
	"testing"
)

func TestParseVBoxVirtualBox7Debian(t *testing.T) {
	m, err := ParseVBox(readTestdata(t, "debian12-vbox7.vbox"))
	if err != nil {
		t.Fatal(err)
	}
	leaf := "Snapshots/{5f4e3d2c-1b0a-4938-8776-65544332211f}.vdi"
	checkMachine(t, m, &Machine{
		Source:   "vbox",
		Name:     "debian12",
		CPUs:     2,
		Memory:   2048 << 20,
		Firmware: FirmwareUEFI,
		OS:       "Debian_64",
		OSFamily: OSLinux,
		// The attached image is the differencing one the snapshot left:
		// the current state, which needs its base.
		Disks: []Disk{{Path: leaf, Format: "vdi"}},
		// Slot 1 is not enabled; its InternalNetwork is a disabled mode.
		NICs: []NIC{{MAC: "08:00:27:ab:12:cd", Network: "NAT", Model: "82540EM"}},
		Warnings: []string{
			`disk "` + leaf + `" is a differencing image (a snapshot) on top of "debian12.vdi": polyvisor cannot follow the chain; merge it first (VBoxManage clonemedium disk "` + leaf + `" merged.vdi) and import the merged image`,
			`DVD drive on "SATA" port 1 device 0 ("/home/alice/Downloads/debian-12.5.0-amd64-netinst.iso") is not imported`,
			`audio adapter ("HDA") is not imported`,
			`USB controllers (OHCI, EHCI) are not imported`,
			`snapshot "Fresh install" is not imported: only the current state is`,
		},
	})
}

// vboxDocument wraps a Machine element's content in a .vbox document.
func vboxDocument(machine string) []byte {
	return []byte(`<?xml version="1.0"?>
<VirtualBox xmlns="http://www.virtualbox.org/" version="1.16-linux">
` + machine + `
</VirtualBox>`)
}

// TestParseVBoxOlderLayout reads the layout of VirtualBox 6.0 and before:
// StorageControllers beside Hardware, the old USBController element, and a
// CPU count left out because it is 1.
func TestParseVBoxOlderLayout(t *testing.T) {
	m, err := ParseVBox(vboxDocument(`
  <Machine uuid="{11111111-2222-4333-8444-555555555555}" name="win10" OSType="Windows10_64">
    <MediaRegistry>
      <HardDisks>
        <HardDisk uuid="{aaaaaaaa-0000-4000-8000-000000000001}" location="C:\VMs\win10\win10.vmdk" format="VMDK" type="Normal"/>
      </HardDisks>
      <FloppyImages>
        <Image uuid="{aaaaaaaa-0000-4000-8000-000000000009}" location="drivers.img"/>
      </FloppyImages>
    </MediaRegistry>
    <Hardware>
      <Memory RAMSize="4096"/>
      <USBController enabled="true" enabledEhci="true"/>
      <Network>
        <Adapter slot="1" enabled="true" MACAddress="0800270A0B0C" type="virtio">
          <BridgedInterface name="enp3s0"/>
        </Adapter>
        <Adapter slot="0" enabled="true" type="Am79C973">
          <HostOnlyInterface name="vboxnet0"/>
        </Adapter>
      </Network>
      <SharedFolders>
        <SharedFolder name="home" hostPath="/home/alice" writable="true" autoMount="true"/>
      </SharedFolders>
      <UART>
        <Port slot="0" enabled="true" IOBase="0x3f8" IRQ="4" hostMode="Disconnected"/>
        <Port slot="1" enabled="false" IOBase="0x2f8" IRQ="3" hostMode="Disconnected"/>
      </UART>
    </Hardware>
    <StorageControllers>
      <StorageController name="IDE" type="PIIX4" PortCount="2" useHostIOCache="true" Bootable="true">
        <AttachedDevice type="HardDisk" port="1" device="0">
          <Image uuid="{bbbbbbbb-0000-4000-8000-000000000002}"/>
        </AttachedDevice>
        <AttachedDevice type="HardDisk" port="0" device="0">
          <Image uuid="{AAAAAAAA-0000-4000-8000-000000000001}"/>
        </AttachedDevice>
      </StorageController>
      <StorageController name="Floppy" type="I82078" PortCount="1" useHostIOCache="true" Bootable="true">
        <AttachedDevice type="Floppy" port="0" device="0">
          <Image uuid="{aaaaaaaa-0000-4000-8000-000000000009}"/>
        </AttachedDevice>
      </StorageController>
    </StorageControllers>
  </Machine>`))
	if err != nil {
		t.Fatal(err)
	}
	checkMachine(t, m, &Machine{
		Source:   "vbox",
		Name:     "win10",
		CPUs:     1,
		Memory:   4096 << 20,
		OS:       "Windows10_64",
		OSFamily: OSWindows,
		Disks: []Disk{
			{Path: `C:\VMs\win10\win10.vmdk`, Format: "vmdk"},
			{Path: "{bbbbbbbb-0000-4000-8000-000000000002}", Device: DeviceUnregistered},
		},
		NICs: []NIC{
			{Network: "vboxnet0", Model: "Am79C973"},
			{MAC: "08:00:27:0a:0b:0c", Network: "enp3s0", Model: "virtio"},
		},
		Warnings: []string{
			`hard disk on "IDE" port 1 device 0 is medium {bbbbbbbb-0000-4000-8000-000000000002}, which is not in this file's media registry (an old machine keeps it in VirtualBox.xml); not imported`,
			`Floppy drive on "Floppy" port 0 device 0 ("drivers.img") is not imported`,
			`USB controllers (OHCI) are not imported`,
			`shared folder "home" (host path "/home/alice") is not imported`,
			`serial port 0 is not imported`,
		},
	})
}

func TestParseVBoxArchitecture(t *testing.T) {
	m, err := ParseVBox(vboxDocument(`<Machine name="arm" OSType="Debian_arm64">
    <Hardware><Memory RAMSize="1024"/></Hardware>
    <Platform architecture="ARM"><CPU count="4"/></Platform>
  </Machine>`))
	if err != nil {
		t.Fatal(err)
	}
	if m.Arch != "aarch64" || m.CPUs != 4 {
		t.Errorf("Arch, CPUs = %q, %d; want aarch64, 4 from VirtualBox 7.1's Platform", m.Arch, m.CPUs)
	}
}

func TestParseVBoxErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		doc  []byte
		want []string
	}{
		{"entity", []byte(`<?xml version="1.0"?>
<!DOCTYPE VirtualBox [<!ENTITY x "xxxxxxxx">]>
<VirtualBox xmlns="http://www.virtualbox.org/"><Machine name="&x;"/></VirtualBox>`), []string{"vbox", "document type declaration"}},
		{"not VirtualBox's namespace", []byte(`<VirtualBox><Machine name="x"/></VirtualBox>`), []string{"vbox", "http://www.virtualbox.org/"}},
		{"global registry", vboxDocument(`<Global/>`), []string{"vbox", "no <Machine>"}},
		{"bad MAC", vboxDocument(`<Machine name="x"><Hardware><Network>
  <Adapter slot="2" enabled="true" MACAddress="08002712"/></Network></Hardware></Machine>`), []string{"slot 2", `"08002712"`}},
		{"absurd memory", vboxDocument(`<Machine name="x"><Hardware><Memory RAMSize="99999999999"/></Hardware></Machine>`), []string{"RAMSize", "16 TiB"}},
		{"absurd CPUs", vboxDocument(`<Machine name="x"><Hardware><CPU count="4096"/></Hardware></Machine>`), []string{"CPU count", "4096"}},
		{"malformed", []byte(`<VirtualBox xmlns="http://www.virtualbox.org/"><Machine>`), []string{"vbox"}},
		{"oversize", oversize(`<!-- padding padding padding -->`), []string{"vbox", "larger than"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := ParseVBox(tc.doc)
			if m != nil {
				t.Errorf("a machine came with the error")
			}
			wantError(t, err, tc.want...)
		})
	}
}

func FuzzParseVBox(f *testing.F) {
	f.Add(readTestdata(f, "debian12-vbox7.vbox"))
	f.Add(vboxDocument(`<Machine name="x"><Hardware><CPU count="2"/><Network><Adapter enabled="true" MACAddress="080027000001"/></Network></Hardware></Machine>`))
	f.Add([]byte(strings.Repeat("<a>", 70)))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := ParseVBox(data)
		checkInvariants(t, "vbox", m, err)
	})
}
