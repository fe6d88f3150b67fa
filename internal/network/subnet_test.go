package network

import (
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/polyvisor/polyvisor/pkg/api"
)

func used(prefixes ...string) []inUse {
	var u []inUse
	for _, p := range prefixes {
		u = append(u, inUse{Prefix: netip.MustParsePrefix(p), Owner: "test " + p})
	}
	return u
}

func TestChooseSubnetSkipsWhatIsInUse(t *testing.T) {
	for _, tc := range []struct {
		used []inUse
		want string
	}{
		{nil, "10.86.0.0/24"},
		{used("10.86.0.0/24", "10.86.1.128/25"), "10.86.2.0/24"},
		{used("10.0.0.0/8"), ""},
		{used("192.168.122.0/24", "10.86.0.5/32"), "10.86.1.0/24"},
	} {
		got, err := chooseSubnet(tc.used)
		if tc.want == "" {
			if !errors.Is(err, api.ErrConflict) || !strings.Contains(err.Error(), "--subnet") {
				t.Errorf("used %v: got %v, %v; want a conflict naming --subnet", tc.used, got, err)
			}
			continue
		}
		if err != nil || got.String() != tc.want {
			t.Errorf("used %v: got %v, %v; want %s", tc.used, got, err, tc.want)
		}
	}
}

func TestParseSubnetNamesTheProblem(t *testing.T) {
	inUse := used("10.1.0.0/16")
	for text, want := range map[string]string{
		"lots":           "IPv4 network",
		"fd00::/64":      "IPv4 network",
		"10.2.0.0/31":    "prefix length",
		"10.2.0.0/4":     "prefix length",
		"10.2.0.9/24":    "the network is 10.2.0.0/24",
		"8.8.8.0/24":     "not a private range",
		"10.1.5.0/24":    "overlaps 10.1.0.0/16 (test 10.1.0.0/16)",
		"10.0.0.0/8":     "overlaps",
		"172.20.30.0/24": "",
	} {
		p, err := parseSubnet(text, inUse)
		if want == "" {
			if err != nil || p.String() != text {
				t.Errorf("%s: %v, %v", text, p, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "subnet") {
			t.Errorf("%s: err = %v, want one saying %q", text, err, want)
		}
	}
}

func TestAddressesOfASubnet(t *testing.T) {
	p := netip.MustParsePrefix("10.86.3.0/24")
	first, last := dhcpRange(p)
	if gateway(p).String() != "10.86.3.1" || first.String() != "10.86.3.2" || last.String() != "10.86.3.254" {
		t.Errorf("gateway %s, range %s-%s", gateway(p), first, last)
	}
	small := netip.MustParsePrefix("10.0.0.8/30")
	first, last = dhcpRange(small)
	if gateway(small).String() != "10.0.0.9" || first != last || first.String() != "10.0.0.10" {
		t.Errorf("/30: gateway %s, range %s-%s", gateway(small), first, last)
	}
}
