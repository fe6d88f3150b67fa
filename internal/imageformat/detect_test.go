package imageformat

import (
	"archive/tar"
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// qemuImg makes an image of format fmt (with options) by qemu-img, as the
// vendors' tools would have.
func qemuImg(t *testing.T, format string, opts ...string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "disk."+format)
	args := append([]string{"create", "-q", "-f", format}, opts...)
	if out, err := exec.Command("qemu-img", append(args, path, "8M")...).CombinedOutput(); err != nil {
		t.Fatalf("qemu-img create -f %s %v: %v: %s", format, opts, err, out)
	}
	return path
}

func detectFile(t *testing.T, path string) (Format, error) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	info, _ := f.Stat()
	return Detect(f, info.Size())
}

func TestDetectsImagesMadeByQemuImg(t *testing.T) {
	for _, tc := range []struct {
		format string
		opts   []string
		want   Format
	}{
		{"qcow2", nil, QCOW2},
		{"vmdk", []string{"-o", "subformat=monolithicSparse"}, VMDKSparse},
		{"vmdk", []string{"-o", "subformat=streamOptimized"}, VMDKStream},
		{"vmdk", []string{"-o", "subformat=monolithicFlat"}, VMDKText},
		{"vmdk", []string{"-o", "subformat=twoGbMaxExtentSparse"}, VMDKText},
		{"vdi", nil, VDI},
		{"vpc", []string{"-o", "subformat=dynamic"}, VHDDynamic},
		{"vpc", []string{"-o", "subformat=fixed"}, VHDFixed},
		{"vhdx", nil, VHDX},
	} {
		got, err := detectFile(t, qemuImg(t, tc.format, tc.opts...))
		if err != nil || got != tc.want {
			t.Errorf("qemu-img -f %s %v: detected %v, %v; want %s", tc.format, tc.opts, got, err, tc.want)
		}
		if got.QEMUFormat() == "" {
			t.Errorf("%s has no qemu-img format", got)
		}
	}
}

// samples are the text and archive formats, written as each vendor does.
func samples(t testing.TB) map[Format][]byte {
	mbr := make([]byte, 4096)
	mbr[510], mbr[511] = 0x55, 0xaa
	var ova bytes.Buffer
	tw := tar.NewWriter(&ova)
	ovf := []byte(`<?xml version="1.0"?><Envelope xmlns="http://schemas.dmtf.org/ovf/envelope/1"><References/></Envelope>`)
	tw.WriteHeader(&tar.Header{Name: "vm.ovf", Mode: 0o644, Size: int64(len(ovf)), Format: tar.FormatUSTAR})
	tw.Write(ovf)
	tw.Close()
	return map[Format][]byte{
		Raw: mbr,
		OVA: ova.Bytes(),
		OVF: []byte(`<?xml version="1.0" encoding="UTF-8"?>
<ovf:Envelope xmlns:ovf="http://schemas.dmtf.org/ovf/envelope/1" xmlns:rasd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData">
  <ovf:References/>
</ovf:Envelope>`),
		VMX: []byte(`.encoding = "UTF-8"
config.version = "8"
virtualHW.version = "19"
displayName = "web"
memsize = "2048"
`),
		VBox: []byte(`<?xml version="1.0"?>
<VirtualBox xmlns="http://www.virtualbox.org/" version="1.16-linux">
  <Machine uuid="{0b2b5e1c-0000-0000-0000-000000000000}" name="web"/>
</VirtualBox>`),
		LibvirtXML: []byte(`<domain type='kvm'>
  <name>web</name>
  <memory unit='KiB'>1048576</memory>
</domain>`),
		XLConfig: []byte(`name = "web"
type = "hvm"
memory = 1024
vcpus = 2
disk = [ 'format=raw, vdev=xvda, access=rw, target=/srv/web.img' ]
`),
		VMDKText: []byte(`# Disk DescriptorFile
version=1
CID=fffffffe
parentCID=ffffffff
createType="twoGbMaxExtentSparse"
RW 4192256 SPARSE "web-s001.vmdk"
`),
	}
}

func TestDetectsTextAndArchiveFormats(t *testing.T) {
	for want, data := range samples(t) {
		got, err := Detect(bytes.NewReader(data), int64(len(data)))
		if err != nil || got != want {
			t.Errorf("%s sample: detected %v, %v", want, got, err)
		}
	}
}

func TestRefusesWhatItDoesNotKnow(t *testing.T) {
	var rootTree bytes.Buffer
	tw := tar.NewWriter(&rootTree)
	tw.WriteHeader(&tar.Header{Name: "bin/", Typeflag: tar.TypeDir, Mode: 0o755})
	tw.Close()
	for name, data := range map[string][]byte{
		"a tar not led by a .ovf": rootTree.Bytes(),
		"zeros":                   make([]byte, 4096),
		"empty":                   {},
		"other XML":               []byte(`<?xml version="1.0"?><html><body/></html>`),
		"entity XML":              []byte(`<?xml version="1.0"?><!DOCTYPE domain [<!ENTITY x SYSTEM "file:///etc/passwd">]><domain>&x;</domain>`),
		"qcow2 version 9":         append([]byte("QFI\xfb\x00\x00\x00\x09"), make([]byte, 600)...),
		"shell script":            []byte("#!/bin/sh\necho hello\n"),
		"half a VHD footer":       append(make([]byte, 512), []byte("conectix")...),
	} {
		if got, err := Detect(bytes.NewReader(data), int64(len(data))); err == nil {
			t.Errorf("%s: detected %s", name, got)
		} else if name != "empty" && !errors.Is(err, ErrUnknown) {
			t.Errorf("%s: %v, want ErrUnknown", name, err)
		}
	}
}

func FuzzDetect(f *testing.F) {
	for _, data := range samples(f) {
		f.Add(data)
	}
	f.Add([]byte("QFI\xfb\x00\x00\x00\x03"))
	f.Add([]byte("KDMV\x01\x00\x00\x00\x03\x00\x01\x00"))
	f.Fuzz(func(t *testing.T, data []byte) {
		got, err := Detect(bytes.NewReader(data), int64(len(data)))
		if err == nil && got == "" {
			t.Fatal("no error and no format")
		}
	})
}

func TestDetectsADescriptorPaddedWithNULs(t *testing.T) {
	// qemu-img convert pads the descriptor of a converted disk to a sector.
	text := "# Disk DescriptorFile\nversion=1\ncreateType=\"twoGbMaxExtentSparse\"\nRW 8 SPARSE \"d-s001.vmdk\"\n"
	data := append([]byte(text), make([]byte, 512-len(text))...)
	if got, err := Detect(bytes.NewReader(data), int64(len(data))); err != nil || got != VMDKText {
		t.Errorf("padded descriptor: detected %v, %v", got, err)
	}
}

// Formats qemu-img reads but polyvisor does not import are told by their
// magic, so that the import can say how to convert them.
func TestDetectsFormatsToConvert(t *testing.T) {
	for _, tc := range []struct{ format string }{{"qed"}, {"parallels"}} {
		got, err := detectFile(t, qemuImg(t, tc.format))
		if err != nil || got.ConvertFrom() != tc.format || got.QEMUFormat() != "" {
			t.Errorf("qemu-img -f %s: detected %v (convert from %q), %v", tc.format, got, got.ConvertFrom(), err)
		}
	}
	bochs := make([]byte, 512)
	copy(bochs, "Bochs Virtual HD Image\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00Redolog\x00")
	cloop := append([]byte("#!/bin/sh\n#V2.0 Format\nmodprobe cloop file=$0 && mount -r -t iso9660 /dev/cloop $1\n"), make([]byte, 200)...)
	dmg := make([]byte, 4096)
	copy(dmg[4096-512:], "koly\x00\x00\x00\x04\x00\x00\x02\x00")
	for want, data := range map[Format][]byte{Bochs: bochs, Cloop: cloop, DMG: dmg} {
		got, err := Detect(bytes.NewReader(data), int64(len(data)))
		if err != nil || got != want || got.ConvertFrom() == "" {
			t.Errorf("%s: detected %v, %v", want, got, err)
		}
	}
}

// An xl.cfg without a disk line is still an xl.cfg (the import then
// refuses it for having no disk); other key = value text is not.
func TestDetectsAnXLConfigWithoutDisk(t *testing.T) {
	for _, text := range []string{
		"name = \"nodisk\"\ntype = \"hvm\"\nmemory = 512\nvif = [ 'bridge=xenbr0' ]\n",
		"# a PV guest booted over the network\nname='netboot'\nbootloader = \"pygrub\"\nmemory=256\n",
	} {
		if got, err := Detect(strings.NewReader(text), int64(len(text))); err != nil || got != XLConfig {
			t.Errorf("%q: detected %v, %v; want %s", text, got, err, XLConfig)
		}
	}
	for _, text := range []string{
		"name = \"x\"\nversion = 3\n",
		"[section]\nname = \"x\"\ntype = \"library\"\n",
	} {
		if got, err := Detect(strings.NewReader(text), int64(len(text))); err == nil {
			t.Errorf("%q: detected %v", text, got)
		}
	}
}
