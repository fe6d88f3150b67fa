package network

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// hostPrefixes lists what the host's IPv4 routes (all tables) and
// addresses hold, except default routes and the bridges of networks named
// in ours (their subnets are counted by the caller, from the definitions).
func hostPrefixes(ours map[string]bool) ([]inUse, error) {
	links, err := netlink.LinkList()
	if err != nil {
		return nil, fmt.Errorf("list interfaces: %w", err)
	}
	names := map[int]string{}
	for _, l := range links {
		names[l.Attrs().Index] = l.Attrs().Name
	}
	var used []inUse
	routes, err := netlink.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Table: unix.RT_TABLE_UNSPEC}, netlink.RT_FILTER_TABLE)
	if err != nil {
		return nil, fmt.Errorf("list routes: %w", err)
	}
	for _, r := range routes {
		if r.Dst == nil || ours[names[r.LinkIndex]] {
			continue
		}
		if p, ok := prefixOf(r.Dst); ok && p.Bits() > 0 && !p.Addr().IsLoopback() {
			used = append(used, inUse{Prefix: p, Owner: "the host's route via " + linkName(names, r.LinkIndex)})
		}
	}
	addrs, err := netlink.AddrList(nil, netlink.FAMILY_V4)
	if err != nil {
		return nil, fmt.Errorf("list addresses: %w", err)
	}
	for _, a := range addrs {
		if ours[names[a.LinkIndex]] || a.IPNet == nil {
			continue
		}
		if p, ok := prefixOf(a.IPNet); ok && !p.Addr().IsLoopback() {
			used = append(used, inUse{Prefix: p.Masked(), Owner: "the host's address on " + linkName(names, a.LinkIndex)})
		}
	}
	return used, nil
}

func linkName(names map[int]string, index int) string {
	if n, ok := names[index]; ok {
		return n
	}
	return fmt.Sprintf("interface %d", index)
}

func prefixOf(n *net.IPNet) (netip.Prefix, bool) {
	addr, ok := netip.AddrFromSlice(n.IP)
	if !ok {
		return netip.Prefix{}, false
	}
	bits, _ := n.Mask.Size()
	return netip.PrefixFrom(addr.Unmap(), bits), true
}

// interfaceExists reports whether the host has an interface named name.
func interfaceExists(name string) bool {
	_, err := netlink.LinkByName(name)
	return err == nil
}

// ensureBridge makes the network's bridge, with the gateway's address,
// up; an existing bridge of that name (left by an earlier daemon) is
// taken as it is and given what it lacks.
func ensureBridge(d *Definition) error {
	link, err := netlink.LinkByName(d.Bridge)
	var notFound netlink.LinkNotFoundError
	switch {
	case errors.As(err, &notFound):
		br := &netlink.Bridge{LinkAttrs: netlink.NewLinkAttrs()}
		br.Name = d.Bridge
		if err := netlink.LinkAdd(br); err != nil {
			return fmt.Errorf("create bridge %s: %w", d.Bridge, err)
		}
		if link, err = netlink.LinkByName(d.Bridge); err != nil {
			return fmt.Errorf("create bridge %s: %w", d.Bridge, err)
		}
	case err != nil:
		return fmt.Errorf("find bridge %s: %w", d.Bridge, err)
	case link.Type() != "bridge":
		return fmt.Errorf("%s exists and is a %s, not the bridge of network %s: delete it or name the network otherwise", d.Bridge, link.Type(), d.Name)
	}
	gw := &netlink.Addr{IPNet: &net.IPNet{IP: d.Gateway().AsSlice(), Mask: net.CIDRMask(d.Subnet.Bits(), 32)}}
	// An address the bridge had before (another subnet, another cluster
	// slot) would answer for an address that is no longer ours. It goes
	// first: deleting a primary address deletes its secondaries.
	addrs, err := netlink.AddrList(link, netlink.FAMILY_V4)
	if err != nil {
		return fmt.Errorf("list bridge %s's addresses: %w", d.Bridge, err)
	}
	for _, a := range addrs {
		if !a.IP.Equal(gw.IP) || a.Mask.String() != gw.Mask.String() {
			if err := netlink.AddrDel(link, &a); err != nil {
				return fmt.Errorf("remove address %s from bridge %s: %w", a.IPNet, d.Bridge, err)
			}
		}
	}
	if err := netlink.AddrReplace(link, gw); err != nil {
		return fmt.Errorf("address bridge %s: %w", d.Bridge, err)
	}
	if err := netlink.LinkSetUp(link); err != nil {
		return fmt.Errorf("bring bridge %s up: %w", d.Bridge, err)
	}
	if !d.Isolated {
		// Routing between the bridge and the host's other interfaces.
		if err := os.WriteFile("/proc/sys/net/ipv4/ip_forward", []byte("1"), 0o644); err != nil {
			return fmt.Errorf("enable IPv4 forwarding: %w", err)
		}
	}
	return nil
}

// deleteBridge removes the network's bridge, if there is one.
func deleteBridge(name string) error {
	link, err := netlink.LinkByName(name)
	var notFound netlink.LinkNotFoundError
	if errors.As(err, &notFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("find bridge %s: %w", name, err)
	}
	if link.Type() != "bridge" {
		return nil // not ours
	}
	if err := netlink.LinkDel(link); err != nil {
		return fmt.Errorf("delete bridge %s: %w", name, err)
	}
	return nil
}
