package evaluate

import (
	"net/netip"
	"strings"
	"testing"
)

func TestVethAddressesAvoidTheHostsRoutes(t *testing.T) {
	// Real `ip -4 -j route show table all` output: a default route, a
	// bridge's subnet, local and broadcast routes, and one over the
	// benchmarking range's first /30s.
	routes, err := routePrefixes([]byte(`[{"dst":"default","gateway":"10.0.2.2","dev":"eth0"},
		{"dst":"10.86.0.0/24","dev":"polyvisor0","protocol":"kernel","scope":"link","prefsrc":"10.86.0.1"},
		{"type":"local","dst":"10.86.0.1","table":"local","dev":"polyvisor0"},
		{"type":"broadcast","dst":"10.86.0.255","table":"local","dev":"polyvisor0"},
		{"dst":"198.18.0.0/29","dev":"vpn0"}]`))
	if err != nil {
		t.Fatal(err)
	}
	if len(routes) != 4 {
		t.Fatalf("routes %v, want four (the default route left out)", routes)
	}
	p, err := firstFree(vethRange, 30, routes)
	if err != nil || p != netip.MustParsePrefix("198.18.0.8/30") {
		t.Errorf("first free /30: %v, %v; want 198.18.0.8/30", p, err)
	}
	if p, err := firstFree(vethRange, 30, nil); err != nil || p != netip.MustParsePrefix("198.18.0.0/30") {
		t.Errorf("first free /30 of a host without routes: %v, %v", p, err)
	}
	_, err = firstFree(vethRange, 30, []netip.Prefix{netip.MustParsePrefix("198.0.0.0/8")})
	if err == nil || !strings.Contains(err.Error(), "198.18.0.0/15") {
		t.Errorf("a range covered whole gave %v", err)
	}
	if _, err := routePrefixes([]byte("Error: ipv4: FIB table does not exist.")); err == nil {
		t.Error("ip's error text was read as routes")
	}
}

func TestFirstLineTakesTheSinksAddressAndDiscardsTheRest(t *testing.T) {
	f := &firstLine{ready: make(chan string, 1)}
	for _, chunk := range []string{"198.18.", "0.2:4", "1233\nmore", "\nand more\n"} {
		if n, err := f.Write([]byte(chunk)); n != len(chunk) || err != nil {
			t.Fatalf("write %q: %d, %v", chunk, n, err)
		}
	}
	select {
	case line := <-f.ready:
		if line != "198.18.0.2:41233" {
			t.Errorf("first line %q", line)
		}
	default:
		t.Fatal("no line sent")
	}
	select {
	case line := <-f.ready:
		t.Errorf("a second line was sent: %q", line)
	default:
	}
}

func TestNetFigureReadsNetTCPOrItsError(t *testing.T) {
	ok := `{"probe":"polyvisor-probe","version":1,"results":[{"name":"net.tcp","unit":"MiB/s","higherIsBetter":true,"median":900,"runs":[880,900,950]}]}`
	f, err := netFigure([]byte(ok))
	if err != nil || f.Median != 900 || f.Unit != "MiB/s" || !f.HigherIsBetter || f.CI == nil || f.CI.N != 3 {
		t.Errorf("figure %+v, %v", f, err)
	}
	failed := `{"probe":"polyvisor-probe","version":1,"results":[{"name":"net.tcp","unit":"MiB/s","error":"dial tcp 198.18.0.2:1: connection refused"}]}`
	if _, err := netFigure([]byte(failed)); err == nil || !strings.Contains(err.Error(), "connection refused") {
		t.Errorf("a failed net.tcp gave %v", err)
	}
	if _, err := netFigure([]byte(`{"probe":"polyvisor-probe","version":1,"results":[]}`)); err == nil {
		t.Error("an output without net.tcp gave no error")
	}
}

func TestStaleNamespacesAreToldByTheirPid(t *testing.T) {
	for name, want := range map[string]int{
		"pv-bench-net-4242-a": 4242, "pv-bench-net-17-b": 17,
		"pv-bench-net-17-c": 0, "pv-bench-net--a": 0, "pv-bench-net-x-a": 0, "pv-e2e-17-a": 0, "pv-bench-net-0-a": 0,
	} {
		pid, ok := stalePID(name)
		if ok != (want > 0) || pid != want && ok {
			t.Errorf("stalePID(%q) = %d, %v; want %d", name, pid, ok, want)
		}
	}
}
