package network

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/polyvisor/polyvisor/internal/guest"
)

// GuestInterface is what a guest sees of its network: eth0.
const GuestInterface = "eth0"

// NIC is a guest's interface on one network. Its names derive from the
// guest's and the network's, so a guest keeps its MAC (and with it its
// lease and address) across restarts, and a crashed daemon's leftovers
// can be recognized.
type NIC struct {
	Network string
	Bridge  string           // the network's bridge
	HostIf  string           // the host's end: a veth (container) or tap (VM)
	MAC     net.HardwareAddr // the guest's end
}

// HostIfPrefix starts the names of every host interface polyvisor makes
// for a guest.
const HostIfPrefix = "pv-"

// NICOf returns the interface of guest on network.
func NICOf(guest, network string) NIC {
	sum := sha256.Sum256([]byte(guest + "\x00" + network))
	// A locally administered unicast MAC: 02 and five bytes of the hash.
	mac := net.HardwareAddr{0x02, sum[0], sum[1], sum[2], sum[3], sum[4]}
	return NIC{Network: network, Bridge: network, HostIf: HostIfPrefix + hex.EncodeToString(sum[5:10]), MAC: mac}
}

// GuestNIC returns the interface of a guest on network: NICOf, with the
// MAC the definition carries for that network when it has one (an imported
// guest keeps the MAC its vendor gave it, and with it what the guest's OS
// bound to that MAC). For a guest that lists its NICs it is the first NIC
// on network: the one whose address the network reserves and reports.
func GuestNIC(def *guest.Definition, network string) NIC {
	for i, n := range def.NICs {
		if n.Network == network {
			return GuestNICs(def)[i]
		}
	}
	nic := NICOf(def.Name, network)
	if mac, err := net.ParseMAC(def.MACs[network]); err == nil {
		nic.MAC = mac
	}
	return nic
}

// GuestNICs returns every interface of a guest, in order: one per network
// (GuestNIC), or, for a guest that lists its NICs, one per NIC with its
// MAC. The first NIC on each network is named as NICOf names it, the
// others by their place too, so that each has a tap and MAC of its own.
func GuestNICs(def *guest.Definition) []NIC {
	var nics []NIC
	if len(def.NICs) == 0 {
		for _, n := range def.Networks {
			nics = append(nics, GuestNIC(def, n))
		}
		return nics
	}
	seen := map[string]bool{}
	for i, n := range def.NICs {
		nic := NICOf(def.Name, n.Network)
		if seen[n.Network] {
			nic = nicAt(def.Name, n.Network, i)
		}
		seen[n.Network] = true
		if mac, err := net.ParseMAC(n.MAC); err == nil {
			nic.MAC = mac
		}
		nics = append(nics, nic)
	}
	return nics
}

// nicAt is NICOf for the NIC at index i of a guest with more than one NIC
// on network.
func nicAt(guest, network string, i int) NIC {
	sum := sha256.Sum256([]byte(guest + "\x00" + network + "\x00" + strconv.Itoa(i)))
	mac := net.HardwareAddr{0x02, sum[0], sum[1], sum[2], sum[3], sum[4]}
	return NIC{Network: network, Bridge: network, HostIf: HostIfPrefix + hex.EncodeToString(sum[5:10]), MAC: mac}
}

// PlugVeth gives the process pid's network namespace (a container's) an
// eth0 with the NIC's MAC, whose peer on the host joins the bridge. The
// pair goes away with the namespace.
func PlugVeth(nic NIC, pid int) error {
	bridge, err := netlink.LinkByName(nic.Bridge)
	if err != nil {
		return fmt.Errorf("network %s: bridge %s: %w", nic.Network, nic.Bridge, err)
	}
	removeStale(nic.HostIf)
	veth := &netlink.Veth{
		LinkAttrs:        netlink.LinkAttrs{Name: nic.HostIf, MasterIndex: bridge.Attrs().Index},
		PeerName:         GuestInterface,
		PeerHardwareAddr: nic.MAC,
		PeerNamespace:    netlink.NsPid(pid),
	}
	if err := netlink.LinkAdd(veth); err != nil {
		return fmt.Errorf("network %s: create veth %s: %w", nic.Network, nic.HostIf, err)
	}
	if err := upInNamespace(pid, GuestInterface); err != nil {
		netlink.LinkDel(veth)
		return fmt.Errorf("network %s: %w", nic.Network, err)
	}
	if err := netlink.LinkSetUp(veth); err != nil {
		netlink.LinkDel(veth)
		return fmt.Errorf("network %s: bring %s up: %w", nic.Network, nic.HostIf, err)
	}
	return nil
}

// upInNamespace brings interface name up in pid's network namespace.
func upInNamespace(pid int, name string) error {
	ns, err := netns.GetFromPid(pid)
	if err != nil {
		return fmt.Errorf("network namespace of %d: %w", pid, err)
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		return fmt.Errorf("network namespace of %d: %w", pid, err)
	}
	defer h.Close()
	link, err := h.LinkByName(name)
	if err == nil {
		err = h.LinkSetUp(link)
	}
	if err != nil {
		return fmt.Errorf("bring %s up in the guest: %w", name, err)
	}
	return nil
}

// tapWait bounds how long PlugTap waits for QEMU to make its tap: QEMU
// answers on QMP before it sets its network backends up.
const tapWait = 10 * time.Second

// PlugTap joins a tap QEMU makes (-netdev tap,ifname=HostIf) to the bridge,
// waiting for it to appear until ctx ends. The tap goes away with QEMU.
func PlugTap(ctx context.Context, nic NIC) error {
	bridge, err := netlink.LinkByName(nic.Bridge)
	if err != nil {
		return fmt.Errorf("network %s: bridge %s: %w", nic.Network, nic.Bridge, err)
	}
	ctx, cancel := context.WithTimeout(ctx, tapWait)
	defer cancel()
	tap, err := netlink.LinkByName(nic.HostIf)
	for err != nil {
		select {
		case <-ctx.Done():
			return fmt.Errorf("network %s: QEMU made no tap %s: %w", nic.Network, nic.HostIf, err)
		case <-time.After(20 * time.Millisecond):
		}
		tap, err = netlink.LinkByName(nic.HostIf)
	}
	if err := netlink.LinkSetMaster(tap, bridge); err != nil {
		return fmt.Errorf("network %s: join %s to %s: %w", nic.Network, nic.HostIf, nic.Bridge, err)
	}
	if err := netlink.LinkSetUp(tap); err != nil {
		return fmt.Errorf("network %s: bring %s up: %w", nic.Network, nic.HostIf, err)
	}
	return nil
}

// removeStale deletes a host interface of that name left by a guest that
// ended while no daemon watched.
func removeStale(name string) {
	if link, err := netlink.LinkByName(name); err == nil {
		netlink.LinkDel(link)
	}
}

// SweepInterfaces deletes guest interfaces on the host (named with
// HostIfPrefix, joined to one of bridges) that no live guest's NIC names:
// what a crash left. It returns what it removed.
func SweepInterfaces(live map[string]bool, bridges []string) ([]string, error) {
	links, err := netlink.LinkList()
	if err != nil {
		return nil, fmt.Errorf("list interfaces: %w", err)
	}
	ours := map[int]bool{}
	for _, l := range links {
		if l.Type() == "bridge" && slices.Contains(bridges, l.Attrs().Name) {
			ours[l.Attrs().Index] = true
		}
	}
	var removed []string
	var errs []error
	for _, l := range links {
		name := l.Attrs().Name
		if !strings.HasPrefix(name, HostIfPrefix) || live[name] || !ours[l.Attrs().MasterIndex] {
			continue
		}
		if err := netlink.LinkDel(l); err != nil {
			errs = append(errs, fmt.Errorf("delete %s: %w", name, err))
			continue
		}
		removed = append(removed, name)
	}
	return removed, errors.Join(errs...)
}
