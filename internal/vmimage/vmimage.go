// Package vmimage turns a built root tree into a bootable VM template from Debian's packages
// alone: the kernel of linux-image-ARCH (for x86, its uncompressed vmlinux), an initramfs of
// busybox-static and the kernel modules that reach the root disk, and the root disk itself,
// an ext4 image in qcow2 that every clone takes as its read-only backing file.
package vmimage

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// File names of a VM template's parts inside its directory.
const (
	initrdName = "initrd.img"
	diskName   = "disk.qcow2"
)

// rootCmdline is the kernel command line a template boots its root disk with;
// partitionRootCmdline the one of a disk with a partition table (firmware boot).
var (
	rootCmdline          = "root=/dev/vda ro"
	partitionRootCmdline = fmt.Sprintf("root=/dev/vda%d ro", rootPartNo)
)

// firmwareMachine is the QEMU machine of firmware-booted guests: a PC with PCI.
const firmwareMachine = "q35"

// Boot says how to boot a VM template: its files, relative to the template's directory, and
// the QEMU machine they are made for.
type Boot struct {
	Kernel        string `json:"kernel" yaml:"kernel"`                             // vmlinux (x86_64, booted through PVH on microvm) or Image (arm64, riscv64); "" when the firmware boots the disk
	Initrd        string `json:"initrd" yaml:"initrd"`                             // initrd.img; "" when the firmware boots the disk
	Disk          string `json:"disk" yaml:"disk"`                                 // disk.qcow2, the read-only base of every clone
	Cmdline       string `json:"cmdline" yaml:"cmdline"`                           // kernel command line without console= (the driver's); under TCG add TCGCmdline; with Firmware, the one the disk's bootloader passes
	Machine       string `json:"machine" yaml:"machine"`                           // QEMU machine: microvm or virt; q35 with Firmware
	Console       string `json:"console" yaml:"console"`                           // the guest's serial console device: ttyS0, ttyAMA0
	QEMU          string `json:"qemu" yaml:"qemu"`                                 // QEMU system emulator: qemu-system-x86_64, ...
	KernelVersion string `json:"kernel_version" yaml:"kernel_version"`             // kernel release, as uname -r gives it
	Firmware      string `json:"firmware,omitempty" yaml:"firmware,omitempty"`     // "" for direct kernel boot, or one of Firmwares: the disk has its own bootloader
	MinMemory     int64  `json:"min_memory,omitempty" yaml:"min_memory,omitempty"` // bytes a guest needs to boot, when more than any guest has
}

// Spec says what Build makes.
type Spec struct {
	// Rootfs is the root tree, owned by host root (not shifted). Build writes the VM's init
	// configuration into it, so the caller passes a tree it owns.
	Rootfs string
	// Arch is the Debian architecture: amd64, arm64.
	Arch string
	// OutDir receives the template's files.
	OutDir string
	// CacheDir keeps the Debian packages fetched (see debpkg.Fetch).
	CacheDir string
	// Agent is the guest agent, a static binary for Arch installed as
	// /usr/sbin/polyvisor-agent and respawned by init; "" installs none.
	Agent string
	// Firmware is "" for QEMU's direct kernel boot on a virtio-mmio machine (the fast path),
	// or one of Firmwares for a disk that carries its own bootloader, booted on q35.
	Firmware string
}

// Build makes the VM template of a root tree: the kernel, initrd.img and disk.qcow2 in
// spec.OutDir, or with a firmware, disk.qcow2 alone, with the kernel, initramfs and
// bootloader inside.
//
// Other files in OutDir are left alone. On failure the files Build made there are removed,
// and its temporary work directory inside OutDir with them; cancelling ctx kills the tools it
// runs.
func Build(ctx context.Context, spec Spec, progress func(phase string, done, total int64)) (boot Boot, err error) {
	if progress == nil {
		progress = func(string, int64, int64) {}
	}
	arch, err := lookupArch(spec.Arch)
	if err != nil {
		return Boot{}, err
	}
	if info, err := os.Stat(spec.Rootfs); err != nil || !info.IsDir() {
		return Boot{}, fmt.Errorf("build vm image: root tree %s is not a directory: %w", spec.Rootfs, errors.Join(err, fs.ErrInvalid))
	}
	outputs := []string{arch.kernel, initrdName, diskName}
	switch spec.Firmware {
	case "":
	case FirmwareBIOS, FirmwareUEFI:
		if arch.debian != "amd64" {
			return Boot{}, fmt.Errorf("build vm image: firmware %s boots amd64 guests, not %s", spec.Firmware, arch.debian)
		}
		if err := checkFirmwareTools(); err != nil {
			return Boot{}, fmt.Errorf("build vm image: %w", err)
		}
		outputs = []string{diskName}
	default:
		return Boot{}, fmt.Errorf("build vm image: firmware %q: use %s, or none for direct kernel boot", spec.Firmware, strings.Join(Firmwares, " or "))
	}
	for _, name := range outputs {
		if _, err := os.Lstat(filepath.Join(spec.OutDir, name)); !errors.Is(err, fs.ErrNotExist) {
			return Boot{}, fmt.Errorf("build vm image: %s already in %s: %w", name, spec.OutDir, fs.ErrExist)
		}
	}
	work, err := os.MkdirTemp(spec.OutDir, ".vmimage-")
	if err != nil {
		return Boot{}, fmt.Errorf("build vm image: %w", err)
	}
	defer os.RemoveAll(work)
	defer func() {
		if err != nil {
			for _, name := range outputs {
				os.Remove(filepath.Join(spec.OutDir, name))
			}
		}
	}()

	// First what fails fast: a tree without busybox or an agent for another architecture.
	progress("installing the agent and init configuration", 0, 0)
	if err := prepareRootTree(spec.Rootfs, arch, spec.Agent); err != nil {
		return Boot{}, fmt.Errorf("build vm image: %w", err)
	}
	progress("fetching the kernel ("+arch.kernelPackage+":"+arch.debian+")", 0, 0)
	kernel, err := unpackKernel(ctx, spec.CacheDir, arch.debian, arch.kernelPackage, filepath.Join(work, "kernel"))
	if err != nil {
		return Boot{}, fmt.Errorf("build vm image: %w", err)
	}
	if spec.Firmware == "" {
		progress("writing the kernel", 0, 0)
		if err := writeKernel(ctx, arch, kernel, filepath.Join(spec.OutDir, arch.kernel)); err != nil {
			return Boot{}, fmt.Errorf("build vm image: %w", err)
		}
	}
	progress("fetching busybox-static:"+arch.debian, 0, 0)
	busybox, err := fetchBusybox(ctx, spec.CacheDir, arch.debian, filepath.Join(work, "busybox"))
	if err != nil {
		return Boot{}, fmt.Errorf("build vm image: %w", err)
	}
	progress("building the initramfs", 0, 0)
	modules := slices.Concat(arch.transport, initrdModules, arch.powerButton)
	initrd := filepath.Join(spec.OutDir, initrdName)
	if spec.Firmware != "" {
		modules = append(modules, firmwareModules...)
		initrd = filepath.Join(work, initrdName)
	}
	if err := buildInitrd(ctx, kernel, modules, busybox, initrd); err != nil {
		return Boot{}, fmt.Errorf("build vm image: %w", err)
	}
	boot = Boot{
		Kernel: arch.kernel, Initrd: initrdName, Disk: diskName, Cmdline: rootCmdline,
		Machine: arch.machine, Console: arch.console, QEMU: arch.qemu, KernelVersion: kernel.version,
	}
	progress("making the root disk", 0, 0)
	if spec.Firmware == "" {
		if err := makeRootDisk(ctx, spec.Rootfs, filepath.Join(spec.OutDir, diskName), work); err != nil {
			return Boot{}, fmt.Errorf("build vm image: %w", err)
		}
		return boot, nil
	}
	boot.Kernel, boot.Initrd, boot.Machine, boot.Firmware = "", "", firmwareMachine, spec.Firmware
	// 115200 baud, GRUB's speed: the kernel's default, 9600, is what an emulated UART that
	// keeps to its baud rate (Bochs's) gives, about five lines of boot messages a second.
	boot.Cmdline = partitionRootCmdline + " console=" + arch.console + ",115200"
	if err := installBootFiles(spec.Rootfs, kernel, initrd, boot.Cmdline); err != nil {
		return Boot{}, fmt.Errorf("build vm image: %w", err)
	}
	if spec.Firmware == FirmwareUEFI {
		boot.MinMemory = UEFIMinMemory
	}
	if err := makeFirmwareDisk(ctx, spec.Rootfs, filepath.Join(spec.OutDir, diskName), work); err != nil {
		return Boot{}, fmt.Errorf("build vm image: %w", err)
	}
	return boot, nil
}

// buildInitrd resolves the modules wanted and their dependencies in the unpacked kernel and
// writes the initramfs that loads them to path.
func buildInitrd(ctx context.Context, kernel unpackedKernel, wanted []string, busybox []byte, path string) error {
	tree, err := openModuleTree(kernel.modules)
	if err != nil {
		return err
	}
	modules, _, err := tree.loadOrder(ctx, wanted)
	if err != nil {
		return err
	}
	return writeInitrd(path, busybox, modules)
}
