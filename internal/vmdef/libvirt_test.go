package vmdef

import (
	"testing"
)

func TestParseLibvirtVirtInstallDebian(t *testing.T) {
	m, err := ParseLibvirt(readTestdata(t, "debian12-virt-install.xml"))
	if err != nil {
		t.Fatal(err)
	}
	// The graphics, video, inputs, console, channels, controllers,
	// memballoon, rng, watchdog, pty serial and spicevmc redirdevs are
	// left out without a word: polyvisor brings its own.
	checkMachine(t, m, &Machine{
		Source:   "libvirt",
		Name:     "debian12",
		CPUs:     2,
		Memory:   4 << 30,
		Firmware: FirmwareUEFI,
		OS:       "http://debian.org/debian/12",
		OSFamily: OSLinux,
		Arch:     "x86_64",
		Disks:    []Disk{{Path: "/var/lib/libvirt/images/debian12.qcow2", Format: "qcow2"}},
		NICs:     []NIC{{MAC: "52:54:00:6b:3c:58", Network: "default", Model: "virtio"}},
		Warnings: []string{
			`UEFI variables (nvram "/var/lib/libvirt/qemu/nvram/debian12_VARS.fd") are not imported: the guest's boot entries are lost and it boots through the removable-media path`,
			`cdrom "sda" ("/var/lib/libvirt/images/debian-12.5.0-amd64-netinst.iso") is not imported`,
			`sound card ("ich9") is not imported`,
		},
	})
}

func TestParseLibvirtDevices(t *testing.T) {
	m, err := ParseLibvirt([]byte(`<domain type='kvm'>
  <name>db</name>
  <memory unit='GiB'>16</memory>
  <os firmware='efi'>
    <type arch='aarch64' machine='virt'>hvm</type>
    <firmware><feature enabled='yes' name='secure-boot'/></firmware>
    <kernel>/var/lib/libvirt/boot/vmlinuz</kernel>
  </os>
  <devices>
    <disk type='file' device='disk'>
      <driver name='qemu' type='raw'/>
      <source file='/srv/db/data.img'/>
      <target dev='vdb' bus='virtio'/>
    </disk>
    <disk type='file' device='disk'>
      <source file='root.img'/>
      <target dev='vda' bus='virtio'/>
      <boot order='1'/>
    </disk>
    <disk type='file' device='disk'>
      <driver name='qemu' type='vpc'/>
      <source file='/srv/db/old.vhd'/>
      <target dev='vdc' bus='virtio'/>
    </disk>
    <disk type='block' device='disk'>
      <source dev='/dev/vg0/db-wal'/>
      <target dev='vdd' bus='virtio'/>
    </disk>
    <disk type='network' device='disk'>
      <source protocol='rbd' name='pool/db-archive'><host name='ceph-mon1' port='6789'/></source>
      <target dev='vde' bus='virtio'/>
    </disk>
    <disk type='volume' device='disk'>
      <source pool='default' volume='db-tmp.qcow2'/>
      <target dev='vdf' bus='virtio'/>
    </disk>
    <disk type='block' device='lun'>
      <source dev='/dev/sdq'/>
      <target dev='sdb' bus='scsi'/>
    </disk>
    <disk type='file' device='floppy'>
      <target dev='fda' bus='fdc'/>
    </disk>
    <interface type='bridge'>
      <source bridge='br0'/>
      <model type='e1000e'/>
    </interface>
    <interface type='user'/>
    <interface type='hostdev' managed='yes'>
      <source><address type='pci' domain='0x0000' bus='0x03' slot='0x10' function='0x1'/></source>
    </interface>
    <hostdev mode='subsystem' type='pci' managed='yes'>
      <source><address domain='0x0000' bus='0x41' slot='0x00' function='0x0'/></source>
    </hostdev>
    <filesystem type='mount' accessmode='passthrough'>
      <driver type='virtiofs'/>
      <source dir='/srv/share'/>
      <target dir='share'/>
    </filesystem>
    <tpm model='tpm-crb'><backend type='emulator' version='2.0'/></tpm>
    <serial type='tcp'><source mode='bind' host='0.0.0.0' service='4555'/></serial>
    <redirdev bus='usb' type='tcp'><source mode='connect' host='10.0.0.5' service='4000'/></redirdev>
    <shmem name='ivshmem'/>
  </devices>
</domain>`))
	if err != nil {
		t.Fatal(err)
	}
	checkMachine(t, m, &Machine{
		Source:   "libvirt",
		Name:     "db",
		Memory:   16 << 30,
		Firmware: FirmwareUEFI,
		Arch:     "aarch64",
		Disks: []Disk{
			{Path: "root.img", Format: "raw"}, // boot order 1; no driver type reads as raw
			{Path: "/srv/db/data.img", Format: "raw"},
			{Path: "/srv/db/old.vhd", Format: "vhd"},
			// Kept, so that --disk N counts the definition's own disks.
			{Path: "/dev/vg0/db-wal", Device: DeviceBlock},
			{Path: "rbd:pool/db-archive", Device: DeviceNetwork},
			{Path: "default/db-tmp.qcow2", Device: DeviceVolume},
			{Path: "/dev/sdq", Device: DeviceLUN},
		},
		NICs: []NIC{{Network: "br0", Model: "e1000e"}, {Network: "user"}},
		Warnings: []string{
			`UEFI Secure Boot is enabled in the source; polyvisor does not carry that setting`,
			`direct kernel boot (kernel "/var/lib/libvirt/boot/vmlinuz") is not imported; the disk will be booted by firmware and needs a bootloader installed in it`,
			`disk "vdd" is the host block device "/dev/vg0/db-wal" and cannot be imported; copy it into an image file first (qemu-img convert)`,
			`disk "vde" is the remote "rbd" disk "pool/db-archive" and cannot be imported; copy it into an image file first`,
			`disk "vdf" is volume "db-tmp.qcow2" of storage pool "default" and cannot be imported; find its file with virsh vol-path and attach that`,
			`disk "sdb" is a host device passed through as a "lun" and cannot be imported`,
			`floppy "fda" (empty) is not imported`,
			`interface 3 is a host network device passed through (SR-IOV) and is not imported`,
			`serial port of type "tcp" is not imported`,
			`USB redirection of type "tcp" is not imported`,
			`host device pass-through ("pci") is not imported`,
			`shared folder (filesystem of type "mount") is not imported`,
			`TPM ("tpm-crb") is not imported: secrets the guest sealed in it (BitLocker, LUKS with TPM) need their recovery key`,
			`device <shmem> (not stated) is not imported`,
		},
	})
}

func TestParseLibvirtXenPV(t *testing.T) {
	m, err := ParseLibvirt([]byte(`<domain type='xen'>
  <name>legacy</name>
  <bootloader>/usr/lib/xen/bin/pygrub</bootloader>
  <vcpu>1</vcpu>
  <os><type>linux</type></os>
  <devices>
    <disk type='file' device='disk'>
      <driver name='qemu' type='raw'/>
      <source file='/var/lib/xen/images/legacy.img'/>
      <target dev='xvda' bus='xen'/>
    </disk>
  </devices>
</domain>`))
	if err != nil {
		t.Fatal(err)
	}
	checkMachine(t, m, &Machine{
		Source: "libvirt",
		Name:   "legacy",
		CPUs:   1,
		Disks:  []Disk{{Path: "/var/lib/xen/images/legacy.img", Format: "raw"}},
		Warnings: []string{
			`Xen PV guest (bootloader "/usr/lib/xen/bin/pygrub", kernel not stated): that boot arrangement is not mapped; the disk will be booted by firmware and needs a bootloader installed in it`,
		},
	})
}

func TestParseLibvirtMemoryUnits(t *testing.T) {
	for _, tc := range []struct {
		unit, value string
		want        int64
	}{
		{"", "1048576", 1 << 30}, // KiB when unstated
		{"b", "4096", 4096},
		{"bytes", "4096", 4096},
		{"KB", "1000", 1000 * 1000},
		{"k", "1024", 1 << 20},
		{"KiB", "1024", 1 << 20},
		{"MB", "1", 1000 * 1000},
		{"M", "512", 512 << 20},
		{"MiB", "512", 512 << 20},
		{"GB", "2", 2 * 1000 * 1000 * 1000},
		{"G", "2", 2 << 30},
		{"GiB", "2", 2 << 30},
		{"TiB", "16", 16 << 40},
	} {
		unitAttr := ""
		if tc.unit != "" {
			unitAttr = " unit='" + tc.unit + "'"
		}
		m, err := ParseLibvirt([]byte(`<domain type='kvm'><memory` + unitAttr + `>` + tc.value + `</memory></domain>`))
		if err != nil {
			t.Errorf("%s %s: %v", tc.value, tc.unit, err)
			continue
		}
		if m.Memory != tc.want {
			t.Errorf("%s %s = %d bytes, want %d", tc.value, tc.unit, m.Memory, tc.want)
		}
	}
}

func TestParseLibvirtErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		doc  string
		want []string
	}{
		{"entity", `<?xml version="1.0"?>
<!DOCTYPE domain [<!ENTITY lol "lollollollol">]>
<domain type='kvm'><name>&lol;</name></domain>`, []string{"libvirt", "document type declaration"}},
		{"external entity", `<!DOCTYPE domain SYSTEM "file:///etc/passwd"><domain/>`, []string{"libvirt", "document type declaration"}},
		{"not a domain", `<network><name>default</name></network>`, []string{"libvirt", "<network>", "not <domain>"}},
		{"container", `<domain type='lxc'><os><type>exe</type></os></domain>`, []string{"libvirt", "container"}},
		{"unknown unit", `<domain type='kvm'><memory unit='furlongs'>1</memory></domain>`, []string{"<memory unit=", "furlongs"}},
		{"absurd memory", `<domain type='kvm'><memory unit='TiB'>17</memory></domain>`, []string{"<memory>", "16 TiB"}},
		{"overflowing memory", `<domain type='kvm'><memory unit='KiB'>99999999999999999999</memory></domain>`, []string{"<memory>", "not a whole number"}},
		{"absurd CPUs", `<domain type='kvm'><vcpu>2048</vcpu></domain>`, []string{"<vcpu>", "2048"}},
		{"bad MAC", `<domain type='kvm'><devices><interface type='network'><mac address='52:54:00:xx:00:01'/><source network='default'/></interface></devices></domain>`,
			[]string{"interface 1", `"default"`, `"52:54:00:xx:00:01"`}},
		{"oversize", string(oversize(`<!-- padding padding padding -->`)), []string{"libvirt", "larger than"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := ParseLibvirt([]byte(tc.doc))
			if m != nil {
				t.Errorf("a machine came with the error")
			}
			wantError(t, err, tc.want...)
		})
	}
}

func FuzzParseLibvirt(f *testing.F) {
	f.Add(readTestdata(f, "debian12-virt-install.xml"))
	f.Add([]byte(`<domain type='kvm'><memory unit='GiB'>16</memory><vcpu>4</vcpu><devices><interface type='bridge'><mac address='52:54:00:00:00:01'/></interface></devices></domain>`))
	f.Add([]byte(`<domain type='xen'><bootloader>pygrub</bootloader><os><type>linux</type><loader type='rom'>ovmf.fd</loader></os></domain>`))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := ParseLibvirt(data)
		checkInvariants(t, "libvirt", m, err)
	})
}
