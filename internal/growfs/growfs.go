// Package growfs lets a guest's ext4 root file system fill its disk once
// the host has grown the disk: what resize2fs does for a mounted file
// system, through the same kernel call (EXT4_IOC_RESIZE_FS), so that a
// static agent can do it on every architecture without e2fsprogs.
package growfs

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ext4ResizeFS is EXT4_IOC_RESIZE_FS, _IOW('f', 16, __u64): grow the
// mounted file system to the given number of blocks.
const ext4ResizeFS = 0x40086610

// Superblock is what Grow needs of an ext4 superblock.
type Superblock struct {
	Blocks    uint64 // file system size in blocks
	BlockSize uint64 // bytes
	// Free counts the free blocks, as of the last time the file system
	// wrote its superblock (exact once it is unmounted).
	Free uint64
	// Overhead counts the blocks of the file system's own metadata, where
	// mke2fs (1.47 and later) or the kernel recorded it; 0 otherwise.
	Overhead uint64
}

// Bytes is the file system's size.
func (s Superblock) Bytes() uint64 { return s.Blocks * s.BlockSize }

// Superblock layout (Documentation/filesystems/ext4/super.rst): it starts
// 1024 bytes into the device.
const (
	superblockOffset = 1024
	superblockSize   = 1024
	offBlocksLo      = 0x4
	offFreeBlocksLo  = 0xC
	offLogBlockSize  = 0x18
	offMagic         = 0x38
	offIncompat      = 0x60
	offBlocksHi      = 0x150
	offFreeBlocksHi  = 0x158
	offOverhead      = 0x248
	ext4Magic        = 0xEF53
	incompat64Bit    = 0x80
)

// ReadSuperblock reads the ext4 superblock of a device or image.
func ReadSuperblock(r io.ReaderAt) (Superblock, error) {
	buf := make([]byte, superblockSize)
	if _, err := r.ReadAt(buf, superblockOffset); err != nil {
		return Superblock{}, fmt.Errorf("read superblock: %w", err)
	}
	le := binary.LittleEndian
	if le.Uint16(buf[offMagic:]) != ext4Magic {
		return Superblock{}, errors.New("not an ext2/3/4 file system (no superblock magic)")
	}
	logSize := le.Uint32(buf[offLogBlockSize:])
	if logSize > 6 { // 1 KiB << 6 = 64 KiB, the largest block size
		return Superblock{}, fmt.Errorf("superblock: block size 2^(10+%d) is out of range", logSize)
	}
	sb := Superblock{Blocks: uint64(le.Uint32(buf[offBlocksLo:])), BlockSize: 1024 << logSize, Free: uint64(le.Uint32(buf[offFreeBlocksLo:])), Overhead: uint64(le.Uint32(buf[offOverhead:]))}
	if le.Uint32(buf[offIncompat:])&incompat64Bit != 0 {
		sb.Blocks |= uint64(le.Uint32(buf[offBlocksHi:])) << 32
		sb.Free |= uint64(le.Uint32(buf[offFreeBlocksHi:])) << 32
	}
	return sb, nil
}

// Device is the block device a mounted file system lives on.
type Device struct {
	Path  string // /dev/vda
	SysFS string // /sys/dev/block/MAJ:MIN
}

// DeviceOf finds the block device mounted on mountpoint.
func DeviceOf(mountpoint string) (Device, error) {
	var st unix.Stat_t
	if err := unix.Stat(mountpoint, &st); err != nil {
		return Device{}, fmt.Errorf("stat %s: %w", mountpoint, err)
	}
	sys := fmt.Sprintf("/sys/dev/block/%d:%d", unix.Major(st.Dev), unix.Minor(st.Dev))
	uevent, err := os.ReadFile(filepath.Join(sys, "uevent"))
	if err != nil {
		return Device{}, fmt.Errorf("%s is not on a block device: %w", mountpoint, err)
	}
	for _, line := range strings.Split(string(uevent), "\n") {
		if name, ok := strings.CutPrefix(line, "DEVNAME="); ok {
			return Device{Path: "/dev/" + name, SysFS: sys}, nil
		}
	}
	return Device{}, fmt.Errorf("%s/uevent names no device", sys)
}

// Size is the device's size in bytes, as the kernel sees it now.
func (d Device) Size() (uint64, error) {
	data, err := os.ReadFile(filepath.Join(d.SysFS, "size"))
	if err != nil {
		return 0, fmt.Errorf("size of %s: %w", d.Path, err)
	}
	sectors, err := strconv.ParseUint(strings.TrimSpace(string(data)), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("size of %s: %w", d.Path, err)
	}
	return sectors * 512, nil
}

// Result says what Grow did.
type Result struct {
	Device   string
	From, To uint64 // file system size in bytes before and after
}

// Grown reports whether the file system changed size.
func (r Result) Grown() bool { return r.To > r.From }

// Grow makes the ext4 file system mounted read-write on mountpoint fill
// its device; on a partition, the partition first fills the disk when it
// is the last of an MBR table. When the host has just grown the disk, the
// guest's kernel learns the new size a moment later: minSize (bytes, 0 for
// none) makes Grow wait, until ctx ends, for the disk to reach it.
func Grow(ctx context.Context, mountpoint string, minSize uint64) (Result, error) {
	dev, err := DeviceOf(mountpoint)
	if err != nil {
		return Result{}, err
	}
	disk, partition, err := dev.Partition()
	if err != nil {
		return Result{}, err
	}
	diskSize, err := disk.Size()
	for err == nil && diskSize < minSize {
		select {
		case <-ctx.Done():
			return Result{}, fmt.Errorf("%s is %d bytes, not the %d the host gave it: %w", disk.Path, diskSize, minSize, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
		diskSize, err = disk.Size()
	}
	if err != nil {
		return Result{}, err
	}
	if partition > 0 {
		if err := growPartition(disk, partition); err != nil {
			return Result{}, err
		}
	}
	size, err := dev.Size()
	if err != nil {
		return Result{}, err
	}
	f, err := os.Open(dev.Path)
	if err != nil {
		return Result{}, err
	}
	sb, err := ReadSuperblock(f)
	f.Close()
	if err != nil {
		return Result{}, fmt.Errorf("%s: %w", dev.Path, err)
	}
	result := Result{Device: dev.Path, From: sb.Bytes(), To: sb.Bytes()}
	blocks := size / sb.BlockSize
	if blocks <= sb.Blocks {
		return result, nil
	}
	dir, err := os.Open(mountpoint)
	if err != nil {
		return result, err
	}
	defer dir.Close()
	if _, _, errno := unix.Syscall(unix.SYS_IOCTL, dir.Fd(), ext4ResizeFS, uintptr(unsafe.Pointer(&blocks))); errno != 0 {
		return result, fmt.Errorf("grow the file system on %s to %d blocks: %w", dev.Path, blocks, errno)
	}
	result.To = blocks * sb.BlockSize
	return result, nil
}
