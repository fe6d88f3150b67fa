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

// unpackKernel fetches the kernel that linux-image-ARCH stands for in the host's apt sources
// and unpacks it into dir.
func unpackKernel(ctx context.Context, cacheDir, arch, dir string) (unpackedKernel, error) {
	name, err := debpkg.ResolveMeta(ctx, "linux-image-"+arch, arch)
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
	releases, err := os.ReadDir(filepath.Join(dir, "lib/modules"))
	if err != nil || len(releases) != 1 {
		return unpackedKernel{}, fmt.Errorf("%s: want one kernel release under lib/modules, found %d (%v)", name, len(releases), err)
	}
	version := releases[0].Name()
	return unpackedKernel{
		version: version,
		image:   filepath.Join(dir, "boot", "vmlinuz-"+version),
		modules: filepath.Join(dir, "lib/modules", version),
	}, nil
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
	"riscv64": {0x30, "RSC\x05"},
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
