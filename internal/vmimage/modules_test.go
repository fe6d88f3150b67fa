package vmimage

import (
	"bytes"
	"compress/gzip"
	"context"
	"debug/elf"
	"encoding/binary"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// fakeModule returns a minimal ELF relocatable file whose .modinfo section holds the given
// key=value entries, as a kernel module's does.
func fakeModule(entries ...string) []byte {
	modinfo := []byte(strings.Join(entries, "\x00") + "\x00")
	shstrtab := []byte("\x00.modinfo\x00.shstrtab\x00")
	const headerSize, sectionSize = 64, 64
	modinfoAt := uint64(headerSize)
	shstrtabAt := modinfoAt + uint64(len(modinfo))
	sectionsAt := (shstrtabAt + uint64(len(shstrtab)) + 7) &^ 7
	var buf bytes.Buffer
	header := elf.Header64{
		Type: uint16(elf.ET_REL), Machine: uint16(elf.EM_X86_64), Version: uint32(elf.EV_CURRENT),
		Shoff: sectionsAt, Ehsize: headerSize, Shentsize: sectionSize, Shnum: 3, Shstrndx: 2,
	}
	copy(header.Ident[:], elf.ELFMAG)
	header.Ident[elf.EI_CLASS] = byte(elf.ELFCLASS64)
	header.Ident[elf.EI_DATA] = byte(elf.ELFDATA2LSB)
	header.Ident[elf.EI_VERSION] = byte(elf.EV_CURRENT)
	binary.Write(&buf, binary.LittleEndian, header)
	buf.Write(modinfo)
	buf.Write(shstrtab)
	buf.Write(make([]byte, sectionsAt-uint64(buf.Len())))
	for _, section := range []elf.Section64{
		{},
		{Name: 1, Type: uint32(elf.SHT_PROGBITS), Off: modinfoAt, Size: uint64(len(modinfo)), Addralign: 1},
		{Name: 10, Type: uint32(elf.SHT_STRTAB), Off: shstrtabAt, Size: uint64(len(shstrtab)), Addralign: 1},
	} {
		binary.Write(&buf, binary.LittleEndian, section)
	}
	return buf.Bytes()
}

// fakeModuleTree writes lib/modules/VERSION with the given modules (path under kernel/ ->
// depends= value) and built-in list, and returns its directory.
func fakeModuleTree(t *testing.T, modules map[string]string, builtin ...string) string {
	t.Helper()
	dir := t.TempDir()
	for path, depends := range modules {
		data := fakeModule("license=GPL", "depends="+depends, "name="+strings.TrimSuffix(filepath.Base(path), ".ko"))
		if strings.HasSuffix(path, ".gz") {
			var gz bytes.Buffer
			zw := gzip.NewWriter(&gz)
			zw.Write(data)
			zw.Close()
			data = gz.Bytes()
		}
		full := filepath.Join(dir, "kernel", path)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	var list strings.Builder
	for _, b := range builtin {
		list.WriteString("kernel/" + b + "\n")
	}
	if err := os.WriteFile(filepath.Join(dir, "modules.builtin"), []byte(list.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestLoadOrderPutsDependenciesFirstAndSkipsBuiltins(t *testing.T) {
	dir := fakeModuleTree(t, map[string]string{
		"fs/ext4/ext4.ko":               "mbcache,jbd2,crc16",
		"fs/jbd2/jbd2.ko":               "",
		"fs/mbcache.ko":                 "",
		"lib/crc16.ko":                  "",
		"drivers/block/virtio_blk.ko":   "virtio,virtio_ring",
		"drivers/virtio/virtio.ko.gz":   "",
		"crypto/crc32c-generic.ko":      "",
		"drivers/virtio/virtio_mmio.ko": "virtio",
	}, "lib/crc16.ko", "drivers/virtio/virtio_ring.ko")
	tree, err := openModuleTree(dir)
	if err != nil {
		t.Fatal(err)
	}
	order, skipped, err := tree.loadOrder(context.Background(), []string{"virtio_mmio", "virtio_blk", "crc32c_generic", "ext4"})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, m := range order {
		names = append(names, m.name)
		if len(m.data) == 0 || !bytes.HasPrefix(m.data, []byte(elf.ELFMAG)) {
			t.Errorf("%s: data is not the uncompressed module", m.name)
		}
	}
	want := []string{"virtio", "virtio_mmio", "virtio_blk", "crc32c_generic", "mbcache", "jbd2", "ext4"}
	if !slices.Equal(names, want) {
		t.Fatalf("load order %q, want %q", names, want)
	}
	slices.Sort(skipped)
	if !slices.Equal(skipped, []string{"crc16", "virtio_ring"}) {
		t.Fatalf("skipped %q, want the built-in crc16 and virtio_ring", skipped)
	}
}

func TestLoadOrderFailsOnMissingModulesAndCycles(t *testing.T) {
	dir := fakeModuleTree(t, map[string]string{
		"a.ko": "b", "b.ko": "a",
		"needy.ko": "absent",
	})
	tree, err := openModuleTree(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, wanted := range [][]string{{"a"}, {"needy"}, {"nowhere"}} {
		if _, _, err := tree.loadOrder(context.Background(), wanted); err == nil {
			t.Errorf("loadOrder(%q) succeeded", wanted)
		} else {
			t.Logf("loadOrder(%q): %v", wanted, err)
		}
	}
}

func TestModuleName(t *testing.T) {
	for file, want := range map[string]string{
		"ext4.ko": "ext4", "crc32c-intel.ko.xz": "crc32c_intel", "virtio_blk.ko.zst": "virtio_blk",
		"modules.order": "", ".ko": "", "readme.txt": "",
	} {
		if got, ok := moduleName(file); got != want || ok != (want != "") {
			t.Errorf("moduleName(%q) = %q, %v; want %q", file, got, ok, want)
		}
	}
}

func FuzzModinfoField(f *testing.F) {
	f.Add([]byte("license=GPL\x00depends=jbd2,mbcache\x00\x00\x00name=ext4\x00"), "depends")
	f.Add([]byte("depends=\x00"), "depends")
	f.Fuzz(func(t *testing.T, info []byte, key string) {
		value, ok := modinfoField(info, key)
		if ok && (strings.Contains(value, "\x00") || !bytes.Contains(info, []byte(key+"="+value))) {
			t.Fatalf("modinfoField(%q, %q) = %q, not an entry of the section", info, key, value)
		}
	})
}
