package growfs

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"
)

// MBR layout: four 16-byte partition entries at 446, the signature at 510.
const (
	mbrSize          = 512
	mbrEntries       = 446
	mbrEntrySize     = 16
	mbrEntryLBA      = 8  // first sector, uint32
	mbrEntrySectors  = 12 // length in sectors, uint32
	mbrEntryType     = 4
	mbrTypeProtected = 0xee // a GPT disk's protective entry
)

// Partition returns the whole disk a partition belongs to and its number; for a whole
// disk, d itself and 0.
func (d Device) Partition() (Device, int, error) {
	data, err := os.ReadFile(filepath.Join(d.SysFS, "partition"))
	if errors.Is(err, os.ErrNotExist) {
		return d, 0, nil
	}
	if err != nil {
		return d, 0, err
	}
	number, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil {
		return d, 0, fmt.Errorf("partition number of %s: %w", d.Path, err)
	}
	// In sysfs a partition's directory sits inside its disk's.
	real, err := filepath.EvalSymlinks(d.SysFS)
	if err != nil {
		return d, 0, err
	}
	diskSys := filepath.Dir(real)
	uevent, err := os.ReadFile(filepath.Join(diskSys, "uevent"))
	if err != nil {
		return d, 0, fmt.Errorf("disk of %s: %w", d.Path, err)
	}
	for _, line := range strings.Split(string(uevent), "\n") {
		if name, ok := strings.CutPrefix(line, "DEVNAME="); ok {
			return Device{Path: "/dev/" + name, SysFS: diskSys}, number, nil
		}
	}
	return d, 0, fmt.Errorf("%s/uevent names no device", diskSys)
}

// GrowLastPartition extends an MBR partition table's partition number (1-4) to the end of
// a disk of diskSectors sectors, when no partition lies after it, and returns its new length
// in sectors (unchanged when it cannot grow). It changes table, an MBR sector, in place.
func GrowLastPartition(table []byte, number int, diskSectors uint64) (uint64, error) {
	if len(table) < mbrSize || table[510] != 0x55 || table[511] != 0xaa {
		return 0, errors.New("no MBR partition table")
	}
	if number < 1 || number > 4 {
		return 0, fmt.Errorf("partition %d is not a primary MBR partition", number)
	}
	le := binary.LittleEndian
	entry := func(i int) []byte { return table[mbrEntries+i*mbrEntrySize : mbrEntries+(i+1)*mbrEntrySize] }
	mine := entry(number - 1)
	if mine[mbrEntryType] == mbrTypeProtected {
		return 0, errors.New("a GPT disk: its partitions are not grown")
	}
	start := uint64(le.Uint32(mine[mbrEntryLBA:]))
	length := uint64(le.Uint32(mine[mbrEntrySectors:]))
	if length == 0 {
		return 0, fmt.Errorf("partition %d is empty", number)
	}
	for i := range 4 {
		other := entry(i)
		if i != number-1 && other[mbrEntryType] != 0 && uint64(le.Uint32(other[mbrEntryLBA:])) > start {
			return length, nil // another partition follows: nothing to take
		}
	}
	end := min(diskSectors, 1<<32-1) // MBR counts sectors in 32 bits: 2 TiB
	if end <= start+length {
		return length, nil
	}
	length = end - start
	le.PutUint32(mine[mbrEntrySectors:], uint32(length))
	return length, nil
}

// growPartition makes partition number of disk end where the disk ends, when it is its MBR's
// last: the table on disk first, then the kernel's view (BLKPG), as growpart does.
func growPartition(disk Device, number int) error {
	diskBytes, err := disk.Size()
	if err != nil {
		return err
	}
	f, err := os.OpenFile(disk.Path, os.O_RDWR|os.O_SYNC, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	table := make([]byte, mbrSize)
	if _, err := f.ReadAt(table, 0); err != nil {
		return fmt.Errorf("read the partition table of %s: %w", disk.Path, err)
	}
	before := binary.LittleEndian.Uint32(table[mbrEntries+(number-1)*mbrEntrySize+mbrEntrySectors:])
	length, err := GrowLastPartition(table, number, diskBytes/512)
	if err != nil {
		return fmt.Errorf("%s: %w", disk.Path, err)
	}
	if length == uint64(before) {
		return nil
	}
	if _, err := f.WriteAt(table, 0); err != nil {
		return fmt.Errorf("write the partition table of %s: %w", disk.Path, err)
	}
	start := binary.LittleEndian.Uint32(table[mbrEntries+(number-1)*mbrEntrySize+mbrEntryLBA:])
	part := unix.BlkpgPartition{Start: int64(start) * 512, Length: int64(length) * 512, Pno: int32(number)}
	arg := unix.BlkpgIoctlArg{Op: unix.BLKPG_RESIZE_PARTITION, Datalen: int32(unsafe.Sizeof(part)), Data: (*byte)(unsafe.Pointer(&part))}
	if _, _, errno := unix.Syscall(unix.SYS_IOCTL, f.Fd(), unix.BLKPG, uintptr(unsafe.Pointer(&arg))); errno != 0 {
		return fmt.Errorf("tell the kernel partition %d of %s grew: %w", number, disk.Path, errno)
	}
	return nil
}
