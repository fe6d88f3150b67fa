package bochs

import (
	"context"
	"fmt"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/polyvisor/polyvisor/internal/network"
)

// tapWait bounds the wait for the tap Bochs makes as it starts its NIC.
const tapWait = 30 * time.Second

// nicLine is the bochsrc line of the guest's NIC: an Intel e1000 (Linux's
// e1000 driver), whose frames Bochs passes through a tap it makes, named
// as polyvisor names a guest's host interface.
func nicLine(nic network.NIC) string {
	return fmt.Sprintf("e1000: enabled=1, mac=%s, ethmod=tuntap, ethdev=/dev/net/tun:%s", nic.MAC, nic.HostIf)
}

// adoptTap brings the tap Bochs made for nic into the daemon's network
// namespace and joins it to the network's bridge. Bochs runs in a network
// namespace of its own, where it makes the tap (Bochs takes no tap
// descriptor from its parent); a tap moved to another namespace keeps
// carrying the frames of the descriptor that made it, and goes away with
// Bochs.
func adoptTap(ctx context.Context, pid int, nic network.NIC) error {
	ours, err := netns.Get()
	if err != nil {
		return fmt.Errorf("network %s: our network namespace: %w", nic.Network, err)
	}
	defer ours.Close()
	wait, cancel := context.WithTimeout(ctx, tapWait)
	defer cancel()
	for {
		moved, err := moveTap(pid, nic, ours)
		if moved || err != nil {
			if err != nil {
				return fmt.Errorf("network %s: %w", nic.Network, err)
			}
			return network.PlugTap(ctx, nic)
		}
		select {
		case <-wait.Done():
			return fmt.Errorf("network %s: Bochs made no tap %s within %s", nic.Network, nic.HostIf, tapWait)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// moveTap moves the NIC's tap from the network namespace of process pid
// into ours, and reports whether it did; false with no error means not
// yet. The process is unshare first, which makes the namespace, then
// Bochs, which makes the tap: until then its namespace is ours, or has
// no tap.
func moveTap(pid int, nic network.NIC, ours netns.NsHandle) (bool, error) {
	theirs, err := netns.GetFromPid(pid)
	if err != nil {
		return false, fmt.Errorf("the network namespace of Bochs (pid %d): %w", pid, err)
	}
	defer theirs.Close()
	if theirs.Equal(ours) {
		return false, nil
	}
	h, err := netlink.NewHandleAt(theirs)
	if err != nil {
		return false, err
	}
	defer h.Close()
	tap, err := h.LinkByName(nic.HostIf)
	if err != nil {
		return false, nil
	}
	if err := h.LinkSetNsFd(tap, int(ours)); err != nil {
		return false, fmt.Errorf("move tap %s out of Bochs's network namespace: %w", nic.HostIf, err)
	}
	return true, nil
}
