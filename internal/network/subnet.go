package network

import (
	"fmt"
	"net/netip"

	"github.com/polyvisor/polyvisor/pkg/api"
)

// Automatic subnets are /24s taken in order from autoPool, a private range
// that home and office networks rarely use (libvirt's 192.168.122.0/24 and
// Docker's 172.17.0.0/16 are common ones), skipping any that overlaps a
// route or address of the host or another network.
var autoPool = netip.MustParsePrefix("10.86.0.0/16")

const autoBits = 24

// Prefix lengths a subnet may have: a /30 has two addresses for guests; a
// /8 is as large as dnsmasq's lease table is worth.
const (
	minBits = 8
	maxBits = 30
)

// inUse is a prefix something already holds, and what holds it.
type inUse struct {
	Prefix netip.Prefix
	Owner  string // "the host's route on eth0", "network lan"
}

// chooseSubnet returns the first /24 of autoPool that overlaps nothing in use.
func chooseSubnet(used []inUse) (netip.Prefix, error) {
	for p := netip.PrefixFrom(autoPool.Addr(), autoBits); autoPool.Contains(p.Addr()); p = nextPrefix(p) {
		if _, clash := overlap(p, used); !clash {
			return p, nil
		}
	}
	return netip.Prefix{}, fmt.Errorf("%w: every /24 of %s overlaps a route, an address or a network: give one with --subnet", api.ErrConflict, autoPool)
}

// nextPrefix is the prefix of the same length right after p.
func nextPrefix(p netip.Prefix) netip.Prefix {
	a := p.Addr().As4()
	n := uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8 | uint32(a[3])
	n += 1 << (32 - p.Bits())
	return netip.PrefixFrom(netip.AddrFrom4([4]byte{byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)}), p.Bits())
}

// overlap returns what in used overlaps p.
func overlap(p netip.Prefix, used []inUse) (inUse, bool) {
	for _, u := range used {
		if u.Prefix.Overlaps(p) {
			return u, true
		}
	}
	return inUse{}, false
}

// parseSubnet checks a subnet the user gave: IPv4, its network address,
// of a useful size, and clashing with nothing in used.
func parseSubnet(text string, used []inUse) (netip.Prefix, error) {
	p, err := netip.ParsePrefix(text)
	if err != nil || !p.Addr().Is4() {
		return netip.Prefix{}, fmt.Errorf("%w: subnet %q: write an IPv4 network like 10.10.0.0/24", api.ErrInvalid, text)
	}
	if p.Bits() < minBits || p.Bits() > maxBits {
		return netip.Prefix{}, fmt.Errorf("%w: subnet %s: use a prefix length from /%d to /%d", api.ErrInvalid, p, minBits, maxBits)
	}
	if p.Masked() != p {
		return netip.Prefix{}, fmt.Errorf("%w: subnet %s: host bits are set; the network is %s", api.ErrInvalid, p, p.Masked())
	}
	if !p.Addr().IsPrivate() {
		return netip.Prefix{}, fmt.Errorf("%w: subnet %s: not a private range (10/8, 172.16/12, 192.168/16): guests would hide real hosts", api.ErrInvalid, p)
	}
	if u, clash := overlap(p, used); clash {
		return netip.Prefix{}, fmt.Errorf("%w: subnet %s overlaps %s (%s): choose another, or leave --subnet out to get a free one", api.ErrConflict, p, u.Prefix, u.Owner)
	}
	return p, nil
}

// gateway is the subnet's first address, which the bridge holds.
func gateway(p netip.Prefix) netip.Addr { return p.Addr().Next() }

// dhcpRange is the addresses dnsmasq leases: all but the network, the
// gateway and the broadcast address.
func dhcpRange(p netip.Prefix) (first, last netip.Addr) {
	first = gateway(p).Next()
	last = nextPrefix(p).Addr().Prev().Prev()
	return first, last
}
