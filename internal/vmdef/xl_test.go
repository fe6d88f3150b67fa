package vmdef

import (
	"strings"
	"testing"
)

func TestParseXLHVMDebian(t *testing.T) {
	m, err := ParseXL(readTestdata(t, "debian12-hvm.cfg"))
	if err != nil {
		t.Fatal(err)
	}
	// vnc, vnclisten, the pty serial port and the USB tablet are console
	// matters, left out without a word.
	checkMachine(t, m, &Machine{
		Source:   "xl",
		Name:     "debian12",
		CPUs:     4,
		Memory:   8192 << 20,
		Firmware: FirmwareUEFI,
		Disks: []Disk{
			{Path: "/srv/xen/debian12/root.qcow2", Format: "qcow2"},
			{Path: "/srv/xen/debian12/data.img", Format: "raw"},
			{Path: "/dev/vg0/debian12-scratch", Device: DeviceBlock},
		},
		NICs: []NIC{{MAC: "00:16:3e:5a:2c:11", Network: "xenbr0", Model: "e1000"}},
		Warnings: []string{
			`disk "xvdc" is the host block device "/dev/vg0/debian12-scratch" and cannot be imported; copy it into an image file first (qemu-img convert)`,
			`CD-ROM "hdc" ("/srv/iso/debian-12.5.0-amd64-netinst.iso") is not imported`,
			`sound card ("hda") is not imported`,
		},
	})
}

// TestParseXLPV reads an older PV guest, as xen-tools writes them, in the
// syntax's corners: single quotes, ';' separators, += and comments.
func TestParseXLPV(t *testing.T) {
	m, err := ParseXL([]byte(`# xen-tools
bootloader = 'pygrub'; name = 'mail'
maxvcpus   = 2
memory     = '1024'
root       = '/dev/xvda2 ro'
disk       = [ 'tap:aio:/srv/xen/domains/mail/swap.img,xvda1,w' ]
disk      += [
               'file:/srv/xen/domains/mail/disk.img,xvda2,w',  # the root
             ]
vif        = [ 'ip=10.0.0.25,mac=00:16:3E:0A:00:19' ]
pci        = [ '0000:03:00.0' ]
`))
	if err != nil {
		t.Fatal(err)
	}
	checkMachine(t, m, &Machine{
		Source: "xl",
		Name:   "mail",
		CPUs:   2,
		Memory: 1024 << 20,
		Disks: []Disk{
			{Path: "/srv/xen/domains/mail/swap.img", Format: "raw"},
			{Path: "/srv/xen/domains/mail/disk.img", Format: "raw"},
		},
		NICs: []NIC{{MAC: "00:16:3e:0a:00:19"}},
		Warnings: []string{
			`Xen PV guest (bootloader "pygrub", kernel not stated): that boot arrangement is not mapped; the disk will be booted by firmware and needs a bootloader installed in it`,
			`disk "xvda1" is attached as a partition, so its image holds a bare filesystem, which firmware cannot boot`,
			`disk "xvda2" is attached as a partition, so its image holds a bare filesystem, which firmware cannot boot`,
			`PCI pass-through "0000:03:00.0" is not imported`,
		},
	})
}

// TestParseXLOldHVM reads an xm-era HVM configuration: builder= instead of
// type=, hvmloader as the kernel, the hdc:cdrom form.
func TestParseXLOldHVM(t *testing.T) {
	m, err := ParseXL([]byte(`kernel = "/usr/lib/xen/boot/hvmloader"
builder = 'hvm'
memory = 500
vcpus = 1
name = "old"
disk = [ 'phy:vg0/old-root,hda,w', 'file:/iso/install.iso,hdc:cdrom,r', 'file:/srv/old/data.img,hdb,w' ]
usbdevice = 'host:0781:5567'
`))
	if err != nil {
		t.Fatal(err)
	}
	checkMachine(t, m, &Machine{
		Source: "xl",
		Name:   "old",
		CPUs:   1,
		Memory: 500 << 20,
		// The boot disk is the host device, kept first: booting the data
		// disk instead would be wrong.
		Disks: []Disk{{Path: "/dev/vg0/old-root", Device: DeviceBlock}, {Path: "/srv/old/data.img", Format: "raw"}},
		Warnings: []string{
			// xl reads a relative target under /dev.
			`disk "hda" is the host block device "/dev/vg0/old-root" and cannot be imported; copy it into an image file first (qemu-img convert)`,
			`CD-ROM "hdc" ("/iso/install.iso") is not imported`,
			`USB device "host:0781:5567" is not imported`,
		},
	})
}

// TestParseXLDiskSpec checks the equivalent forms xl-disk-configuration(5)
// lists, each read to the same target, format, vdev and device type.
func TestParseXLDiskSpec(t *testing.T) {
	for _, tc := range []struct {
		want  xlDisk
		specs []string
	}{
		{xlDisk{target: "/dev/vg/guest-volume", vdev: "hda"}, []string{
			"/dev/vg/guest-volume,,hda",
			"/dev/vg/guest-volume,raw,hda,rw",
			"format=raw, vdev=hda, access=rw, target=/dev/vg/guest-volume",
			"raw:/dev/vg/guest-volume,hda,w",
		}},
		{xlDisk{target: "/root/image.iso", vdev: "hdc", devtype: "cdrom"}, []string{
			"/root/image.iso,,hdc,cdrom",
			"/root/image.iso,,hdc,,cdrom",
			"/root/image.iso,raw,hdc,devtype=cdrom",
			"format=raw, vdev=hdc, access=ro, devtype=cdrom, target=/root/image.iso",
			"raw:/root/image.iso,hdc:cdrom,ro",
		}},
		{xlDisk{target: "/srv/a, b.img", vdev: "xvda"}, []string{
			"vdev=xvda, format=raw, target=/srv/a, b.img", // target= takes the rest
		}},
	} {
		for _, spec := range tc.specs {
			d, err := parseXLDisk(spec)
			if err != nil {
				t.Errorf("%q: %v", spec, err)
				continue
			}
			if d.target != tc.want.target || d.vdev != tc.want.vdev || d.devtype != tc.want.devtype {
				t.Errorf("%q = target %q vdev %q devtype %q, want %q %q %q", spec, d.target, d.vdev, d.devtype, tc.want.target, tc.want.vdev, tc.want.devtype)
			}
			if d.format != "" && d.format != "raw" {
				t.Errorf("%q: format %q, want raw", spec, d.format)
			}
		}
	}
}

func TestParseXLSyntax(t *testing.T) {
	// xl reads numbers as strtol does with base 0: 0x10 is hex, 010 octal.
	m, err := ParseXL([]byte("name = \"a \\\"quoted\\\" name\"\nvcpus=0x2\nmemory=010\nvif=['bridge=xenbr1',]\n"))
	if err != nil {
		t.Fatal(err)
	}
	if m.Name != `a "quoted" name` || m.CPUs != 2 || m.Memory != 8<<20 || len(m.NICs) != 1 || m.NICs[0].Network != "xenbr1" {
		t.Errorf("got name %q, CPUs %d, Memory %d, NICs %+v", m.Name, m.CPUs, m.Memory, m.NICs)
	}
}

func TestParseXLErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  string
		want []string
	}{
		{"no equals sign", "name = \"web\"\nmemory 1024\n", []string{"xl line 2", "expected = after memory"}},
		{"unclosed string", "name = \"web\nmemory = 1\n", []string{"xl line 1", "not closed"}},
		{"bare word", "type = hvm\n", []string{"xl line 1", "type", "must be quoted"}},
		{"two settings on a line", "memory = 1 vcpus = 2\n", []string{"xl line 1", "end of the memory setting"}},
		{"unclosed list", "disk = [ '/a.img,,xvda'\n", []string{"disk", "the end of the file"}},
		{"nested list", "disk = [ [ '/a.img' ] ]\n", []string{"xl line 1", "disk"}},
		{"odd character", "memory = 1\n$x = 2\n", []string{"xl line 2", "'$'"}},
		{"bad MAC", "vif = [ 'bridge=xenbr0', 'mac=00:16:3e:5a:2c' ]\n", []string{"vif 2", `"00:16:3e:5a:2c"`}},
		{"absurd memory", "memory = 99999999999\n", []string{"memory", "16 TiB"}},
		{"absurd CPUs", "vcpus = 4096\n", []string{"vcpus", "4096"}},
		{"unknown type", "type = \"hvx\"\n", []string{"type", "hvm, pv or pvh"}},
		{"too many positionals", "disk = [ '/a.img,raw,xvda,rw,extra' ]\n", []string{"disk", "positional"}},
		{"oversize", string(oversize("# padding padding padding\n")), []string{"xl", "larger than"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := ParseXL([]byte(tc.cfg))
			if m != nil {
				t.Errorf("a machine came with the error")
			}
			wantError(t, err, tc.want...)
		})
	}
}

func FuzzParseXL(f *testing.F) {
	f.Add(readTestdata(f, "debian12-hvm.cfg"))
	f.Add([]byte("bootloader='pygrub'\ndisk=['tap:aio:/a.img,xvda1,w']\nvif=['mac=00:16:3e:00:00:01']\n"))
	f.Add([]byte("disk += [ 'target=/a,b' ]; memory = 16777216; vcpus = 1024\n"))
	f.Add([]byte(strings.Repeat("[", 100)))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := ParseXL(data)
		checkInvariants(t, "xl", m, err)
	})
}
