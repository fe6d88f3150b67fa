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
)

// File names of a VM template's parts inside its directory.
const (
	initrdName = "initrd.img"
	diskName   = "disk.qcow2"
)

// rootCmdline is the kernel command line a template boots its root disk with.
const rootCmdline = "root=/dev/vda ro"

// Boot says how to boot a VM template: its files, relative to the template's directory, and
// the QEMU machine they are made for.
type Boot struct {
	Kernel        string `json:"kernel" yaml:"kernel"`                 // vmlinux (x86_64, booted through PVH on microvm) or Image (arm64, riscv64)
	Initrd        string `json:"initrd" yaml:"initrd"`                 // initrd.img
	Disk          string `json:"disk" yaml:"disk"`                     // disk.qcow2, the read-only base of every clone
	Cmdline       string `json:"cmdline" yaml:"cmdline"`               // kernel command line without console= (the driver's); under TCG add TCGCmdline
	Machine       string `json:"machine" yaml:"machine"`               // QEMU machine: microvm or virt
	Console       string `json:"console" yaml:"console"`               // the guest's serial console device: ttyS0, ttyAMA0
	QEMU          string `json:"qemu" yaml:"qemu"`                     // QEMU system emulator: qemu-system-x86_64, ...
	KernelVersion string `json:"kernel_version" yaml:"kernel_version"` // kernel release, as uname -r gives it
}

// Build makes the VM template of the root tree rootfs (owned by host root, not shifted) for
// the Debian architecture arch, writing the kernel, initrd.img and disk.qcow2 into outDir,
// with packages fetched through cacheDir (see debpkg.Fetch). agent is the guest agent, a
// static binary for arch installed as /usr/sbin/polyvisor-agent and respawned by init; ""
// installs none. Build writes the VM's init configuration into rootfs itself, so the caller
// passes a tree it owns.
//
// Other files in outDir are left alone. On failure the files Build made there are removed,
// and its temporary work directory inside outDir with them; cancelling ctx kills the tools it
// runs.
func Build(ctx context.Context, rootfs, arch, outDir, cacheDir string, agent string, progress func(phase string, done, total int64)) (boot Boot, err error) {
	if progress == nil {
		progress = func(string, int64, int64) {}
	}
	spec, err := lookupArch(arch)
	if err != nil {
		return Boot{}, err
	}
	if info, err := os.Stat(rootfs); err != nil || !info.IsDir() {
		return Boot{}, fmt.Errorf("build vm image: root tree %s is not a directory: %w", rootfs, errors.Join(err, fs.ErrInvalid))
	}
	outputs := []string{spec.kernel, initrdName, diskName}
	for _, name := range outputs {
		if _, err := os.Lstat(filepath.Join(outDir, name)); !errors.Is(err, fs.ErrNotExist) {
			return Boot{}, fmt.Errorf("build vm image: %s already in %s: %w", name, outDir, fs.ErrExist)
		}
	}
	work, err := os.MkdirTemp(outDir, ".vmimage-")
	if err != nil {
		return Boot{}, fmt.Errorf("build vm image: %w", err)
	}
	defer os.RemoveAll(work)
	defer func() {
		if err != nil {
			for _, name := range outputs {
				os.Remove(filepath.Join(outDir, name))
			}
		}
	}()

	// First what fails fast: a tree without busybox or an agent for another architecture.
	progress("installing the agent and init configuration", 0, 0)
	if err := prepareRootTree(rootfs, spec, agent); err != nil {
		return Boot{}, fmt.Errorf("build vm image: %w", err)
	}
	progress("fetching the kernel (linux-image-"+arch+")", 0, 0)
	kernel, err := unpackKernel(ctx, cacheDir, arch, filepath.Join(work, "kernel"))
	if err != nil {
		return Boot{}, fmt.Errorf("build vm image: %w", err)
	}
	progress("writing the kernel", 0, 0)
	if err := writeKernel(ctx, spec, kernel, filepath.Join(outDir, spec.kernel)); err != nil {
		return Boot{}, fmt.Errorf("build vm image: %w", err)
	}
	progress("fetching busybox-static:"+arch, 0, 0)
	busybox, err := fetchBusybox(ctx, cacheDir, arch, filepath.Join(work, "busybox"))
	if err != nil {
		return Boot{}, fmt.Errorf("build vm image: %w", err)
	}
	progress("building the initramfs", 0, 0)
	if err := buildInitrd(ctx, kernel, slices.Concat(initrdModules, spec.powerButton), busybox, filepath.Join(outDir, initrdName)); err != nil {
		return Boot{}, fmt.Errorf("build vm image: %w", err)
	}
	progress("making the root disk", 0, 0)
	if err := makeRootDisk(ctx, rootfs, filepath.Join(outDir, diskName), work); err != nil {
		return Boot{}, fmt.Errorf("build vm image: %w", err)
	}
	return Boot{
		Kernel: spec.kernel, Initrd: initrdName, Disk: diskName, Cmdline: rootCmdline,
		Machine: spec.machine, Console: spec.console, QEMU: spec.qemu, KernelVersion: kernel.version,
	}, nil
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
