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
)

// archSpec is what building and booting a VM of one Debian architecture needs.
type archSpec struct {
	debian  string // Debian architecture: amd64
	qemu    string // QEMU system emulator
	machine string // a machine with virtio-mmio transports and direct kernel boot
	console string // the serial console's device name in the guest
	kernel  string // file name of the kernel in the template
	format  kernelFormat
	// powerButton are the modules that turn QEMU's system_powerdown into a KEY_POWER input
	// event (/dev/input/event*), which busybox acpid in the guest answers with poweroff.
	powerButton []string
}

// archSpecs lists the architectures Build knows. riscv64 is here for when the host's apt
// sources offer it (Debian ships it from trixie on; bookworm does not) and is untested.
var archSpecs = []archSpec{
	{debian: "amd64", qemu: "qemu-system-x86_64", machine: "microvm", console: "ttyS0", kernel: "vmlinux", format: bzImageToVmlinux,
		powerButton: []string{"button", "evdev"}}, // the ACPI power button, signalled through microvm's GED
	{debian: "arm64", qemu: "qemu-system-aarch64", machine: "virt", console: "ttyAMA0", kernel: "Image", format: rawImage,
		powerButton: []string{"gpio_keys", "evdev"}}, // virt's power key on its PL061 GPIO controller
	{debian: "riscv64", qemu: "qemu-system-riscv64", machine: "virt", console: "ttyS0", kernel: "Image", format: rawImage}, // no power button
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
