package bochs

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/polyvisor/polyvisor/internal/runcmd"
)

// MBR layout: the partition table's four entries after the boot code, each
// with its type at byte 4 and its first sector (LBA) at byte 8.
const (
	sectorSize   = 512
	mbrTable     = 446
	mbrEntry     = 16
	partTypeRoot = 0x83 // Linux
)

// rootPartitionOffset returns where, in bytes, the raw disk at path has
// its Linux partition, the root file system of a BIOS template's disk.
func rootPartitionOffset(path string) (int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	mbr := make([]byte, sectorSize)
	if _, err := f.ReadAt(mbr, 0); err != nil {
		return 0, fmt.Errorf("read the MBR of %s: %w", path, err)
	}
	if mbr[510] != 0x55 || mbr[511] != 0xaa {
		return 0, fmt.Errorf("%s has no MBR", path)
	}
	for i := range 4 {
		entry := mbr[mbrTable+i*mbrEntry : mbrTable+(i+1)*mbrEntry]
		if entry[4] == partTypeRoot {
			return int64(binary.LittleEndian.Uint32(entry[8:])) * sectorSize, nil
		}
	}
	return 0, fmt.Errorf("%s has no Linux partition", path)
}

// nameDisk writes name into /etc/hostname of the root file system on the
// guest's own raw disk, with debugfs at the partition's offset (no mount,
// no loop device). The guest's sysinit reads it when nothing else names
// the guest: QEMU names a firmware-booted guest through fw_cfg, which
// Bochs lacks, and the kernel command line is the disk's grub.cfg.
func nameDisk(ctx context.Context, disk, name string) error {
	offset, err := rootPartitionOffset(disk)
	if err != nil {
		return err
	}
	fs := disk + "?offset=" + strconv.FormatInt(offset, 10)
	dir := filepath.Dir(disk)
	hostname, script := filepath.Join(dir, ".hostname"), filepath.Join(dir, ".hostname.debugfs")
	defer os.Remove(hostname)
	defer os.Remove(script)
	if err := os.WriteFile(hostname, []byte(name+"\n"), 0o644); err != nil {
		return err
	}
	// rm fails harmlessly where the template has no /etc/hostname.
	if err := os.WriteFile(script, []byte("rm /etc/hostname\nwrite "+hostname+" /etc/hostname\n"), 0o600); err != nil {
		return err
	}
	if err := runcmd.Run(ctx, runcmd.Cmd{Name: "debugfs", Args: []string{"-w", "-f", script, fs}}); err != nil {
		return fmt.Errorf("write the guest's name into its disk: %w", err)
	}
	// debugfs exits 0 whatever its commands did: read the name back.
	var out bytes.Buffer
	if err := runcmd.Run(ctx, runcmd.Cmd{Name: "debugfs", Args: []string{"-R", "cat /etc/hostname", fs}, Stdout: &out}); err != nil {
		return fmt.Errorf("read the guest's name back from its disk: %w", err)
	}
	if got := strings.TrimSpace(out.String()); got != name {
		return fmt.Errorf("write the guest's name into its disk: /etc/hostname reads %q", got)
	}
	return nil
}
