package vmimage

import (
	"context"
	"fmt"
	"os"
)

// Sysinit is where a prepared root tree has the script busybox init runs
// first (file systems, hostname).
const Sysinit = "/" + sysinitPath

// PrepareRootTree makes rootfs, a copy of an amd64 container template's
// tree owned by the guest's ids, bootable by busybox init under a kernel
// other than QEMU's (User-Mode Linux): the agent (a static amd64
// binary at agent), the sysinit script, the DHCP launcher, and poweroff,
// reboot and halt; console names the console's device. The caller writes
// its own /etc/inittab over the one written here when the agent needs
// arguments.
func PrepareRootTree(rootfs, console, agent string) error {
	return prepareRootTree(rootfs, archSpec{debian: "amd64", console: console}, agent)
}

// WriteExt4 writes raw, a new sparse raw ext4 image (no partition table)
// holding the tree rootfs, of minSize bytes or, when the tree needs more,
// sized as a VM template's root disk is, and returns its size.
func WriteExt4(ctx context.Context, rootfs, raw string, minSize int64) (int64, error) {
	size, err := writeExt4Sized(ctx, rootfs, raw, 0, minSize)
	if err != nil {
		return 0, err
	}
	if err := os.Chmod(raw, 0o444); err != nil {
		os.Remove(raw)
		return 0, fmt.Errorf("make root disk: %w", err)
	}
	return size, nil
}
