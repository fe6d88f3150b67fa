package e2e

import (
	"archive/tar"
	"bytes"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/polyvisor/polyvisor/internal/layout"
	"github.com/polyvisor/polyvisor/internal/network"
	"github.com/polyvisor/polyvisor/internal/testenv"
	"github.com/polyvisor/polyvisor/pkg/api"
)

// knownText is written into a guest before it is exported, and looked for
// in what comes back.
const knownText = "polyvisor-import-check"

// templateDisk is the qcow2 base of an imported VM template.
func templateDisk(d *testenv.Daemon, id string) string {
	return filepath.Join(layout.New(d.StateDir).TemplatesDir(), id, "disk.qcow2")
}

// qemuImg runs qemu-img, failing the test on error.
func qemuImg(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command("qemu-img", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("qemu-img %v: %v: %s", args, err, out)
	}
	return string(out)
}

// sameDisk asserts that two images hold the same guest-visible content.
func sameDisk(t *testing.T, a, b string) {
	t.Helper()
	if out, err := exec.Command("qemu-img", "compare", "-q", a, b).CombinedOutput(); err != nil {
		t.Errorf("%s and %s differ: %v %s", a, b, err, out)
	}
}

// leftovers lists staging and work directories an import left in the
// template store.
func leftovers(t *testing.T, d *testenv.Daemon) []string {
	t.Helper()
	entries, _ := os.ReadDir(layout.New(d.StateDir).TemplatesDir())
	var left []string
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".build-") {
			left = append(left, e.Name())
		}
	}
	return left
}

// mustFail runs a command that must fail with one line naming want.
func mustFail(t *testing.T, d *testenv.Daemon, want string, args ...string) {
	t.Helper()
	out, errOut, code := d.Run(args...)
	if code == 0 {
		t.Errorf("%v succeeded: %s", args, out)
		return
	}
	if lines := strings.Split(strings.TrimSpace(errOut), "\n"); !strings.Contains(errOut, want) || !strings.HasPrefix(lines[len(lines)-1], "Error: ") {
		t.Errorf("%v: want an error naming %q, got %q", args, want, errOut)
	}
}

func TestImportAndExportVMs(t *testing.T) {
	requireVMTemplates(t)
	d := env.main
	dir := t.TempDir()

	// A guest of the BIOS firmware template carries GRUB and our agent, so
	// what comes back from an export boots and answers exec.
	launch(t, d, "busybox-bios", "e2e-src", "--type", "vm", "--cpus", "2", "--memory", "320MiB")
	d.Must(t, "exec", "e2e-src", "--", "sh", "-c", "echo "+knownText+" > /known.txt && sync")
	mustFail(t, d, "stop it first", "export", "e2e-src", filepath.Join(dir, "running.ova"), "--format", "ova")
	d.Must(t, "stop", "e2e-src")

	ova := filepath.Join(dir, "src.ova")
	d.Must(t, "export", "e2e-src", ova, "--format", "ova")
	checkOVA(t, ova)
	mustFail(t, d, "exists", "export", "e2e-src", ova, "--format", "ova")
	mustFail(t, d, "format", "export", "e2e-src", filepath.Join(dir, "x.tar"), "--format", "tar")
	disks := map[string]string{}
	for _, format := range []string{"qcow2", "vmdk", "vhdx"} {
		disks[format] = filepath.Join(dir, "src."+format)
		d.Must(t, "export", "e2e-src", disks[format], "--format", format)
		if got := qemuImg(t, "info", "--output", "json", disks[format]); !strings.Contains(got, `"format": "`+format+`"`) {
			t.Errorf("export --format %s wrote: %s", format, got)
		}
	}
	// What VirtualBox, Virtual PC and raw dd users bring.
	for name, args := range map[string][]string{
		"vdi": {"-O", "vdi"}, "vhd": {"-O", "vpc"}, "vhd-fixed": {"-O", "vpc", "-o", "subformat=fixed"}, "raw": {"-O", "raw"},
		"vmdk-stream":  {"-O", "vmdk", "-o", "subformat=streamOptimized"},
		"vmdk-extents": {"-O", "vmdk", "-o", "subformat=twoGbMaxExtentSparse"}, // a text descriptor naming its extent files
	} {
		disks[name] = filepath.Join(dir, "src-"+name+".img")
		qemuImg(t, append(append([]string{"convert"}, args...), disks["qcow2"], disks[name])...)
	}

	t.Run("ova-boots-with-its-cpus-memory-and-files", func(t *testing.T) {
		d.Must(t, "import", ova, "e2e-ova", "--start")
		t.Cleanup(func() { d.Run("delete", "--force", "e2e-ova"); d.Run("template", "delete", "e2e-ova.vm.amd64") })
		g := info(t, d, "e2e-ova")
		if g.CPUs != 2 || g.Memory != 320<<20 || g.State != api.StateRunning {
			t.Errorf("imported OVA guest: cpus %d memory %d state %s, want 2, 320 MiB, running", g.CPUs, g.Memory, g.State)
		}
		if got := strings.TrimSpace(d.Must(t, "exec", "e2e-ova", "--", "cat", "/known.txt")); got != knownText {
			t.Errorf("the file written before export reads %q", got)
		}
	})

	t.Run("every-disk-format-comes-back-the-same", func(t *testing.T) {
		for name, path := range disks {
			id := "e2e-disk-" + name
			out := d.Must(t, "import", path, id, "--as", "template")
			if !strings.Contains(out, "Template "+id+".vm.amd64 imported") {
				t.Errorf("import %s: %s", name, out)
			}
			sameDisk(t, disks["qcow2"], templateDisk(d, id+".vm.amd64"))
			d.Must(t, "template", "delete", id+".vm.amd64")
		}
	})

	t.Run("vmdk-boots", func(t *testing.T) {
		d.Must(t, "import", disks["vmdk"], "e2e-vmdk", "--start", "--memory", "256MiB")
		t.Cleanup(func() { d.Run("delete", "--force", "e2e-vmdk"); d.Run("template", "delete", "e2e-vmdk.vm.amd64") })
		if got := strings.TrimSpace(d.Must(t, "exec", "e2e-vmdk", "--", "cat", "/known.txt")); got != knownText {
			t.Errorf("the file written before export reads %q", got)
		}
	})

	t.Run("definitions-map-cpus-memory-and-warn", func(t *testing.T) {
		defs := map[string]struct {
			file, text string
			cpus       int
			memory     int64
			warning    string
		}{
			"vmx": {"guest.vmx", `.encoding = "UTF-8"
config.version = "8"
virtualHW.version = "19"
displayName = "E2E VMware Guest"
guestOS = "debian12-64"
numvcpus = "3"
memsize = "288"
scsi0.present = "TRUE"
scsi0.virtualDev = "lsilogic"
scsi0:0.present = "TRUE"
scsi0:0.fileName = "src.vmdk"
ethernet0.present = "TRUE"
ethernet0.addressType = "static"
ethernet0.address = "00:50:56:01:02:03"
sound.present = "TRUE"
`, 3, 288 << 20, "sound"},
			"libvirt": {"guest.xml", `<domain type="kvm">
  <name>e2e-libvirt</name>
  <memory unit="MiB">272</memory>
  <vcpu placement="static">2</vcpu>
  <os><type arch="x86_64" machine="q35">hvm</type></os>
  <devices>
    <disk type="file" device="disk"><driver name="qemu" type="qcow2"/><source file="` + disks["qcow2"] + `"/><target dev="vda" bus="virtio"/></disk>
    <disk type="file" device="cdrom"><source file="/srv/iso/debian.iso"/><target dev="sda" bus="sata"/><readonly/></disk>
    <interface type="network"><mac address="52:54:00:aa:bb:cc"/><source network="default"/><model type="virtio"/></interface>
  </devices>
</domain>
`, 2, 272 << 20, "cdrom"},
			"vbox": {"guest.vbox", `<?xml version="1.0"?>
<VirtualBox xmlns="http://www.virtualbox.org/" version="1.19-linux">
  <Machine uuid="{4c1f2a0e-8d3b-4f5e-9a61-2b7c9d0e1f24}" name="E2E VirtualBox" OSType="Debian_64">
    <MediaRegistry>
      <HardDisks>
        <HardDisk uuid="{a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5e}" location="src-vdi.img" format="VDI" type="Normal"/>
      </HardDisks>
    </MediaRegistry>
    <Hardware>
      <CPU count="2"/>
      <Memory RAMSize="296"/>
      <Network>
        <Adapter slot="0" enabled="true" MACAddress="080027AB12CE" type="82540EM"><NAT/></Adapter>
      </Network>
      <AudioAdapter driver="Pulse" enabled="true"/>
      <StorageControllers>
        <StorageController name="SATA" type="AHCI" PortCount="1">
          <AttachedDevice type="HardDisk" port="0" device="0"><Image uuid="{a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5e}"/></AttachedDevice>
        </StorageController>
      </StorageControllers>
    </Hardware>
  </Machine>
</VirtualBox>
`, 2, 296 << 20, "audio"},
			"xl": {"guest.cfg", `name = "e2e-xen"
type = "hvm"
vcpus = 2
memory = 304
disk = [ 'format=raw, vdev=xvda, access=rw, target=` + disks["raw"] + `' ]
vif = [ 'mac=00:16:3e:11:22:33,bridge=xenbr0' ]
soundhw = "hda"
`, 2, 304 << 20, "sound"},
		}
		for kind, def := range defs {
			path := filepath.Join(dir, def.file)
			if err := os.WriteFile(path, []byte(def.text), 0o644); err != nil {
				t.Fatal(err)
			}
			name := "e2e-def-" + kind
			_, errOut, code := d.Run("import", path, name)
			if code != 0 {
				t.Errorf("import %s: %s", kind, errOut)
				continue
			}
			if !strings.Contains(strings.ToLower(errOut), def.warning) {
				t.Errorf("import %s: want a warning naming %q, got %q", kind, def.warning, errOut)
			}
			if g := info(t, d, name); g.CPUs != def.cpus || g.Memory != def.memory || g.Type != "vm" {
				t.Errorf("import %s: cpus %d memory %d type %s, want %d and %d", kind, g.CPUs, g.Memory, g.Type, def.cpus, def.memory)
			}
			d.Must(t, "delete", name)
			d.Must(t, "template", "delete", name+".vm.amd64")
		}
	})

	t.Run("uefi-round-trips", func(t *testing.T) {
		launch(t, d, "buefi", "e2e-uefi-src", "--type", "vm")
		d.Must(t, "stop", "e2e-uefi-src")
		uefiOVA := filepath.Join(dir, "uefi.ova")
		d.Must(t, "export", "e2e-uefi-src", uefiOVA, "--format", "ova")
		d.Must(t, "import", uefiOVA, "e2e-uefi", "--start")
		t.Cleanup(func() { d.Run("delete", "--force", "e2e-uefi"); d.Run("template", "delete", "e2e-uefi.vm.amd64") })
		var tm api.Template
		jsonUnmarshal(d.Must(t, "template", "show", "e2e-uefi.vm.amd64", "--format", "json"), &tm)
		if tm.Boot == nil || tm.Boot.Firmware != "uefi" || !tm.Boot.NoAgent {
			t.Errorf("template of a UEFI appliance boots %+v", tm.Boot)
		}
		if got := strings.TrimSpace(d.Must(t, "exec", "e2e-uefi", "--", "hostname")); got != "e2e-uefi" {
			t.Errorf("the UEFI guest calls itself %q", got)
		}
	})

	t.Run("a-tampered-ova-is-refused-and-leaves-nothing", func(t *testing.T) {
		bad := filepath.Join(dir, "tampered.ova")
		rewriteTar(t, ova, bad, func(name string, body []byte) []byte {
			if strings.HasSuffix(name, ".vmdk") {
				body = bytes.Clone(body)
				body[len(body)/2] ^= 0xff
			}
			return body
		})
		mustFail(t, d, "does not match the manifest", "import", bad, "e2e-tampered")
		if _, _, code := d.Run("template", "show", "e2e-tampered.vm.amd64"); code == 0 {
			t.Error("a template was left by the refused import")
		}
		if _, _, code := d.Run("info", "e2e-tampered"); code == 0 {
			t.Error("a guest was left by the refused import")
		}
		if left := leftovers(t, d); len(left) > 0 {
			t.Errorf("the refused import left %v", left)
		}
	})
}

// checkOVA asserts the layout DSP0243 asks of an OVA: the descriptor
// first, a manifest with SHA-256 digests, then the disk.
func checkOVA(t *testing.T, path string) {
	t.Helper()
	var names []string
	var manifest string
	readTar(t, path, func(hdr *tar.Header, body []byte) {
		names = append(names, hdr.Name)
		if strings.HasSuffix(hdr.Name, ".mf") {
			manifest = string(body)
		}
	})
	if len(names) != 3 || !strings.HasSuffix(names[0], ".ovf") || !strings.HasSuffix(names[1], ".mf") || !strings.HasSuffix(names[2], ".vmdk") {
		t.Errorf("OVA members %v, want .ovf, .mf, .vmdk", names)
	}
	if strings.Count(manifest, "SHA256(") != 2 {
		t.Errorf("manifest:\n%s", manifest)
	}
}

func readTar(t *testing.T, path string, fn func(*tar.Header, []byte)) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tr := tar.NewReader(f)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		fn(hdr, body)
	}
}

// rewriteTar copies the tar at src to dst, passing each member's body
// through edit.
func rewriteTar(t *testing.T, src, dst string, edit func(name string, body []byte) []byte) {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	readTar(t, src, func(hdr *tar.Header, body []byte) {
		body = edit(hdr.Name, body)
		hdr.Size = int64(len(body))
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatal(err)
		}
		tw.Write(body)
	})
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestImportKeepsTheVendorsMACs(t *testing.T) {
	requireRoot(t)
	d := netnsDaemon(t)
	dir := t.TempDir()
	qemuImg(t, "create", "-q", "-f", "vmdk", filepath.Join(dir, "disk.vmdk"), "64M")
	vmx := filepath.Join(dir, "two-nics.vmx")
	if err := os.WriteFile(vmx, []byte(`displayName = "Two NICs"
numvcpus = "1"
memsize = "128"
scsi0:0.present = "TRUE"
scsi0:0.fileName = "disk.vmdk"
ethernet0.present = "TRUE"
ethernet0.addressType = "static"
ethernet0.address = "00:50:56:3f:00:01"
ethernet1.present = "TRUE"
ethernet1.addressType = "generated"
ethernet1.generatedAddress = "00:0c:29:aa:bb:cc"
`), 0o644); err != nil {
		t.Fatal(err)
	}
	_, errOut, code := d.Run("import", vmx, "--network", "polyvisor0")
	if code != 0 {
		t.Fatalf("import: %s", errOut)
	}
	if strings.Contains(errOut, "not connected") {
		t.Errorf("a NIC was left unconnected: %q", errOut)
	}
	// Both NICs join the one network named, each with its MAC, in order.
	cfg := d.Must(t, "config", "show", "two-nics")
	first, second := strings.Index(cfg, "mac: 00:50:56:3f:00:01"), strings.Index(cfg, "mac: 00:0c:29:aa:bb:cc")
	if first < 0 || second < first {
		t.Errorf("the guest does not keep its two VMware MACs in order:\n%s", cfg)
	}
	// The running guest has a tap on the bridge for each NIC.
	d.Must(t, "start", "two-nics")
	out, err := exec.Command("ip", "-n", d.Netns, "-o", "link", "show", "master", "polyvisor0").Output()
	if err != nil {
		t.Fatalf("ip link show master polyvisor0: %v", err)
	}
	if taps := strings.Count(string(out), network.HostIfPrefix); taps != 2 {
		t.Errorf("%d taps on polyvisor0 for a guest with two NICs:\n%s", taps, out)
	}
	d.Must(t, "delete", "--force", "two-nics")
	d.Must(t, "template", "delete", "two-nics.vm.amd64")
}

// A definition's second disk is imported too, as the guest's second
// virtio disk: the running guest sees it as /dev/vdb, of its size and
// with what was written into it, and the guest's snapshots cover it
// (issue 18).
func TestImportKeepsEveryDisk(t *testing.T) {
	requireVMTemplates(t)
	d := env.main
	dir := t.TempDir()
	launch(t, d, "busybox-bios", "e2e-2d-src", "--type", "vm")
	d.Must(t, "stop", "e2e-2d-src")
	boot := filepath.Join(dir, "boot.qcow2")
	d.Must(t, "export", "e2e-2d-src", boot, "--format", "qcow2")
	d.Must(t, "delete", "e2e-2d-src")

	// The data disk: 24 MiB, a marker at 1 MiB, handed over as a VMDK.
	const dataSize, marker = 24 << 20, "polyvisor-second-disk"
	raw := make([]byte, dataSize)
	copy(raw[1<<20:], marker)
	if err := os.WriteFile(filepath.Join(dir, "data.raw"), raw, 0o644); err != nil {
		t.Fatal(err)
	}
	qemuImg(t, "convert", "-f", "raw", "-O", "vmdk", filepath.Join(dir, "data.raw"), filepath.Join(dir, "data.vmdk"))
	xml := filepath.Join(dir, "two-disks.xml")
	if err := os.WriteFile(xml, []byte(`<domain type="kvm">
  <name>e2e-2d</name>
  <memory unit="MiB">256</memory>
  <vcpu>1</vcpu>
  <os><type arch="x86_64" machine="q35">hvm</type></os>
  <devices>
    <disk type="file" device="disk"><driver name="qemu" type="qcow2"/><source file="boot.qcow2"/><target dev="vda" bus="virtio"/></disk>
    <disk type="file" device="disk"><driver name="qemu" type="vmdk"/><source file="data.vmdk"/><target dev="vdb" bus="virtio"/></disk>
  </devices>
</domain>
`), 0o644); err != nil {
		t.Fatal(err)
	}
	_, errOut, code := d.Run("import", xml, "--start")
	t.Cleanup(func() { d.Run("delete", "--force", "e2e-2d"); d.Run("template", "delete", "e2e-2d.vm.amd64") })
	if code != 0 {
		t.Fatalf("import of a two-disk definition: %s", errOut)
	}
	if strings.Contains(errOut, "data.vmdk") {
		t.Errorf("the import warns of the second disk: %q", errOut)
	}
	var tm api.Template
	jsonUnmarshal(d.Must(t, "template", "show", "e2e-2d.vm.amd64", "--format", "json"), &tm)
	if tm.Boot == nil || len(tm.Boot.DataDisks) != 1 {
		t.Fatalf("template of a two-disk definition boots %+v", tm.Boot)
	}
	var data *api.Disk
	g := info(t, d, "e2e-2d")
	for i := range g.Disks {
		if g.Disks[i].Name == "data1" {
			data = &g.Disks[i]
		}
	}
	if data == nil || data.Size != dataSize {
		t.Fatalf("the guest's disks %+v: want data1 of %d bytes", g.Disks, dataSize)
	}

	// Inside: the boot disk booted, and the second disk is /dev/vdb.
	if got := strings.TrimSpace(d.Must(t, "exec", "e2e-2d", "--", "cat", "/sys/block/vdb/size")); got != "49152" {
		t.Errorf("/sys/block/vdb/size in the guest: %q, want 49152 sectors (24 MiB)", got)
	}
	got := d.Must(t, "exec", "e2e-2d", "--", "sh", "-c", "dd if=/dev/vdb bs=512 skip=2048 count=1 2>/dev/null | head -c "+strconv.Itoa(len(marker)))
	if got != marker {
		t.Errorf("/dev/vdb at 1 MiB reads %q, want %q", got, marker)
	}

	// A snapshot of the running guest covers both disks; deleting it
	// removes it from both.
	d.Must(t, "snapshot", "create", "e2e-2d", "s1")
	for _, disk := range g.Disks {
		if disk.Name != "root" && disk.Name != "data1" {
			continue
		}
		if out := qemuImg(t, "snapshot", "-U", "-l", disk.Path); !strings.Contains(out, "s1") {
			t.Errorf("disk %s has no snapshot s1: %s", disk.Name, out)
		}
	}
	d.Must(t, "snapshot", "delete", "e2e-2d", "s1")
	if out := qemuImg(t, "snapshot", "-U", "-l", data.Path); strings.Contains(out, "s1") {
		t.Errorf("disk data1 keeps the deleted snapshot s1: %s", out)
	}
}
