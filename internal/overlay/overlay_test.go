package overlay

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"regexp"
	"runtime"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/polyvisor/polyvisor/internal/testgate"
)

// ipCmd runs ip(8) and fails the test on error.
func ipCmd(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
}

// addNetns makes a network namespace, deleted when the test ends.
func addNetns(t *testing.T, name string) string {
	t.Helper()
	ns := fmt.Sprintf("pvo-%d-%s", os.Getpid(), name)
	ipCmd(t, "netns", "add", ns)
	t.Cleanup(func() { exec.Command("ip", "netns", "delete", ns).Run() })
	ipCmd(t, "-n", ns, "link", "set", "lo", "up")
	return ns
}

// inNetns runs fn with the calling thread in the named namespace, where
// the netlink and nftables calls it makes land.
func inNetns(t *testing.T, name string, fn func() error) error {
	t.Helper()
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		t.Fatal(err)
	}
	defer orig.Close()
	target, err := netns.GetFromName(name)
	if err != nil {
		runtime.UnlockOSThread()
		t.Fatal(err)
	}
	defer target.Close()
	if err := netns.Set(target); err != nil {
		runtime.UnlockOSThread()
		t.Fatal(err)
	}
	defer func() {
		if err := netns.Set(orig); err != nil {
			// The thread stays locked and dies with the goroutine.
			panic(fmt.Sprintf("back to the test's namespace: %v", err))
		}
		runtime.UnlockOSThread()
	}()
	return fn()
}

func pings(ns, addr string) bool {
	return exec.Command("ip", "netns", "exec", ns, "busybox", "ping", "-c", "2", "-W", "2", addr).Run() == nil
}

// TestOverlayJoinsBridgesOfThreeHosts: three "hosts" (namespaces) on one
// underlay bridge, each with a bridge, a guest on it and an overlay to the
// two others: the guests reach each other; a peer dropped from one host's
// list is unreachable from it, and reachable again once it is back;
// Remove leaves neither device nor filter.
func TestOverlayJoinsBridgesOfThreeHosts(t *testing.T) {
	testgate.RequireRoot(t, "network namespaces, bridges and VXLAN devices need root")
	ctx := context.Background()
	under := addNetns(t, "under")
	ipCmd(t, "-n", under, "link", "add", "ubr", "type", "bridge")
	ipCmd(t, "-n", under, "link", "set", "ubr", "up")
	hosts := make([]string, 3)
	locals := make([]netip.Addr, 3)
	guests := make([]string, 3)
	for i := range hosts {
		h := addNetns(t, fmt.Sprintf("h%d", i+1))
		hosts[i] = h
		locals[i] = netip.MustParseAddr(fmt.Sprintf("10.250.0.%d", i+1))
		port := fmt.Sprintf("uh%d", i+1)
		ipCmd(t, "-n", h, "link", "add", "u0", "type", "veth", "peer", "name", port, "netns", under)
		ipCmd(t, "-n", under, "link", "set", port, "master", "ubr", "up")
		ipCmd(t, "-n", h, "addr", "add", locals[i].String()+"/24", "dev", "u0")
		ipCmd(t, "-n", h, "link", "set", "u0", "up")
		ipCmd(t, "-n", h, "link", "add", "br0", "type", "bridge")
		ipCmd(t, "-n", h, "link", "set", "br0", "up")
		g := addNetns(t, fmt.Sprintf("g%d", i+1))
		guests[i] = g
		ipCmd(t, "-n", h, "link", "add", "vg", "type", "veth", "peer", "name", "eth0", "netns", g)
		ipCmd(t, "-n", h, "link", "set", "vg", "master", "br0", "up")
		ipCmd(t, "-n", g, "addr", "add", fmt.Sprintf("192.168.77.%d/24", i+1), "dev", "eth0")
		ipCmd(t, "-n", g, "link", "set", "eth0", "up")
	}
	others := func(i int, skip ...int) []netip.Addr {
		var peers []netip.Addr
		for j, a := range locals {
			if j != i && !(len(skip) > 0 && j == skip[0]) {
				peers = append(peers, a)
			}
		}
		return peers
	}
	for i, h := range hosts {
		if err := inNetns(t, h, func() error {
			return Ensure(ctx, Config{Bridge: "br0", VNI: 42, Local: locals[i], Peers: others(i)})
		}); err != nil {
			t.Fatalf("host %d: %v", i+1, err)
		}
	}
	// A second Ensure with the same settings changes nothing.
	if err := inNetns(t, hosts[0], func() error {
		return Ensure(ctx, Config{Bridge: "br0", VNI: 42, Local: locals[0], Peers: others(0)})
	}); err != nil {
		t.Fatal(err)
	}
	if err := inNetns(t, hosts[0], func() error {
		l, err := netlink.LinkByName(Device(42))
		if err != nil {
			return err
		}
		if l.Attrs().MTU != 1450 {
			return fmt.Errorf("%s's MTU is %d, want 1450 (underlay 1500 less 50)", Device(42), l.Attrs().MTU)
		}
		return nil
	}); err != nil {
		t.Error(err)
	}
	out, err := exec.Command("ip", "netns", "exec", hosts[0], "nft", "list", "table", "bridge", FilterTable).CombinedOutput()
	if err != nil || !strings.Contains(string(out), `iifname "pvx42"`) || !strings.Contains(string(out), "udp dport 67-68 counter packets 0 bytes 0 drop") {
		t.Errorf("DHCP filter: %v:\n%s", err, out)
	}
	for _, dst := range []string{"192.168.77.2", "192.168.77.3"} {
		if !pings(guests[0], dst) {
			t.Fatalf("guest on host 1 cannot ping %s across the overlay", dst)
		}
	}
	// Host 3 leaves host 1's peers: its guest is out of reach, host 2's is not.
	if err := inNetns(t, hosts[0], func() error {
		return Ensure(ctx, Config{Bridge: "br0", VNI: 42, Local: locals[0], Peers: others(0, 2)})
	}); err != nil {
		t.Fatal(err)
	}
	if pings(guests[0], "192.168.77.3") {
		t.Error("guest on host 1 still pings host 3's guest after host 3 left its peers")
	}
	if !pings(guests[0], "192.168.77.2") {
		t.Error("guest on host 1 lost host 2's guest when host 3 left")
	}
	// Host 3 still floods to host 1, which drops what comes from it.
	if pings(guests[2], "192.168.77.1") {
		t.Error("guest on host 3 pings host 1's guest after host 3 left host 1's peers")
	}
	out, err = exec.Command("ip", "netns", "exec", hosts[0], "nft", "list", "chain", "inet", FilterTable, "input").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "ip saddr 10.250.0.2 udp dport 4789 accept") ||
		strings.Contains(string(out), "10.250.0.3") || !regexp.MustCompile(`udp dport 4789 counter packets [1-9]`).Match(out) {
		t.Errorf("peer filter after host 3 left: %v:\n%s", err, out)
	}
	// And comes back.
	if err := inNetns(t, hosts[0], func() error {
		return Ensure(ctx, Config{Bridge: "br0", VNI: 42, Local: locals[0], Peers: others(0)})
	}); err != nil {
		t.Fatal(err)
	}
	if !pings(guests[0], "192.168.77.3") {
		t.Error("guest on host 1 cannot ping host 3's guest after host 3 came back")
	}
	if err := inNetns(t, hosts[0], func() error {
		if err := Remove("br0"); err != nil {
			return err
		}
		if err := Remove("br0"); err != nil {
			return fmt.Errorf("remove again: %w", err)
		}
		if _, err := netlink.LinkByName(Device(42)); err == nil {
			return fmt.Errorf("%s left after Remove", Device(42))
		}
		return nil
	}); err != nil {
		t.Error(err)
	}
	for _, family := range []string{"bridge", "inet"} {
		if out, err := exec.Command("ip", "netns", "exec", hosts[0], "nft", "list", "table", family, FilterTable).CombinedOutput(); err == nil {
			t.Errorf("the %s filter table outlived the last overlay:\n%s", family, out)
		}
	}
	if pings(guests[0], "192.168.77.2") {
		t.Error("guest on host 1 still reaches host 2 after Remove")
	}
}

// TestBadConfigsAreRefused: each mistake is named.
func TestBadConfigsAreRefused(t *testing.T) {
	local := netip.MustParseAddr("10.0.0.1")
	for _, tc := range []struct {
		c    Config
		want string
	}{
		{Config{VNI: 1, Local: local}, "bridge"},
		{Config{Bridge: "br0", Local: local}, "vni 0"},
		{Config{Bridge: "br0", VNI: 1 << 24, Local: local}, "vni"},
		{Config{Bridge: "br0", VNI: 1}, "local"},
		{Config{Bridge: "br0", VNI: 1, Local: local, Peers: []netip.Addr{local}}, "own address"},
		{Config{Bridge: "br0", VNI: 1, Local: local, Peers: []netip.Addr{netip.MustParseAddr("fd00::1")}}, "same family"},
		{Config{Bridge: "br0", VNI: 1, Local: local, Port: 70000}, "port"},
	} {
		if err := Ensure(context.Background(), tc.c); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Ensure(%+v) = %v, want an error saying %q", tc.c, err, tc.want)
		}
	}
}
