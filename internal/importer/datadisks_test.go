package importer

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/polyvisor/polyvisor/pkg/api"
)

// rawDisk writes a raw disk of size bytes filled with fill, with an MBR's
// signature (a raw disk is told by its MBR).
func rawDisk(t *testing.T, path string, size int, fill byte) {
	t.Helper()
	data := bytes.Repeat([]byte{fill}, size)
	data[510], data[511] = 0x55, 0xaa
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// sameContent asserts that two images hold the same guest-visible bytes.
func sameContent(t *testing.T, a, b string) {
	t.Helper()
	if out, err := exec.Command("qemu-img", "compare", "-q", a, b).CombinedOutput(); err != nil {
		t.Errorf("%s and %s differ: %v %s", a, b, err, out)
	}
}

// Every image-file disk of a definition is imported: the boot disk as the
// template's disk.qcow2, the others, in order, as its data disks; a disk
// that is a host device is left out with its warning (issue 18).
func TestImportKeepsEveryDiskOfADefinition(t *testing.T) {
	requireQemuImg(t)
	dir := t.TempDir()
	boot, dataRaw, data := filepath.Join(dir, "boot.raw"), filepath.Join(dir, "data.raw"), filepath.Join(dir, "data.qcow2")
	rawDisk(t, boot, 2<<20, 'B')
	rawDisk(t, dataRaw, 3<<20, 'D')
	if out, err := exec.Command("qemu-img", "convert", "-f", "raw", "-O", "qcow2", dataRaw, data).CombinedOutput(); err != nil {
		t.Fatalf("qemu-img convert: %v: %s", err, out)
	}
	xml := writeFile(t, dir, "db.xml", `<domain type='kvm'><name>db</name><memory unit='MiB'>512</memory><devices>
<disk type='file' device='disk'><driver type='raw'/><source file='boot.raw'/><target dev='vda'/></disk>
<disk type='block' device='disk'><source dev='/dev/sdx'/><target dev='vdb'/></disk>
<disk type='file' device='disk'><driver type='qcow2'/><source file='`+data+`'/><target dev='vdc'/></disk>
</devices></domain>`)

	res, store, err := importOf(t, Request{Path: xml})
	if err != nil {
		t.Fatalf("import: %v", err)
	}
	tm := res.Template
	tdir := filepath.Join(store.Dir, tm.ID)
	if !slices.Equal(tm.Boot.DataDisks, []string{"data1.qcow2"}) {
		t.Fatalf("data disks %q, want data1.qcow2 (the device is not imported)", tm.Boot.DataDisks)
	}
	sameContent(t, boot, filepath.Join(tdir, tm.Boot.Disk))
	sameContent(t, data, filepath.Join(tdir, "data1.qcow2"))
	if want := sumLines(t, boot, data); tm.Digest != want {
		t.Errorf("digest %s, want %s: of every disk read", tm.Digest, want)
	}
	var size int64
	for _, f := range []string{tm.Boot.Disk, "data1.qcow2"} {
		info, err := os.Stat(filepath.Join(tdir, f))
		if err != nil {
			t.Fatal(err)
		}
		size += info.Size()
	}
	if tm.Size != size {
		t.Errorf("size %d, want %d: of every base", tm.Size, size)
	}
	if !slices.ContainsFunc(res.Machine.Warnings, func(w string) bool { return strings.Contains(w, "/dev/sdx") }) {
		t.Errorf("warnings %q: none names the host device left out", res.Machine.Warnings)
	}
	if slices.ContainsFunc(res.Machine.Warnings, func(w string) bool { return strings.Contains(w, "not imported") && strings.Contains(w, "data.qcow2") }) {
		t.Errorf("warnings %q: the data disk is said to be left out", res.Machine.Warnings)
	}
	// Back in the template store, the metadata says the same.
	loaded, err := store.Load(tm.ID)
	if err != nil || !slices.Equal(loaded.Boot.DataDisks, tm.Boot.DataDisks) {
		t.Errorf("stored template: %+v, %v", loaded, err)
	}

	// --disk 3 boots the third disk; the first becomes the data disk.
	res, store, err = importOf(t, Request{Path: xml, Disk: 3})
	if err != nil {
		t.Fatalf("import --disk 3: %v", err)
	}
	tdir = filepath.Join(store.Dir, res.Template.ID)
	sameContent(t, data, filepath.Join(tdir, res.Template.Boot.Disk))
	sameContent(t, boot, filepath.Join(tdir, "data1.qcow2"))
}

// A data disk that is missing, or not an image polyvisor imports, fails
// the import, naming it: a migration must not drop a disk.
func TestImportRefusesADataDiskItCannotRead(t *testing.T) {
	requireQemuImg(t)
	dir := t.TempDir()
	rawDisk(t, filepath.Join(dir, "boot.raw"), 1<<20, 'B')
	qed := filepath.Join(dir, "old.qed")
	if out, err := exec.Command("qemu-img", "create", "-q", "-f", "qed", qed, "1M").CombinedOutput(); err != nil {
		t.Fatalf("qemu-img: %v: %s", err, out)
	}
	vmx := func(second string) string {
		return writeFile(t, dir, "web.vmx", "config.version = \"8\"\ndisplayName = \"web\"\nscsi0:0.present = \"TRUE\"\nscsi0:0.fileName = \"boot.raw\"\nscsi0:1.present = \"TRUE\"\nscsi0:1.fileName = \""+second+"\"\n")
	}
	_, store, err := importOf(t, Request{Path: vmx("missing.vmdk")})
	if err == nil || !errors.Is(err, api.ErrNotFound) || !strings.Contains(err.Error(), "disk 2") || !strings.Contains(err.Error(), "missing.vmdk") {
		t.Errorf("import with a missing data disk: %v, want not found naming disk 2", err)
	}
	if left, _ := os.ReadDir(store.Dir); len(left) > 0 {
		t.Errorf("a refused import left %v", left)
	}
	_, store, err = importOf(t, Request{Path: vmx("old.qed")})
	wantRefusal(t, err, store, "disk 2", "qemu-img convert -O qcow2 "+qed)
}
