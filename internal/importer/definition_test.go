package importer

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/polyvisor/polyvisor/internal/ovf"
	"github.com/polyvisor/polyvisor/internal/template"
	"github.com/polyvisor/polyvisor/pkg/api"
)

// qcow2At makes a small qcow2 disk at path with qemu-img.
func qcow2At(t *testing.T, path string) {
	t.Helper()
	requireQemuImg(t)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("qemu-img", "create", "-q", "-f", "qcow2", path, "1M").CombinedOutput(); err != nil {
		t.Fatalf("qemu-img create %s: %v: %s", path, err, out)
	}
}

// writeFile writes text to dir/name and returns its path.
func writeFile(t *testing.T, dir, name, text string) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// importOf imports path into a fresh store.
func importOf(t *testing.T, req Request) (*Result, template.Store, error) {
	t.Helper()
	store := template.Store{Dir: t.TempDir()}
	res, err := Importer{Templates: store}.Import(context.Background(), req, nil)
	return res, store, err
}

// wantRefusal checks that err is an invalid-request error saying each of
// parts, on one line, and that the store holds nothing.
func wantRefusal(t *testing.T, err error, store template.Store, parts ...string) {
	t.Helper()
	if err == nil {
		t.Fatal("imported; want a refusal")
	}
	if !errors.Is(err, api.ErrInvalid) {
		t.Errorf("%v: want an invalid-request error", err)
	}
	if strings.Contains(err.Error(), "\n") {
		t.Errorf("%q: not one line", err)
	}
	for _, p := range parts {
		if !strings.Contains(err.Error(), p) {
			t.Errorf("%v: does not say %q", err, p)
		}
	}
	if left, _ := os.ReadDir(store.Dir); len(left) > 0 {
		t.Errorf("a refused import left %v", left)
	}
}

// A failed import still returns the warnings found before it failed: they
// may say why (issue 18).
func TestFailedImportKeepsItsWarnings(t *testing.T) {
	dir := t.TempDir()
	vmx := writeFile(t, dir, "web.vmx", `config.version = "8"
virtualHW.version = "19"
displayName = "web"
sound.present = "TRUE"
scsi0.present = "TRUE"
scsi0:0.present = "TRUE"
scsi0:0.fileName = "missing.vmdk"
scsi0:1.present = "TRUE"
scsi0:1.fileName = "data.vmdk"
`)
	res, _, err := importOf(t, Request{Path: vmx})
	if err == nil || !errors.Is(err, api.ErrNotFound) {
		t.Fatalf("import of a .vmx whose disk is missing: %v, want not found", err)
	}
	if res == nil || res.Template != nil {
		t.Fatalf("result %+v: want the warnings and no template", res)
	}
	for _, want := range []string{"sound card"} {
		if !slices.ContainsFunc(res.Machine.Warnings, func(w string) bool { return strings.Contains(w, want) }) {
			t.Errorf("warnings %q: none says %q", res.Machine.Warnings, want)
		}
	}
}

// An xl.cfg without a disk line is read as one, and refused for it.
func TestImportRefusesAnXLConfigWithoutDisk(t *testing.T) {
	cfg := writeFile(t, t.TempDir(), "nodisk.cfg", "name = \"nodisk\"\ntype = \"hvm\"\nmemory = 512\nvif = [ 'mac=00:16:3e:00:00:01,bridge=xenbr0' ]\n")
	_, store, err := importOf(t, Request{Path: cfg})
	wantRefusal(t, err, store, cfg, "Xen xl config defines no hard disk", "no disk = [ ... ] entry")
}

// A disk qemu-img reads but polyvisor does not import is refused with the
// command that converts it, whether given alone or named by a definition.
func TestImportRefusesQEDWithTheConvertCommand(t *testing.T) {
	requireQemuImg(t)
	dir := t.TempDir()
	qed := filepath.Join(dir, "old disk.qed")
	if out, err := exec.Command("qemu-img", "create", "-q", "-f", "qed", qed, "1M").CombinedOutput(); err != nil {
		t.Fatalf("qemu-img: %v: %s", err, out)
	}
	command := "qemu-img convert -O qcow2 '" + qed + "' '" + filepath.Join(dir, "old disk.qcow2") + "'"
	_, store, err := importOf(t, Request{Path: qed})
	wantRefusal(t, err, store, "qed image", command)

	cfg := writeFile(t, dir, "old.cfg", "name = \"old\"\nbuilder = \"hvm\"\nmemory = 256\ndisk = [ 'format=qed, vdev=hda, target="+qed+"' ]\n")
	_, store, err = importOf(t, Request{Path: cfg})
	wantRefusal(t, err, store, "boot disk 1", command)
}

// A .vmx made on ESXi names its disk by datastore path; the disk is found
// beside the .vmx.
func TestImportFindsADatastoreDiskBesideTheVMX(t *testing.T) {
	for name, fileName := range map[string]string{
		"vmfs path":      "/vmfs/volumes/datastore1/web/web.vmdk",
		"datastore path": "[datastore1] web/web.vmdk",
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			qcow2At(t, filepath.Join(dir, "web.vmdk")) // content, not name, tells the format
			vmx := writeFile(t, dir, "web.vmx", "config.version = \"8\"\nvirtualHW.version = \"19\"\ndisplayName = \"web\"\nscsi0.present = \"TRUE\"\nscsi0:0.present = \"TRUE\"\nscsi0:0.fileName = \""+fileName+"\"\n")
			res, _, err := importOf(t, Request{Path: vmx, Name: "web"})
			if err != nil {
				t.Fatalf("import: %v", err)
			}
			if !strings.Contains(res.Template.Origin, vmx) || !slices.ContainsFunc(res.Machine.Warnings, func(w string) bool { return strings.Contains(w, "beside the .vmx") }) {
				t.Errorf("template %+v, warnings %q: want it imported with a warning saying where the disk was found", res.Template, res.Machine.Warnings)
			}
		})
	}
}

// A boot disk that is not an image file (a host block device, a network
// disk, a raw device mapping) is refused, naming it and what to do; the
// import never boots the data disk instead, unless --disk asks.
func TestImportRefusesABootDiskThatIsADevice(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "data.qcow2")
	qcow2At(t, data)
	xl := writeFile(t, dir, "db.cfg", "name = \"db\"\nbuilder = \"hvm\"\nmemory = 512\ndisk = [ 'phy:/dev/vg0/db-root,hda,w', '"+data+",qcow2,hdb,w' ]\n")
	libvirt := writeFile(t, dir, "db.xml", `<domain type='kvm'><name>db</name><memory unit='MiB'>512</memory><devices>
<disk type='network' device='disk'><source protocol='rbd' name='pool/db-root'/><target dev='vda'/></disk>
<disk type='file' device='disk'><driver type='qcow2'/><source file='`+data+`'/><target dev='vdb'/></disk>
<disk type='block' device='disk'><source dev='/dev/sdx'/><target dev='vdc'/></disk>
</devices></domain>`)
	vmx := writeFile(t, dir, "db.vmx", "config.version = \"8\"\ndisplayName = \"db\"\nscsi0:0.present = \"TRUE\"\nscsi0:0.deviceType = \"rawDisk\"\nscsi0:0.fileName = \"rdm.vmdk\"\nscsi0:1.present = \"TRUE\"\nscsi0:1.fileName = \"data.qcow2\"\n")
	vbox := writeFile(t, dir, "db.vbox", `<?xml version="1.0"?>
<VirtualBox xmlns="http://www.virtualbox.org/" version="1.16-linux">
  <Machine uuid="{11111111-2222-4333-8444-555555555555}" name="db" OSType="Debian_64">
    <MediaRegistry><HardDisks>
      <HardDisk uuid="{aaaaaaaa-0000-4000-8000-000000000001}" location="`+data+`" format="qcow2" type="Normal"/>
    </HardDisks></MediaRegistry>
    <Hardware><Memory RAMSize="512"/></Hardware>
    <StorageControllers><StorageController name="SATA" type="AHCI" PortCount="2">
      <AttachedDevice type="HardDisk" port="0" device="0"><Image uuid="{bbbbbbbb-0000-4000-8000-000000000002}"/></AttachedDevice>
      <AttachedDevice type="HardDisk" port="1" device="0"><Image uuid="{aaaaaaaa-0000-4000-8000-000000000001}"/></AttachedDevice>
    </StorageController></StorageControllers>
  </Machine>
</VirtualBox>`)
	for _, tc := range []struct {
		path string
		want []string
	}{
		{vbox, []string{"boot disk 1 is the medium missing from the media registry {bbbbbbbb-0000-4000-8000-000000000002}", "MediaRegistry", "--disk N (2: " + data + ")"}},
		{xl, []string{"boot disk 1 is the host block device /dev/vg0/db-root", "qemu-img convert -O qcow2 /dev/vg0/db-root db-root.qcow2", "--disk N (2: " + data + ")"}},
		{libvirt, []string{"boot disk 1 is the network disk rbd:pool/db-root", "qemu-img convert -O qcow2 rbd:pool/db-root db-root.qcow2", "--disk N (2: " + data + ")"}},
		{vmx, []string{"boot disk 1 is the raw device mapping rdm.vmdk", "--disk N (2: data.qcow2)"}},
	} {
		_, store, err := importOf(t, Request{Path: tc.path})
		wantRefusal(t, err, store, tc.want...)
	}
	// --disk names another boot disk: the data disk, chosen.
	for _, path := range []string{xl, libvirt, vmx, vbox} {
		res, _, err := importOf(t, Request{Path: path, Name: "db", Disk: 2})
		if err != nil {
			t.Errorf("%s --disk 2: %v", filepath.Base(path), err)
			continue
		}
		if res.Template == nil || res.Template.Size == 0 {
			t.Errorf("%s --disk 2: template %+v", filepath.Base(path), res.Template)
		}
	}
	// --disk naming a device, or no disk at all, is refused too.
	for disk, want := range map[int]string{3: "boot disk 3 is the host block device /dev/sdx", 4: "--disk 4: the libvirt domain XML has 3 disk(s): choose one of 2: " + data, -1: "--disk -1"} {
		_, store, err := importOf(t, Request{Path: libvirt, Disk: disk})
		wantRefusal(t, err, store, want)
	}
}

// An OVF descriptor's Ethernet items are every NIC, in order, with their
// MACs: a VM with 10 NICs keeps 10 (issue 18).
func TestOVFKeepsEveryNICInOrder(t *testing.T) {
	var items strings.Builder
	var want []string
	for i := range 10 {
		mac := fmt.Sprintf("00:50:56:00:00:%02x", i)
		want = append(want, mac)
		fmt.Fprintf(&items, `<Item><rasd:Address>%s</rasd:Address><rasd:Connection>net%d</rasd:Connection><rasd:ElementName>eth%d</rasd:ElementName><rasd:InstanceID>%d</rasd:InstanceID><rasd:ResourceSubType>VmxNet3</rasd:ResourceSubType><rasd:ResourceType>10</rasd:ResourceType></Item>`+"\n", mac, i, i, 10+i)
	}
	d, err := ovf.Parse([]byte(`<?xml version="1.0"?>
<Envelope xmlns="http://schemas.dmtf.org/ovf/envelope/1" xmlns:ovf="http://schemas.dmtf.org/ovf/envelope/1" xmlns:rasd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData">
  <References/>
  <VirtualSystem ovf:id="many">
    <Info>A virtual machine</Info>
    <VirtualHardwareSection>
      <Info>Virtual hardware</Info>
` + items.String() + `    </VirtualHardwareSection>
  </VirtualSystem>
</Envelope>`))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, nic := range d.Machine.NICs {
		got = append(got, nic.MAC)
	}
	if !slices.Equal(got, want) {
		t.Errorf("NIC MACs %v, want %v", got, want)
	}
}
