package network

import (
	"fmt"
	"net/netip"
	"os"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// natTable is polyvisor's own nftables table: it is rebuilt whole from the
// networks at every change, and removed with the last network, so nothing
// of ours mixes with other tools' rules.
const natTable = "polyvisor"

// syncNAT makes the table say what the networks need: outbound NAT for
// the subnets of non-isolated ones, for isolated ones a drop of whatever
// would leave their bridge, and the published ports' DNAT. The change is
// one netlink batch: atomic.
func syncNAT(defs []*Definition, forwards []boundForward) error {
	conn, err := nftables.New()
	if err != nil {
		return fmt.Errorf("nftables: %w", err)
	}
	tables, err := conn.ListTablesOfFamily(nftables.TableFamilyIPv4)
	if err != nil {
		return fmt.Errorf("nftables: list tables: %w", err)
	}
	for _, t := range tables {
		if t.Name == natTable {
			conn.DelTable(t)
		}
	}
	if len(defs) > 0 {
		table := conn.AddTable(&nftables.Table{Family: nftables.TableFamilyIPv4, Name: natTable})
		post := conn.AddChain(&nftables.Chain{Name: "postrouting", Table: table, Type: nftables.ChainTypeNAT,
			Hooknum: nftables.ChainHookPostrouting, Priority: nftables.ChainPriorityNATSource})
		forward := conn.AddChain(&nftables.Chain{Name: "forward", Table: table, Type: nftables.ChainTypeFilter,
			Hooknum: nftables.ChainHookForward, Priority: nftables.ChainPriorityFilter})
		for _, d := range defs {
			if d.Isolated {
				// iifname BR oifname != BR drop
				conn.AddRule(&nftables.Rule{Table: table, Chain: forward, Exprs: []expr.Any{
					&expr.Meta{Key: expr.MetaKeyIIFNAME, Register: 1},
					&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: ifname(d.Bridge)},
					&expr.Meta{Key: expr.MetaKeyOIFNAME, Register: 1},
					&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: ifname(d.Bridge)},
					&expr.Verdict{Kind: expr.VerdictDrop},
				}})
				continue
			}
			// ip saddr SUBNET ip daddr != SUBNET masquerade
			conn.AddRule(&nftables.Rule{Table: table, Chain: post, Exprs: append(append(
				matchSubnet(12, d.Subnet, expr.CmpOpEq), matchSubnet(16, d.Subnet, expr.CmpOpNeq)...), &expr.Masq{})})
		}
		if len(forwards) > 0 {
			if err := addForwards(conn, table, post, forwards); err != nil {
				return err
			}
		}
	}
	if err := conn.Flush(); err != nil {
		return fmt.Errorf("nftables: write table %s: %w", natTable, err)
	}
	return nil
}

// addForwards writes the published ports: DNAT of connections to a local
// address of the host, from outside (prerouting) and from the host itself
// (output), and the masquerade that lets a connection to 127.0.0.1 leave
// through a bridge (with route_localnet on that bridge).
func addForwards(conn *nftables.Conn, table *nftables.Table, post *nftables.Chain, forwards []boundForward) error {
	var chains []*nftables.Chain
	for _, c := range []struct {
		name string
		hook *nftables.ChainHook
	}{{"prerouting", nftables.ChainHookPrerouting}, {"output", nftables.ChainHookOutput}} {
		chains = append(chains, conn.AddChain(&nftables.Chain{Name: c.name, Table: table, Type: nftables.ChainTypeNAT,
			Hooknum: c.hook, Priority: nftables.ChainPriorityNATDest}))
	}
	bridges := map[string]bool{}
	for _, f := range forwards {
		// fib daddr type local [ip daddr HOSTIP] meta l4proto P th dport HOSTPORT dnat to GUESTIP:GUESTPORT
		match := []expr.Any{
			&expr.Fib{Register: 1, FlagDADDR: true, ResultADDRTYPE: true},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.NativeEndian.PutUint32(unix.RTN_LOCAL)},
		}
		if f.HostIP.IsValid() {
			host := f.HostIP.As4()
			match = append(match,
				&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 16, Len: 4},
				&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: host[:]})
		}
		proto := byte(unix.IPPROTO_TCP)
		if f.Proto == "udp" {
			proto = unix.IPPROTO_UDP
		}
		guest := f.GuestIP.As4()
		match = append(match,
			&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{proto}},
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.BigEndian.PutUint16(f.HostPort)},
			&expr.Immediate{Register: 1, Data: guest[:]},
			&expr.Immediate{Register: 2, Data: binaryutil.BigEndian.PutUint16(f.GuestPort)},
			&expr.NAT{Type: expr.NATTypeDestNAT, Family: unix.NFPROTO_IPV4, RegAddrMin: 1, RegProtoMin: 2, Specified: true},
		)
		for _, c := range chains {
			conn.AddRule(&nftables.Rule{Table: table, Chain: c, Exprs: match})
		}
		bridges[f.Bridge] = true
	}
	// route_localnet lets the bridge carry 127.0.0.0/8: guests must not use
	// it to reach the host's loopback services, hence the guard chain.
	guard := conn.AddChain(&nftables.Chain{Name: "guard", Table: table, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookPrerouting, Priority: nftables.ChainPriorityRaw})
	loopback := netip.MustParsePrefix("127.0.0.0/8")
	for bridge := range bridges {
		if err := os.WriteFile("/proc/sys/net/ipv4/conf/"+bridge+"/route_localnet", []byte("1"), 0o644); err != nil {
			return fmt.Errorf("publish through %s: enable route_localnet: %w", bridge, err)
		}
		// ip saddr 127.0.0.0/8 oifname BR masquerade
		conn.AddRule(&nftables.Rule{Table: table, Chain: post, Exprs: append(matchSubnet(12, loopback, expr.CmpOpEq),
			&expr.Meta{Key: expr.MetaKeyOIFNAME, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: ifname(bridge)},
			&expr.Masq{})})
		// iifname BR ip daddr 127.0.0.0/8 drop
		conn.AddRule(&nftables.Rule{Table: table, Chain: guard, Exprs: append([]expr.Any{
			&expr.Meta{Key: expr.MetaKeyIIFNAME, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: ifname(bridge)}},
			append(matchSubnet(16, loopback, expr.CmpOpEq), &expr.Verdict{Kind: expr.VerdictDrop})...)})
	}
	return nil
}

// matchSubnet compares the IPv4 header's address at offset (12 source, 16
// destination) with subnet.
func matchSubnet(offset uint32, subnet netip.Prefix, op expr.CmpOp) []expr.Any {
	mask := make([]byte, 4)
	for i := range subnet.Bits() {
		mask[i/8] |= 0x80 >> (i % 8)
	}
	network := subnet.Addr().As4()
	return []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: offset, Len: 4},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: mask, Xor: make([]byte, 4)},
		&expr.Cmp{Op: op, Register: 1, Data: network[:]},
	}
}

// ifname is an interface name as nftables compares it: NUL-padded to 16.
func ifname(name string) []byte {
	b := make([]byte, 16)
	copy(b, name)
	return b
}
