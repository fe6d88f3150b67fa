package network

import (
	"fmt"
	"net/netip"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
)

// natTable is polyvisor's own nftables table: it is rebuilt whole from the
// networks at every change, and removed with the last network, so nothing
// of ours mixes with other tools' rules.
const natTable = "polyvisor"

// syncNAT makes the table say what the networks need: outbound NAT for
// the subnets of non-isolated ones, and for isolated ones a drop of
// whatever would leave their bridge. The change is one netlink batch:
// atomic.
func syncNAT(defs []*Definition) error {
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
	}
	if err := conn.Flush(); err != nil {
		return fmt.Errorf("nftables: write table %s: %w", natTable, err)
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
