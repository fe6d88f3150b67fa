package vmimage

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	"github.com/polyvisor/polyvisor/internal/fsutil"
)

// Root disk sizing: the tree plus half again for the guest's own writes, plus room for the
// file system's metadata and journal.
const (
	diskHeadroomNum = 3 // size = tree * 3/2 + diskMetadata
	diskHeadroomDen = 2
	diskMetadata    = 64 << 20
	diskRounding    = 1 << 20
)

// diskSize returns the size of the ext4 image for a tree of treeBytes.
func diskSize(treeBytes int64) int64 {
	size := treeBytes*diskHeadroomNum/diskHeadroomDen + diskMetadata
	return (size + diskRounding - 1) / diskRounding * diskRounding
}

// makeRootDisk writes diskPath, a qcow2 image of an ext4 file system holding the tree rootfs
// with its owners and modes as they are, the whole disk (no partition table).
func makeRootDisk(ctx context.Context, rootfs, diskPath, work string) error {
	raw := filepath.Join(work, "disk.raw")
	if _, err := writeExt4(ctx, rootfs, raw, 0); err != nil {
		return err
	}
	defer os.Remove(raw)
	return convertToBase(ctx, raw, diskPath)
}

// writeExt4 makes raw, a new raw disk image holding, offset bytes in, an ext4 file system
// sized for the tree rootfs and filled from it, and returns the image's size. mke2fs -d fills
// the file system from the tree without mounting anything (no loop device, no root-owned
// mount).
func writeExt4(ctx context.Context, rootfs, raw string, offset int64) (int64, error) {
	return writeExt4Sized(ctx, rootfs, raw, offset, 0)
}

// writeExt4Sized is writeExt4 with a file system of at least minSize bytes.
func writeExt4Sized(ctx context.Context, rootfs, raw string, offset, minSize int64) (int64, error) {
	treeBytes, err := fsutil.TreeSize(ctx, rootfs, fsutil.ImageBlocks)
	if err != nil {
		return 0, fmt.Errorf("measure root tree: %w", err)
	}
	fsSize := max(diskSize(treeBytes), (minSize+diskRounding-1)/diskRounding*diskRounding)
	f, err := os.OpenFile(raw, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return 0, fmt.Errorf("make root disk: %w", err)
	}
	err = f.Truncate(offset + fsSize)
	if closeErr := f.Close(); err == nil {
		err = closeErr
	}
	if err != nil {
		os.Remove(raw)
		return 0, fmt.Errorf("make root disk: %w", err)
	}
	// A 4 KiB block size whatever the size (mke2fs picks 1 KiB below 512 MiB); inode tables
	// and journal zeroed now, not by the guest's ext4lazyinit thread, which would cost
	// emulated CPU time on every first boot of every clone.
	if err := run(ctx, nil, nil, "mke2fs", "-q", "-F", "-t", "ext4", "-b", "4096", "-L", "root",
		"-E", fmt.Sprintf("offset=%d,root_owner=0:0,lazy_itable_init=0,lazy_journal_init=0", offset),
		"-d", rootfs, raw, strconv.FormatInt(fsSize/4096, 10)); err != nil {
		os.Remove(raw)
		return 0, fmt.Errorf("make root file system: %w", err)
	}
	return offset + fsSize, nil
}

// convertToBase converts the raw image to diskPath, a read-only qcow2: the base of every
// clone's overlay. Converting leaves the unused blocks out.
func convertToBase(ctx context.Context, raw, diskPath string) error {
	if err := run(ctx, nil, nil, "qemu-img", "convert", "-q", "-f", "raw", "-O", "qcow2", raw, diskPath); err != nil {
		return fmt.Errorf("convert root disk to qcow2: %w", err)
	}
	if err := os.Chmod(diskPath, 0o444); err != nil {
		return fmt.Errorf("make root disk: %w", err)
	}
	return nil
}
