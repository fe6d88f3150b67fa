package vmimage

import "fmt"

// kernelFormat says how a Debian kernel package's /boot/vmlinuz becomes the file QEMU boots.
type kernelFormat int

const (
	// bzImageToVmlinux: x86 bzImage, whose compressed payload is the ELF vmlinux that QEMU
	// boots through its PVH entry without the decompressor (see DESIGN.md: 1.43 s against
	// 3.7 s under TCG).
	bzImageToVmlinux kernelFormat = iota
	// rawImage: an arm64 or riscv64 "Image", taken as is, or gunzipped when packaged as
	// Image.gz (QEMU would gunzip it too, but on every boot).
	rawImage
	// elfVmlinux: ppc64el's vmlinux, an ELF file that QEMU's pseries loads as it is.
	elfVmlinux
	// s390Image: s390x's vmlinuz, a raw image (with its own decompressor) that QEMU's
	// s390-ccw-virtio loads with -kernel.
	s390Image
	// zImage: armhf's self-decompressing vmlinuz, which QEMU's arm virt loads with -kernel.
	// Debian ships no uncompressed Image for 32-bit ARM.
	zImage
)

// archSpec is what building and booting a VM of one Debian architecture needs.
type archSpec struct {
	debian  string // Debian architecture: amd64
	qemu    string // QEMU system emulator
	machine string // a machine with direct kernel boot
	console string // the serial console's device name in the guest
	kernel  string // file name of the kernel in the template
	format  kernelFormat
	// kernelPackage is the metapackage of Debian's kernel for QEMU's machine: its flavour is
	// not always the architecture's name (powerpc64le, armmp-lpae).
	kernelPackage string
	// transport are the modules of the machine's virtio transport, which the initramfs loads
	// before the devices' drivers: virtio-mmio on microvm and virt, virtio-pci on pseries;
	// s390x's virtio-ccw is built into its kernel.
	transport []string
	// powerButton are the modules that turn QEMU's system_powerdown into a KEY_POWER input
	// event (/dev/input/event*), which busybox acpid in the guest answers with poweroff.
	// Machines without one are powered off through the agent.
	powerButton []string
}

// archSpecs lists the architectures Build knows. riscv64's kernel comes from trixie (bookworm
// has none; see debpkg's apt configuration), the others' from the host's release.
var archSpecs = []archSpec{
	{debian: "amd64", qemu: "qemu-system-x86_64", machine: "microvm", console: "ttyS0", kernel: "vmlinux", format: bzImageToVmlinux,
		kernelPackage: "linux-image-amd64", transport: []string{"virtio_mmio"},
		powerButton: []string{"button", "evdev"}}, // the ACPI power button, signalled through microvm's GED
	{debian: "arm64", qemu: "qemu-system-aarch64", machine: "virt", console: "ttyAMA0", kernel: "Image", format: rawImage,
		kernelPackage: "linux-image-arm64", transport: []string{"virtio_mmio"},
		powerButton: []string{"gpio_keys", "evdev"}}, // virt's power key on its PL061 GPIO controller
	{debian: "riscv64", qemu: "qemu-system-riscv64", machine: "virt", console: "ttyS0", kernel: "Image", format: rawImage,
		kernelPackage: "linux-image-riscv64", transport: []string{"virtio_mmio"}}, // no power button
	{debian: "ppc64el", qemu: "qemu-system-ppc64", machine: "pseries", console: "hvc0", kernel: "vmlinux", format: elfVmlinux,
		kernelPackage: "linux-image-powerpc64le", transport: []string{"virtio_pci"}}, // power off through RTAS: no module
	{debian: "s390x", qemu: "qemu-system-s390x", machine: "s390-ccw-virtio", console: "ttysclp0", kernel: "image", format: s390Image,
		kernelPackage: "linux-image-s390x"}, // no power key: system_powerdown quiesces, see vmInittab
	// armmp-lpae rather than armmp: virt's high PCIe window and RAM beyond 3 GiB lie above
	// 4 GiB, which only an LPAE kernel addresses; the Cortex-A15 has LPAE.
	{debian: "armhf", qemu: "qemu-system-arm", machine: "virt", console: "ttyAMA0", kernel: "zImage", format: zImage,
		kernelPackage: "linux-image-armmp-lpae", transport: []string{"virtio_mmio"},
		powerButton: []string{"gpio_keys", "evdev"}},
}

// lookupArch returns the spec of the Debian architecture arch.
func lookupArch(arch string) (archSpec, error) {
	for _, spec := range archSpecs {
		if spec.debian == arch {
			return spec, nil
		}
	}
	var names []string
	for _, spec := range archSpecs {
		names = append(names, spec.debian)
	}
	return archSpec{}, fmt.Errorf("no VM image recipe for architecture %q (known: %v)", arch, names)
}
