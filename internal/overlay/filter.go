package overlay

import (
	"fmt"
	"net/netip"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// FilterTable names the nftables tables of the overlays, one of the
// bridge family and one of the inet family: they are rebuilt whole from
// the VXLAN devices there are, and removed with the last, so nothing of
// ours mixes with other tools' rules.
const FilterTable = "polyvisor-overlay"

// DHCP's server and client ports: a request that crossed to another host
// would be answered by that host's server too, with its own range and
// router, and dnsmasq, authoritative, would refuse the other's leases.
const (
	dhcpServerPort = 67
	dhcpClientPort = 68
)

// syncFilter makes the tables say what the overlays need, in one netlink
// batch (atomic):
//   - bridge family: drop DHCP that would enter the bridge from a VXLAN
//     device (prerouting: to the host or flooded to its guests) or leave
//     through one (forward: from a guest; output: from the host's server);
//   - inet family: drop VXLAN packets from any address but the peers', so
//     that no one else on the underlay puts frames on the bridges.
func syncFilter() error {
	devs, err := devices()
	if err != nil {
		return err
	}
	conn, err := nftables.New()
	if err != nil {
		return fmt.Errorf("nftables: %w", err)
	}
	for _, family := range []nftables.TableFamily{nftables.TableFamilyBridge, nftables.TableFamilyINet} {
		tables, err := conn.ListTablesOfFamily(family)
		if err != nil {
			return fmt.Errorf("nftables: list tables: %w", err)
		}
		for _, t := range tables {
			if t.Name == FilterTable {
				conn.DelTable(t)
			}
		}
	}
	if len(devs) > 0 {
		table := conn.AddTable(&nftables.Table{Family: nftables.TableFamilyBridge, Name: FilterTable})
		chains := map[string]*nftables.Chain{}
		for _, c := range []struct {
			name string
			hook *nftables.ChainHook
		}{{"prerouting", nftables.ChainHookPrerouting}, {"forward", nftables.ChainHookForward}, {"output", nftables.ChainHookOutput}} {
			chains[c.name] = conn.AddChain(&nftables.Chain{Name: c.name, Table: table, Type: nftables.ChainTypeFilter,
				Hooknum: c.hook, Priority: nftables.ChainPriorityFilter})
		}
		for _, l := range devs {
			dev := l.Attrs().Name
			// iifname VX udp dport 67-68 counter drop
			conn.AddRule(&nftables.Rule{Table: table, Chain: chains["prerouting"], Exprs: dropDHCP(expr.MetaKeyIIFNAME, dev)})
			// oifname VX udp dport 67-68 counter drop
			for _, c := range []string{"forward", "output"} {
				conn.AddRule(&nftables.Rule{Table: table, Chain: chains[c], Exprs: dropDHCP(expr.MetaKeyOIFNAME, dev)})
			}
		}
		if err := addPeerFilter(conn, devs); err != nil {
			return err
		}
	}
	if err := conn.Flush(); err != nil {
		return fmt.Errorf("nftables: write table %s: %w", FilterTable, err)
	}
	return nil
}

// addPeerFilter writes the inet table: for each device's port, its peers'
// VXLAN packets are accepted and the rest dropped. The peers are read
// from the devices' flooding entries, which syncPeers has just written.
func addPeerFilter(conn *nftables.Conn, devs []netlink.Link) error {
	table := conn.AddTable(&nftables.Table{Family: nftables.TableFamilyINet, Name: FilterTable})
	input := conn.AddChain(&nftables.Chain{Name: "input", Table: table, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookInput, Priority: nftables.ChainPriorityFilter})
	ports := map[uint16][]netip.Addr{}
	var order []uint16
	for _, l := range devs {
		vx, ok := l.(*netlink.Vxlan)
		if !ok {
			continue
		}
		fdb, err := netlink.NeighList(l.Attrs().Index, unix.AF_BRIDGE)
		if err != nil {
			return fmt.Errorf("list %s's forwarding entries: %w", l.Attrs().Name, err)
		}
		port := uint16(vx.Port)
		if _, seen := ports[port]; !seen {
			order = append(order, port)
			ports[port] = nil
		}
		for _, n := range fdb {
			if dst, ok := netip.AddrFromSlice(n.IP); ok && n.HardwareAddr.String() == zeroMAC.String() {
				ports[port] = append(ports[port], dst.Unmap())
			}
		}
	}
	for _, port := range order {
		for _, peer := range ports[port] {
			// ip saddr PEER udp dport PORT accept
			conn.AddRule(&nftables.Rule{Table: table, Chain: input, Exprs: append(append(matchSource(peer), matchUDPPort(port)...),
				&expr.Verdict{Kind: expr.VerdictAccept})})
		}
		// udp dport PORT counter drop
		conn.AddRule(&nftables.Rule{Table: table, Chain: input, Exprs: append(matchUDPPort(port),
			&expr.Counter{}, &expr.Verdict{Kind: expr.VerdictDrop})})
	}
	return nil
}

// matchSource matches packets from addr, IPv4 or IPv6.
func matchSource(addr netip.Addr) []expr.Any {
	proto, offset := byte(unix.NFPROTO_IPV4), uint32(12)
	if addr.Is6() {
		proto, offset = unix.NFPROTO_IPV6, 8
	}
	raw := addr.AsSlice()
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{proto}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: offset, Len: uint32(len(raw))},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: raw},
	}
}

// matchUDPPort matches UDP to port.
func matchUDPPort(port uint16) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_UDP}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.BigEndian.PutUint16(port)},
	}
}

// dropDHCP drops IPv4 UDP to DHCP's ports whose interface (key: in or
// out) is dev.
func dropDHCP(key expr.MetaKey, dev string) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: key, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: ifname(dev)},
		&expr.Meta{Key: expr.MetaKeyPROTOCOL, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.BigEndian.PutUint16(unix.ETH_P_IP)},
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_UDP}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
		&expr.Range{Op: expr.CmpOpEq, Register: 1,
			FromData: binaryutil.BigEndian.PutUint16(dhcpServerPort), ToData: binaryutil.BigEndian.PutUint16(dhcpClientPort)},
		// Counted, so that an administrator (and a test) sees it work.
		&expr.Counter{},
		&expr.Verdict{Kind: expr.VerdictDrop},
	}
}

// ifname is an interface name as nftables compares it: NUL-padded to 16.
func ifname(name string) []byte {
	b := make([]byte, 16)
	copy(b, name)
	return b
}
