package vmimage

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// Firmware a template's disk can be booted by, instead of QEMU's direct kernel boot.
const (
	// FirmwareBIOS: a PC BIOS (SeaBIOS, QEMU's default on q35) runs GRUB from the disk's MBR.
	FirmwareBIOS = "bios"
)

// Firmwares lists the values Build takes for Spec.Firmware, "" (direct kernel boot) aside.
var Firmwares = []string{FirmwareBIOS}

// firmwareModules are the modules a firmware-booted guest needs on top of initrdModules:
// q35's devices are virtio over PCI, and the host names the guest through fw_cfg (it cannot
// edit a command line that the disk's bootloader holds).
var firmwareModules = []string{"virtio_pci", "qemu_fw_cfg"}

// grubPC is where Debian's grub-pc-bin keeps GRUB for PC BIOS (boot.img and the modules
// grub-mkimage links into core.img).
const grubPC = "/usr/lib/grub/i386-pc"

// grubModules go into core.img: the disk and file system drivers reach /boot/grub/grub.cfg,
// the rest runs it; grub-mkimage adds their dependencies.
var grubModules = []string{"biosdisk", "part_msdos", "ext2", "normal", "configfile", "linux", "serial", "terminal", "echo", "test"}

// Partition layout of a bootable disk: GRUB's core.img lives in the gap between the MBR and
// the root partition, which starts at 1 MiB as partitioning tools align it.
const (
	sectorSize     = 512
	partitionStart = 1 << 20
	mbrCodeSize    = 440 // boot code in the MBR; the disk signature and partition table follow
)

// Files a firmware-booted template keeps under the root tree's /boot.
const (
	bootKernel = "boot/vmlinuz"
	bootInitrd = "boot/initrd.img"
	grubConfig = "boot/grub/grub.cfg"
)

// grubConfigText is grub.cfg for a disk whose kernel command line is cmdline: no menu, the
// serial line as GRUB's terminal (the guest has no display).
func grubConfigText(cmdline string) string {
	return `# Written by polyvisor: GRUB boots this disk's kernel at once.
serial --unit=0 --speed=115200
terminal_input serial
terminal_output serial
set timeout=0
menuentry "polyvisor" {
	linux /` + bootKernel + ` ` + cmdline + `
	initrd /` + bootInitrd + `
}
`
}

// checkGRUB says what is missing to install GRUB for PC BIOS on a disk.
func checkGRUB() error {
	for _, path := range []string{filepath.Join(grubPC, "boot.img"), filepath.Join(grubPC, "biosdisk.mod")} {
		if _, err := os.Stat(path); err != nil {
			return fmt.Errorf("GRUB for PC BIOS is missing (%s): install grub-pc-bin (make deps does)", path)
		}
	}
	if _, err := exec.LookPath("grub-mkimage"); err != nil {
		return errors.New("grub-mkimage is missing: install grub-common (make deps does)")
	}
	return nil
}

// makeBIOSDisk writes diskPath, a qcow2 disk that boots by itself on a PC BIOS: an MBR with
// GRUB's boot.img and one active Linux partition at 1 MiB holding the ext4 root made from
// rootfs, whose /boot has the kernel, the initramfs and grub.cfg; GRUB's core.img fills the
// gap after the MBR, where grub-install would embed it. Nothing is mounted and no loop
// device is used: mke2fs writes the file system at its offset in the raw image.
func makeBIOSDisk(ctx context.Context, rootfs, diskPath, work string) error {
	core := filepath.Join(work, "core.img")
	if err := run(ctx, nil, nil, "grub-mkimage", append([]string{"-O", "i386-pc", "-d", grubPC, "-o", core,
		"-p", "(hd0,msdos1)/boot/grub"}, grubModules...)...); err != nil {
		return fmt.Errorf("make GRUB core image: %w", err)
	}
	coreImage, err := os.ReadFile(core)
	if err != nil {
		return err
	}
	if len(coreImage) > partitionStart-sectorSize {
		return fmt.Errorf("GRUB core image is %d bytes: too large for the gap before the partition", len(coreImage))
	}
	bootImage, err := os.ReadFile(filepath.Join(grubPC, "boot.img"))
	if err != nil || len(bootImage) != sectorSize {
		return fmt.Errorf("read GRUB boot.img: %d bytes, %w", len(bootImage), errors.Join(err, fs.ErrInvalid))
	}
	raw := filepath.Join(work, "disk.raw")
	size, err := writeExt4(ctx, rootfs, raw, partitionStart)
	if err != nil {
		return err
	}
	defer os.Remove(raw)
	f, err := os.OpenFile(raw, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	_, err = f.WriteAt(mbr(bootImage, diskSignature(rootfs), size), 0)
	if err == nil {
		_, err = f.WriteAt(coreImage, sectorSize)
	}
	if closeErr := f.Close(); err == nil {
		err = closeErr
	}
	if err != nil {
		return fmt.Errorf("write boot sectors: %w", err)
	}
	return convertToBase(ctx, raw, diskPath)
}

// mbr returns a master boot record: boot code from bootImage, the disk signature, and one
// active partition of type Linux from partitionStart to the end of a disk of diskSize bytes,
// addressed by LBA only (CHS fields saturated, as for any disk over 8 GiB).
func mbr(bootImage []byte, signature uint32, diskSize int64) []byte {
	sector := make([]byte, sectorSize)
	copy(sector, bootImage[:mbrCodeSize])
	le := binary.LittleEndian
	le.PutUint32(sector[mbrCodeSize:], signature)
	entry := sector[446:462]
	entry[0] = 0x80 // active
	copy(entry[1:4], []byte{0xfe, 0xff, 0xff})
	entry[4] = 0x83 // Linux
	copy(entry[5:8], []byte{0xfe, 0xff, 0xff})
	le.PutUint32(entry[8:], partitionStart/sectorSize)
	le.PutUint32(entry[12:], uint32((diskSize-partitionStart)/sectorSize))
	sector[510], sector[511] = 0x55, 0xaa
	return sector
}

// diskSignature derives the MBR's disk signature from the template's path, so two templates
// differ (Linux names nothing after it, Windows does).
func diskSignature(rootfs string) uint32 {
	h := fnv.New32a()
	h.Write([]byte(rootfs))
	return h.Sum32() | 1 // never 0, which means "none"
}

// installBootFiles puts the kernel and the initramfs (built at initrd) into the root tree's
// /boot with grub.cfg booting them with cmdline.
func installBootFiles(rootfs string, k unpackedKernel, initrd, cmdline string) error {
	root, err := os.OpenRoot(rootfs)
	if err != nil {
		return err
	}
	defer root.Close()
	if err := root.MkdirAll("boot/grub", 0o755); err != nil {
		return fmt.Errorf("install boot files: %w", err)
	}
	for from, to := range map[string]string{k.image: bootKernel, initrd: bootInitrd} {
		if err := copyInto(root, from, to, 0o644); err != nil {
			return fmt.Errorf("install boot files: %w", err)
		}
	}
	if err := root.WriteFile(grubConfig, []byte(grubConfigText(strings.TrimSpace(cmdline))), 0o644); err != nil {
		return fmt.Errorf("install boot files: %w", err)
	}
	return nil
}
