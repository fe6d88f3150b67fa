package uml

import (
	"errors"
	"fmt"

	"github.com/vishvananda/netlink"

	"github.com/polyvisor/polyvisor/internal/network"
)

// makeTap makes the guest's tap on its network's bridge before the kernel
// starts, persistent and up. UML opens a tap it is named (eth0=tuntap,NAME)
// only when the guest brings eth0 up, and a tap it made itself would join
// no bridge; so polyvisor makes it, the kernel attaches to it, and Cleanup
// removes it. A tap of that name left by a crash is replaced.
func makeTap(nic network.NIC) error {
	bridge, err := netlink.LinkByName(nic.Bridge)
	if err != nil {
		return fmt.Errorf("network %s: bridge %s: %w", nic.Network, nic.Bridge, err)
	}
	if err := removeTap(nic.HostIf); err != nil {
		return fmt.Errorf("network %s: %w", nic.Network, err)
	}
	tap := &netlink.Tuntap{
		LinkAttrs: netlink.LinkAttrs{Name: nic.HostIf, MasterIndex: bridge.Attrs().Index},
		Mode:      netlink.TUNTAP_MODE_TAP,
		// What UML asks for when it attaches (IFF_TAP | IFF_NO_PI).
		Flags: netlink.TUNTAP_NO_PI | netlink.TUNTAP_ONE_QUEUE,
	}
	if err := netlink.LinkAdd(tap); err != nil {
		return fmt.Errorf("network %s: create tap %s: %w", nic.Network, nic.HostIf, err)
	}
	if err := netlink.LinkSetUp(tap); err != nil {
		removeTap(nic.HostIf)
		return fmt.Errorf("network %s: bring %s up: %w", nic.Network, nic.HostIf, err)
	}
	return nil
}

// removeTap deletes the tap called name, if there is one.
func removeTap(name string) error {
	link, err := netlink.LinkByName(name)
	var notFound netlink.LinkNotFoundError
	if errors.As(err, &notFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("find tap %s: %w", name, err)
	}
	if err := netlink.LinkDel(link); err != nil {
		return fmt.Errorf("delete tap %s: %w", name, err)
	}
	return nil
}
