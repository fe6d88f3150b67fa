package vmimage

import (
	"bytes"
	"compress/gzip"
	"context"
	"debug/elf"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/polyvisor/polyvisor/internal/debpkg"
)

// unpackedKernel is a Debian kernel package unpacked into a work directory.
type unpackedKernel struct {
	version string // the kernel release, as uname -r gives it and lib/modules names it
	image   string // boot/vmlinuz-VERSION
	modules string // lib/modules/VERSION
}

// unpackKernel fetches the kernel that the metapackage pkg (linux-image-FLAVOUR) stands for
// in the Debian sources of arch and unpacks it into dir.
func unpackKernel(ctx context.Context, cacheDir, arch, pkg, dir string) (unpackedKernel, error) {
	name, err := debpkg.ResolveMeta(ctx, cacheDir, pkg, arch)
	if err != nil {
		return unpackedKernel{}, err
	}
	deb, err := debpkg.Fetch(ctx, cacheDir, name, arch)
	if err != nil {
		return unpackedKernel{}, err
	}
	if err := debpkg.Extract(ctx, deb, dir); err != nil {
		return unpackedKernel{}, err
	}
	// From trixie on, Debian's packages put modules under usr/lib (merged /usr).
	modules := filepath.Join(dir, "lib/modules")
	if _, err := os.Stat(modules); err != nil {
		modules = filepath.Join(dir, "usr/lib/modules")
	}
	releases, err := os.ReadDir(modules)
	if err != nil || len(releases) != 1 {
		return unpackedKernel{}, fmt.Errorf("%s: want one kernel release under lib/modules, found %d (%v)", name, len(releases), err)
	}
	version := releases[0].Name()
	// vmlinuz as a rule; ppc64el ships an ELF vmlinux, and so does riscv64 from trixie on
	// (an uncompressed Image despite the name).
	image := filepath.Join(dir, "boot", "vmlinuz-"+version)
	if _, err := os.Stat(image); err != nil {
		image = filepath.Join(dir, "boot", "vmlinux-"+version)
	}
	return unpackedKernel{version: version, image: image, modules: filepath.Join(modules, version)}, nil
}

// writeKernel writes the file QEMU boots, made from the package's vmlinuz, to path.
func writeKernel(ctx context.Context, spec archSpec, k unpackedKernel, path string) error {
	image, err := os.ReadFile(k.image)
	if err != nil {
		return fmt.Errorf("read kernel image: %w", err)
	}
	var kernel []byte
	switch spec.format {
	case bzImageToVmlinux:
		kernel, err = vmlinuxFromBzImage(ctx, image)
	case rawImage:
		kernel, err = rawKernelImage(image, spec.debian)
	case elfVmlinux:
		kernel, err = elfKernel(image, spec.debian)
	case s390Image:
		kernel, err = checkMagic(image, 0x10008, "S390EP", "an s390x kernel image")
	case zImage:
		kernel, err = checkMagic(image, 0x24, "\x18\x28\x6f\x01", "an ARM zImage")
	}
	if err != nil {
		return fmt.Errorf("kernel %s: %w", k.version, err)
	}
	if err := os.WriteFile(path, kernel, 0o644); err != nil {
		return fmt.Errorf("write kernel: %w", err)
	}
	return nil
}

// imageMagic is where the arm64 and riscv64 boot protocols put their magic in an Image.
var imageMagic = map[string]struct {
	offset int
	magic  string
}{
	"arm64":   {0x38, "ARM\x64"},
	"riscv64": {0x38, "RSC\x05"},
}

// elfKernel returns vmlinux, an ELF kernel for arch that QEMU loads with -kernel (pseries
// boots it through its SLOF firmware's ELF loader).
func elfKernel(vmlinux []byte, arch string) ([]byte, error) {
	want, err := debpkg.ELFMachine(arch)
	if err != nil {
		return nil, err
	}
	f, err := elf.NewFile(bytes.NewReader(vmlinux))
	if err != nil {
		return nil, fmt.Errorf("vmlinux is not an ELF file: %w", err)
	}
	defer f.Close()
	if f.Machine != want {
		return nil, fmt.Errorf("vmlinux is built for %v, not %s", f.Machine, arch)
	}
	return vmlinux, nil
}

// checkMagic returns image when it carries magic at offset: the mark of what a kernel
// format's loader in QEMU takes.
func checkMagic(image []byte, offset int, magic, what string) ([]byte, error) {
	if len(image) < offset+len(magic) || string(image[offset:offset+len(magic)]) != magic {
		return nil, fmt.Errorf("vmlinuz is not %s", what)
	}
	return image, nil
}

// rawKernelImage returns the uncompressed Image of arch from a package's vmlinuz: as is, or
// gunzipped. Debian's bookworm arm64 vmlinuz is already an uncompressed Image (with an EFI
// stub); an EFI zboot image (compressed inside a PE file) is refused, since QEMU 7.2 cannot
// load it with -kernel.
func rawKernelImage(vmlinuz []byte, arch string) ([]byte, error) {
	if bytes.HasPrefix(vmlinuz, []byte{0x1f, 0x8b}) {
		r, err := gzip.NewReader(bytes.NewReader(vmlinuz))
		if err != nil {
			return nil, fmt.Errorf("gunzip vmlinuz: %w", err)
		}
		if vmlinuz, err = io.ReadAll(r); err != nil {
			return nil, fmt.Errorf("gunzip vmlinuz: %w", err)
		}
	}
	want, ok := imageMagic[arch]
	if !ok {
		return nil, fmt.Errorf("no Image format known for %s", arch)
	}
	if len(vmlinuz) < want.offset+4 || string(vmlinuz[want.offset:want.offset+4]) != want.magic {
		if len(vmlinuz) >= 8 && string(vmlinuz[4:8]) == "zimg" {
			return nil, fmt.Errorf("vmlinuz is an EFI zboot image, which QEMU cannot boot with -kernel")
		}
		return nil, fmt.Errorf("vmlinuz is not an uncompressed %s Image", arch)
	}
	return vmlinuz, nil
}

// fetchBusybox returns the static busybox binary of Debian's busybox-static for arch,
// unpacking the package into dir.
func fetchBusybox(ctx context.Context, cacheDir, arch, dir string) ([]byte, error) {
	deb, err := debpkg.Fetch(ctx, cacheDir, "busybox-static", arch)
	if err != nil {
		return nil, err
	}
	if err := debpkg.Extract(ctx, deb, dir); err != nil {
		return nil, err
	}
	path := filepath.Join(dir, "bin/busybox")
	if _, err := os.Stat(path); err != nil {
		path = filepath.Join(dir, "usr/bin/busybox") // merged /usr, from trixie on
	}
	if err := requireStaticFor(path, arch); err != nil {
		return nil, err
	}
	return os.ReadFile(path)
}

// requireStaticFor fails unless path is a statically linked executable for the Debian
// architecture arch: what alone runs in a guest of that architecture without libraries.
func requireStaticFor(path, arch string) error {
	want, err := debpkg.ELFMachine(arch)
	if err != nil {
		return err
	}
	f, err := elf.Open(path)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	defer f.Close()
	if f.Machine != want {
		return fmt.Errorf("%s is built for %v, not %s (%v)", path, f.Machine, arch, want)
	}
	for _, prog := range f.Progs {
		if prog.Type == elf.PT_INTERP {
			return fmt.Errorf("%s is dynamically linked; build it static (CGO_ENABLED=0)", path)
		}
	}
	return nil
}
