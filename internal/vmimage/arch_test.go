package vmimage

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/polyvisor/polyvisor/internal/arch"
	"github.com/polyvisor/polyvisor/internal/debpkg"
)

// TestArchSpecsCoverEveryArch checks that every architecture polyvisor names has a VM
// recipe, with an emulator, machine, console and kernel package, and the virtio transport
// its machine has.
func TestArchSpecsCoverEveryArch(t *testing.T) {
	transport := map[string]string{"microvm": "virtio_mmio", "virt": "virtio_mmio", "pseries": "virtio_pci", "s390-ccw-virtio": ""}
	for _, a := range arch.All() {
		spec, err := lookupArch(a.Debian)
		if err != nil {
			t.Errorf("%s: %v", a.Debian, err)
			continue
		}
		if spec.qemu != a.Emulator {
			t.Errorf("%s: runs %s, arch says %s", a.Debian, spec.qemu, a.Emulator)
		}
		if spec.machine == "" || spec.console == "" || spec.kernel == "" || !strings.HasPrefix(spec.kernelPackage, "linux-image-") {
			t.Errorf("%s: incomplete spec %+v", a.Debian, spec)
		}
		want, ok := transport[spec.machine]
		if !ok {
			t.Errorf("%s: machine %s has no known virtio transport", a.Debian, spec.machine)
		} else if got := strings.Join(spec.transport, ","); got != want {
			t.Errorf("%s on %s: transport modules %q, want %q", a.Debian, spec.machine, got, want)
		}
		if _, err := debpkg.ELFMachine(a.Debian); err != nil {
			t.Errorf("%s: %v", a.Debian, err)
		}
	}
	if _, err := lookupArch("vax"); err == nil {
		t.Error("vax has a recipe")
	}
}

// elfFile returns a minimal ELF executable header for machine.
func elfFile(machine elf.Machine) []byte {
	var b bytes.Buffer
	h := elf.Header64{Type: uint16(elf.ET_EXEC), Machine: uint16(machine), Version: 1, Ehsize: 64}
	copy(h.Ident[:], elf.ELFMAG)
	h.Ident[elf.EI_CLASS], h.Ident[elf.EI_DATA], h.Ident[elf.EI_VERSION] = byte(elf.ELFCLASS64), byte(elf.ELFDATA2LSB), 1
	binary.Write(&b, binary.LittleEndian, h)
	return b.Bytes()
}

func TestForeignKernelFormats(t *testing.T) {
	if _, err := elfKernel(elfFile(elf.EM_PPC64), "ppc64el"); err != nil {
		t.Errorf("a ppc64 vmlinux refused: %v", err)
	}
	if _, err := elfKernel(elfFile(elf.EM_X86_64), "ppc64el"); err == nil {
		t.Error("an x86_64 vmlinux accepted for ppc64el")
	}
	if _, err := elfKernel([]byte("MZ not an ELF"), "ppc64el"); err == nil {
		t.Error("a non-ELF file accepted as vmlinux")
	}

	s390 := make([]byte, 0x10010)
	copy(s390[0x10008:], "S390EP")
	zimage := make([]byte, 0x40)
	copy(zimage[0x24:], "\x18\x28\x6f\x01")
	riscv := make([]byte, 0x40)
	copy(riscv[0x30:], "RISCV\x00\x00\x00RSC\x05")
	for _, tc := range []struct {
		spec  string
		image []byte
	}{{"s390x", s390}, {"armhf", zimage}, {"riscv64", riscv}} {
		spec, err := lookupArch(tc.spec)
		if err != nil {
			t.Fatal(err)
		}
		dir := t.TempDir()
		k := unpackedKernel{version: "6", image: filepath.Join(dir, "vmlinuz")}
		if err := os.WriteFile(k.image, tc.image, 0o644); err != nil {
			t.Fatal(err)
		}
		out := filepath.Join(dir, spec.kernel)
		if err := writeKernel(t.Context(), spec, k, out); err != nil {
			t.Errorf("%s: %v", tc.spec, err)
		} else if got, _ := os.ReadFile(out); !bytes.Equal(got, tc.image) {
			t.Errorf("%s: the kernel written is not the package's image", tc.spec)
		}
		// Each format refuses the others' images.
		if err := writeKernel(t.Context(), spec, unpackedKernel{version: "6", image: writeTemp(t, elfFile(elf.EM_PPC64))}, filepath.Join(dir, "other")); err == nil {
			t.Errorf("%s accepted a ppc64 ELF file", tc.spec)
		}
	}
}

func writeTemp(t *testing.T, data []byte) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "image")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}
