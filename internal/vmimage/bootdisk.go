package vmimage

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/polyvisor/polyvisor/internal/hostreq"
)

// Firmware a template's disk can be booted by, instead of QEMU's direct kernel boot. Both
// boot the same disk: it carries GRUB for each, as Debian's cloud images do.
const (
	// FirmwareBIOS: a PC BIOS (SeaBIOS, QEMU's default on q35) runs GRUB from the disk's MBR.
	FirmwareBIOS = "bios"
	// FirmwareUEFI: UEFI (OVMF) runs GRUB from the EFI system partition's removable-media
	// path, /EFI/BOOT/BOOTX64.EFI.
	FirmwareUEFI = "uefi"
)

// Firmwares lists the values Build takes for Spec.Firmware, "" (direct kernel boot) aside.
var Firmwares = []string{FirmwareBIOS, FirmwareUEFI}

// UEFIMinMemory is the least memory a UEFI guest of ours boots with: below it GRUB's EFI
// loader, in what OVMF leaves it, runs out of memory loading Debian's kernel.
const UEFIMinMemory = 512 << 20

// firmwareModules are the modules a firmware-booted guest needs on top of initrdModules:
// q35's devices are virtio over PCI, and the host names the guest through fw_cfg (it cannot
// edit a command line that the disk's bootloader holds). The same disk also boots on an
// emulated PC with IDE only (Bochs), where it is an ATA disk on the PIIX controller: sd_mod
// names it /dev/sda, which the initramfs takes when /dev/vda does not appear; its NIC there
// is an Intel e1000.
var firmwareModules = []string{"virtio_pci", "qemu_fw_cfg", "ata_piix", "sd_mod", "e1000"}

// GRUB's two platforms, as Debian's grub-pc-bin and grub-efi-amd64-bin install them.
const (
	grubPC  = hostreq.GrubPCDir  // boot.img, and the modules linked into core.img
	grubEFI = hostreq.GrubEFIDir // the modules linked into BOOTX64.EFI
)

// grubModules are linked into GRUB's images: the disk and file system drivers reach
// /boot/grub/grub.cfg, the rest runs it; grub-mkimage adds their dependencies. PC BIOS
// also needs biosdisk; UEFI reaches disks through the firmware.
var grubModules = []string{"part_msdos", "ext2", "normal", "configfile", "linux", "serial", "terminal", "echo", "test"}

// Layout of a firmware-booted disk: GRUB's core.img in the gap between the MBR and the first
// partition (where grub-install embeds it), the EFI system partition first, the root last, so
// that it can grow to the end of a grown disk.
const (
	sectorSize   = 512
	mbrCodeSize  = 440 // boot code in the MBR; the disk signature and partition table follow
	espStart     = 1 << 20
	espSize      = 32 << 20
	rootStart    = espStart + espSize
	rootPartNo   = 2
	partTypeESP  = 0xef
	partTypeRoot = 0x83
)

// Files a firmware-booted template keeps under the root tree's /boot.
const (
	bootKernel = "boot/vmlinuz"
	bootInitrd = "boot/initrd.img"
	grubConfig = "boot/grub/grub.cfg"
)

// grubPrefix is where GRUB finds grub.cfg: the root partition's /boot/grub.
var grubPrefix = fmt.Sprintf("(hd0,msdos%d)/boot/grub", rootPartNo)

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

// checkFirmwareTools says what is missing to make a disk both firmwares boot.
func checkFirmwareTools() error {
	for _, name := range []string{grubPC, grubEFI, "grub-mkimage", "mkfs.fat", "mcopy", "mmd"} {
		if _, err := hostreq.Lookup(name); err != nil {
			return err
		}
	}
	return nil
}

// makeFirmwareDisk writes diskPath, a qcow2 disk that boots by itself on a PC BIOS and on
// UEFI: an MBR with GRUB's boot.img, GRUB's core.img after it, partition 1 the EFI system
// partition (FAT) holding GRUB as /EFI/BOOT/BOOTX64.EFI, and partition 2 the ext4 root made
// from rootfs, whose /boot has the kernel, the initramfs and grub.cfg. Nothing is mounted
// and no loop device is used: mke2fs, mkfs.fat and mtools write at offsets in the raw image.
func makeFirmwareDisk(ctx context.Context, rootfs, diskPath, work string) error {
	core, efi := filepath.Join(work, "core.img"), filepath.Join(work, "BOOTX64.EFI")
	if err := run(ctx, nil, nil, "grub-mkimage", append([]string{"-O", "i386-pc", "-d", grubPC, "-o", core, "-p", grubPrefix, "biosdisk"}, grubModules...)...); err != nil {
		return fmt.Errorf("make GRUB's PC BIOS image: %w", err)
	}
	if err := run(ctx, nil, nil, "grub-mkimage", append([]string{"-O", "x86_64-efi", "-d", grubEFI, "-o", efi, "-p", grubPrefix}, grubModules...)...); err != nil {
		return fmt.Errorf("make GRUB's UEFI image: %w", err)
	}
	coreImage, err := os.ReadFile(core)
	if err != nil {
		return err
	}
	if len(coreImage) > espStart-sectorSize {
		return fmt.Errorf("GRUB core image is %d bytes: too large for the gap before the first partition", len(coreImage))
	}
	bootImage, err := os.ReadFile(filepath.Join(grubPC, "boot.img"))
	if err != nil || len(bootImage) != sectorSize {
		return fmt.Errorf("read GRUB boot.img: %d bytes, %w", len(bootImage), errors.Join(err, fs.ErrInvalid))
	}
	raw := filepath.Join(work, "disk.raw")
	size, err := writeExt4(ctx, rootfs, raw, rootStart)
	if err != nil {
		return err
	}
	defer os.Remove(raw)
	// The ESP: FAT in partition 1, GRUB at the removable-media path that firmware boots
	// without any boot entry in its NVRAM.
	if err := run(ctx, nil, nil, "mkfs.fat", "-F", "16", "-n", "EFI", "--offset", strconv.Itoa(espStart/sectorSize), raw, strconv.Itoa(espSize/1024)); err != nil {
		return fmt.Errorf("make the EFI system partition: %w", err)
	}
	esp := fmt.Sprintf("%s@@%d", raw, espStart)
	if err := run(ctx, nil, nil, "mmd", "-i", esp, "::/EFI", "::/EFI/BOOT"); err != nil {
		return fmt.Errorf("make the EFI system partition: %w", err)
	}
	if err := run(ctx, nil, nil, "mcopy", "-i", esp, efi, "::/EFI/BOOT/BOOTX64.EFI"); err != nil {
		return fmt.Errorf("make the EFI system partition: %w", err)
	}
	f, err := os.OpenFile(raw, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	_, err = f.WriteAt(mbr(bootImage, diskSignature(rootfs), []partition{
		{kind: partTypeESP, start: espStart, size: espSize},
		{kind: partTypeRoot, start: rootStart, size: size - rootStart, active: true},
	}), 0)
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

// partition is one primary MBR partition; start and size in bytes.
type partition struct {
	kind        byte
	start, size int64
	active      bool
}

// mbr returns a master boot record: boot code from bootImage, the disk signature, and the
// partitions, addressed by LBA only (CHS fields saturated, as for any disk over 8 GiB).
func mbr(bootImage []byte, signature uint32, parts []partition) []byte {
	sector := make([]byte, sectorSize)
	copy(sector, bootImage[:mbrCodeSize])
	le := binary.LittleEndian
	le.PutUint32(sector[mbrCodeSize:], signature)
	for i, p := range parts {
		entry := sector[446+16*i : 446+16*(i+1)]
		if p.active {
			entry[0] = 0x80
		}
		copy(entry[1:4], []byte{0xfe, 0xff, 0xff})
		entry[4] = p.kind
		copy(entry[5:8], []byte{0xfe, 0xff, 0xff})
		le.PutUint32(entry[8:], uint32(p.start/sectorSize))
		le.PutUint32(entry[12:], uint32(p.size/sectorSize))
	}
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
