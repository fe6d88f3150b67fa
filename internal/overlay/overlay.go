// Package overlay stretches a Linux bridge across hosts: a VXLAN device
// on the bridge sends its frames, in UDP, to every peer host (unicast
// head-end replication, no multicast group, so any routed underlay
// works), and learns which host each guest's MAC lives on. A bridge-family
// nftables table keeps DHCP on its own host, so that each host's DHCP
// server answers its own guests only; an inet-family one takes VXLAN
// packets from the peers alone.
package overlay

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// DefaultPort is VXLAN's IANA port, used when Config.Port is 0.
const DefaultPort = 4789

// overhead is what VXLAN over IPv4 adds to a frame: outer IPv4 (20), UDP
// (8), VXLAN (8) and the inner Ethernet header (14).
const overhead = 50

// aliasPrefix marks our VXLAN devices (the interface's alias names the
// bridge), so that Remove finds a device even after its bridge is gone.
const aliasPrefix = "polyvisor overlay of "

// Config is one host's side of an overlay.
type Config struct {
	// Bridge is the Linux bridge the overlay extends; it must exist.
	Bridge string
	// VNI is the VXLAN network identifier, the same on every host.
	VNI uint32
	// Local is this host's underlay address, held by one of its interfaces.
	Local netip.Addr
	// Peers are the other hosts' underlay addresses.
	Peers []netip.Addr
	// Port is the UDP port of VXLAN on every host; 0 means DefaultPort.
	Port int
}

// Device is the name of the VXLAN device of a VNI.
func Device(vni uint32) string { return "pvx" + strconv.FormatUint(uint64(vni), 10) }

// validate checks a configuration, naming the field at fault.
func (c Config) validate() error {
	switch {
	case c.Bridge == "":
		return errors.New("overlay: bridge: name the bridge to extend")
	case c.VNI == 0 || c.VNI >= 1<<24:
		return fmt.Errorf("overlay: vni %d: use 1 to %d", c.VNI, 1<<24-1)
	case !c.Local.IsValid():
		return errors.New("overlay: local: give this host's underlay address")
	case c.Port < 0 || c.Port > 65535:
		return fmt.Errorf("overlay: port %d: use a UDP port, or 0 for %d", c.Port, DefaultPort)
	}
	for _, p := range c.Peers {
		if !p.IsValid() || p.Is4() != c.Local.Is4() {
			return fmt.Errorf("overlay: peer %s: give an address of the same family as local %s", p, c.Local)
		}
		if p == c.Local {
			return fmt.Errorf("overlay: peer %s is this host's own address: leave it out of the peers", p)
		}
	}
	return nil
}

// Ensure makes the bridge's overlay say c: the VXLAN device (made, or
// made again when its VNI, port or local address changed) attached to the
// bridge and up, one flooding entry per peer (peers that left are dropped,
// with what was learned through them), and the filters. Ensure and
// Remove change one host-wide nftables table: callers serialize them.
func Ensure(ctx context.Context, c Config) error {
	if c.Port == 0 {
		c.Port = DefaultPort
	}
	if err := c.validate(); err != nil {
		return err
	}
	br, err := netlink.LinkByName(c.Bridge)
	if err != nil {
		return fmt.Errorf("overlay of %s: find the bridge: %w", c.Bridge, err)
	}
	if br.Type() != "bridge" {
		return fmt.Errorf("overlay of %s: it is a %s, not a bridge", c.Bridge, br.Type())
	}
	underlay, err := linkOf(c.Local)
	if err != nil {
		return fmt.Errorf("overlay of %s: local %s: %w", c.Bridge, c.Local, err)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	vx, err := ensureDevice(c, br, underlay)
	if err != nil {
		return fmt.Errorf("overlay of %s: %w", c.Bridge, err)
	}
	if err := syncPeers(vx, c.Peers); err != nil {
		return fmt.Errorf("overlay of %s: %w", c.Bridge, err)
	}
	if err := syncFilter(); err != nil {
		return fmt.Errorf("overlay of %s: %w", c.Bridge, err)
	}
	return nil
}

// Remove takes the bridge's overlay away: its VXLAN device and its
// filters. A bridge without one is left as it is.
func Remove(bridge string) error {
	devs, err := devices()
	if err != nil {
		return fmt.Errorf("remove overlay of %s: %w", bridge, err)
	}
	var errs []error
	for _, l := range devs {
		if l.Attrs().Alias == aliasPrefix+bridge {
			if err := netlink.LinkDel(l); err != nil {
				errs = append(errs, fmt.Errorf("remove overlay of %s: delete %s: %w", bridge, l.Attrs().Name, err))
			}
		}
	}
	if err := syncFilter(); err != nil {
		errs = append(errs, fmt.Errorf("remove overlay of %s: %w", bridge, err))
	}
	return errors.Join(errs...)
}

// MTU is the largest frame the overlay carries for a host whose underlay
// address is local: the underlay interface's MTU less VXLAN's overhead.
// Guests should be told it (DHCP option 26): the bridge drops larger frames.
func MTU(local netip.Addr) (int, error) {
	l, err := linkOf(local)
	if err != nil {
		return 0, fmt.Errorf("overlay MTU: local %s: %w", local, err)
	}
	return l.Attrs().MTU - overhead, nil
}

// linkOf returns the interface that holds addr.
func linkOf(addr netip.Addr) (netlink.Link, error) {
	family := netlink.FAMILY_V4
	if addr.Is6() {
		family = netlink.FAMILY_V6
	}
	addrs, err := netlink.AddrList(nil, family)
	if err != nil {
		return nil, fmt.Errorf("list addresses: %w", err)
	}
	for _, a := range addrs {
		if ip, ok := netip.AddrFromSlice(a.IP); ok && ip.Unmap() == addr {
			return netlink.LinkByIndex(a.LinkIndex)
		}
	}
	return nil, errors.New("no interface of this host has that address: give the address other hosts reach this one at")
}

// devices lists our VXLAN devices.
func devices() ([]netlink.Link, error) {
	links, err := netlink.LinkList()
	if err != nil {
		return nil, fmt.Errorf("list interfaces: %w", err)
	}
	var ours []netlink.Link
	for _, l := range links {
		if l.Type() == "vxlan" && strings.HasPrefix(l.Attrs().Alias, aliasPrefix) {
			ours = append(ours, l)
		}
	}
	return ours, nil
}

// ensureDevice returns the bridge's VXLAN device as c says, attached and up.
func ensureDevice(c Config, br, underlay netlink.Link) (netlink.Link, error) {
	name := Device(c.VNI)
	alias := aliasPrefix + c.Bridge
	devs, err := devices()
	if err != nil {
		return nil, err
	}
	// A device of this bridge under another VNI (the network's was
	// changed) goes; so does ours whose settings differ.
	for _, l := range devs {
		if l.Attrs().Alias == alias && (l.Attrs().Name != name || !sameSettings(l, c, underlay)) {
			if err := netlink.LinkDel(l); err != nil {
				return nil, fmt.Errorf("delete %s: %w", l.Attrs().Name, err)
			}
		}
	}
	l, err := netlink.LinkByName(name)
	var notFound netlink.LinkNotFoundError
	switch {
	case errors.As(err, &notFound):
		attrs := netlink.NewLinkAttrs()
		attrs.Name = name
		attrs.MTU = underlay.Attrs().MTU - overhead
		vx := &netlink.Vxlan{LinkAttrs: attrs, VxlanId: int(c.VNI), VtepDevIndex: underlay.Attrs().Index,
			SrcAddr: c.Local.AsSlice(), Port: c.Port, Learning: true}
		if err := netlink.LinkAdd(vx); err != nil {
			return nil, fmt.Errorf("create %s: %w", name, err)
		}
		if l, err = netlink.LinkByName(name); err != nil {
			return nil, fmt.Errorf("create %s: %w", name, err)
		}
		if err := netlink.LinkSetAlias(l, alias); err != nil {
			netlink.LinkDel(l)
			return nil, fmt.Errorf("label %s: %w", name, err)
		}
	case err != nil:
		return nil, fmt.Errorf("find %s: %w", name, err)
	case l.Attrs().Alias != alias:
		return nil, fmt.Errorf("%s exists and is not the overlay of %s (alias %q): give this network another VNI, or delete %s", name, c.Bridge, l.Attrs().Alias, name)
	}
	if l.Attrs().MasterIndex != br.Attrs().Index {
		if err := netlink.LinkSetMaster(l, br); err != nil {
			return nil, fmt.Errorf("attach %s to %s: %w", name, c.Bridge, err)
		}
	}
	if err := netlink.LinkSetUp(l); err != nil {
		return nil, fmt.Errorf("bring %s up: %w", name, err)
	}
	return l, nil
}

// sameSettings reports whether an existing device has c's VNI, port and
// local address on underlay.
func sameSettings(l netlink.Link, c Config, underlay netlink.Link) bool {
	vx, ok := l.(*netlink.Vxlan)
	if !ok {
		return false
	}
	local, _ := netip.AddrFromSlice(vx.SrcAddr)
	return vx.VxlanId == int(c.VNI) && vx.Port == c.Port && local.Unmap() == c.Local &&
		vx.VtepDevIndex == underlay.Attrs().Index && vx.Attrs().MTU == underlay.Attrs().MTU-overhead
}

// zeroMAC is the FDB key of frames no learned entry claims (broadcast,
// multicast, unknown unicast): one entry per peer replicates them to all.
var zeroMAC = net.HardwareAddr{0, 0, 0, 0, 0, 0}

// syncPeers makes the device's flooding entries the peers: `bridge fdb
// append 00:00:00:00:00:00 dev VX dst PEER` for each new one, and for each
// peer that left, its flooding entry and every MAC learned behind it, so
// that no frame goes to it any more.
func syncPeers(vx netlink.Link, peers []netip.Addr) error {
	fdb, err := netlink.NeighList(vx.Attrs().Index, unix.AF_BRIDGE)
	if err != nil {
		return fmt.Errorf("list %s's forwarding entries: %w", vx.Attrs().Name, err)
	}
	have := map[netip.Addr]bool{}
	var errs []error
	for _, n := range fdb {
		dst, ok := netip.AddrFromSlice(n.IP)
		if !ok {
			continue
		}
		dst = dst.Unmap()
		if slices.Contains(peers, dst) {
			if n.HardwareAddr.String() == zeroMAC.String() {
				have[dst] = true
			}
			continue
		}
		if err := netlink.NeighDel(&n); err != nil && !errors.Is(err, unix.ENOENT) {
			errs = append(errs, fmt.Errorf("drop %s's entry %s via %s: %w", vx.Attrs().Name, n.HardwareAddr, dst, err))
		}
	}
	for _, p := range peers {
		if have[p] {
			continue
		}
		err := netlink.NeighAppend(&netlink.Neigh{LinkIndex: vx.Attrs().Index, Family: unix.AF_BRIDGE,
			Flags: netlink.NTF_SELF, State: netlink.NUD_NOARP | netlink.NUD_PERMANENT, IP: p.AsSlice(), HardwareAddr: zeroMAC})
		if err != nil {
			errs = append(errs, fmt.Errorf("add peer %s to %s: %w", p, vx.Attrs().Name, err))
		}
	}
	return errors.Join(errs...)
}
