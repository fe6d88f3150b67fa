package network

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/polyvisor/polyvisor/internal/overlay"
	"github.com/polyvisor/polyvisor/pkg/api"
)

func TestSlotRangesDoNotOverlap(t *testing.T) {
	p := netip.MustParsePrefix("10.77.0.0/24")
	first, last := slotRange(p, 1, 8)
	if first.String() != "10.77.0.9" || last.String() != "10.77.0.38" {
		t.Errorf("slot 1 of 8: %s-%s, want 10.77.0.9-10.77.0.38", first, last)
	}
	var prevLast netip.Addr
	for slot := 1; slot <= 8; slot++ {
		first, last := slotRange(p, slot, 8)
		if !p.Contains(first) || !p.Contains(last) || first.Compare(last) > 0 || (prevLast.IsValid() && first != prevLast.Next()) {
			t.Errorf("slot %d: %s-%s after %s", slot, first, last, prevLast)
		}
		prevLast = last
	}
	if prevLast.Compare(netip.MustParseAddr("10.77.0.254")) > 0 {
		t.Errorf("slot 8 ends at %s, past the last host address", prevLast)
	}
	if first, _ := slotRange(netip.MustParsePrefix("10.77.0.0/29"), 1, 8); first.IsValid() {
		t.Errorf("a /29 divided among 8 slots: %s, want none", first)
	}
	d := &Definition{Subnet: p, Cluster: &Cluster{Slot: 3, MaxSlots: 8}}
	if d.Gateway().String() != "10.77.0.3" {
		t.Errorf("slot 3's gateway is %s", d.Gateway())
	}
}

// member is one cluster member in the test: a network namespace where a
// Manager runs.
type member struct {
	ns string
	m  *Manager
}

// in runs fn with the calling thread in the member's namespace, where the
// manager's netlink and nftables calls land and the processes it starts
// (dnsmasq) are born.
func (mb *member) in(t *testing.T, fn func() error) error {
	t.Helper()
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		t.Fatal(err)
	}
	defer orig.Close()
	target, err := netns.GetFromName(mb.ns)
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

func ip(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
}

func netnsAdd(t *testing.T, name string) string {
	t.Helper()
	ns := fmt.Sprintf("pv-cl-%d-%s", os.Getpid(), name)
	ip(t, "netns", "add", ns)
	t.Cleanup(func() { exec.Command("ip", "netns", "delete", ns).Run() })
	ip(t, "-n", ns, "link", "set", "lo", "up")
	return ns
}

// plugGuest makes a guest namespace plugged into the member's bridge.
func plugGuest(t *testing.T, mb *member, bridge, name string) string {
	t.Helper()
	g := netnsAdd(t, name)
	ip(t, "-n", g, "link", "add", "eth0", "type", "veth", "peer", "name", "vg-"+name, "netns", mb.ns)
	ip(t, "-n", mb.ns, "link", "set", "vg-"+name, "master", bridge, "up")
	ip(t, "-n", g, "link", "set", "eth0", "up")
	return g
}

// dhcp runs udhcpc in the guest namespace, which configures eth0, and
// returns what the lease said: ip, router, dns, mtu.
func dhcp(t *testing.T, g, hostname string) map[string]string {
	t.Helper()
	script := filepath.Join(t.TempDir(), "udhcpc.sh")
	os.WriteFile(script, []byte(`#!/bin/sh
case "$1" in bound|renew)
	busybox ifconfig "$interface" "$ip" netmask "$subnet" up
	echo "lease ip=$ip router=$router dns=$dns mtu=$mtu"
esac
exit 0
`), 0o755)
	out, err := exec.Command("ip", "netns", "exec", g, "busybox", "udhcpc", "-i", "eth0", "-n", "-q", "-f", "-t", "5",
		"-O", "mtu", "-x", "hostname:"+hostname, "-s", script).CombinedOutput()
	if err != nil {
		t.Fatalf("udhcpc in %s: %v: %s", g, err, out)
	}
	lease := map[string]string{}
	for _, line := range strings.Split(string(out), "\n") {
		if rest, ok := strings.CutPrefix(line, "lease "); ok {
			for _, f := range strings.Fields(rest) {
				k, v, _ := strings.Cut(f, "=")
				lease[k] = v
			}
		}
	}
	if lease["ip"] == "" {
		t.Fatalf("udhcpc in %s: no lease: %s", g, out)
	}
	return lease
}

func inRange(addr string, first, last string) bool {
	a, err := netip.ParseAddr(addr)
	return err == nil && a.Compare(netip.MustParseAddr(first)) >= 0 && a.Compare(netip.MustParseAddr(last)) <= 0
}

// TestClusterNetworkSpansTwoMembers: two managers, each in a namespace of
// its own joined by an underlay veth, put one network in the cluster as
// slots 1 and 2 (the second moved from its own subnet to the cluster's).
// A guest on each gets its address from its own member's slice, with its
// own member as router and DNS server; member 1 answers the name of
// member 2's guest; the guests ping each other across the overlay; a
// restarted member 2 brings its slot and overlay back; ClearCluster
// undoes it.
func TestClusterNetworkSpansTwoMembers(t *testing.T) {
	ctx := context.Background()
	const name = "pvcl0"
	subnet := netip.MustParsePrefix("10.77.0.0/24")
	under := []netip.Addr{netip.MustParseAddr("10.251.0.1"), netip.MustParseAddr("10.251.0.2")}
	members := []*member{{ns: netnsAdd(t, "m1")}, {ns: netnsAdd(t, "m2")}}
	ip(t, "-n", members[0].ns, "link", "add", "u0", "type", "veth", "peer", "name", "u0", "netns", members[1].ns)
	for i, mb := range members {
		ip(t, "-n", mb.ns, "addr", "add", under[i].String()+"/24", "dev", "u0")
		ip(t, "-n", mb.ns, "link", "set", "u0", "up")
		mb.m = newManager(t)
		// As the daemon's state dir is: dnsmasq, no longer root when it
		// reads its hosts files again, must reach them.
		for _, dir := range []string{mb.m.layout.StateDir, filepath.Dir(mb.m.layout.StateDir)} {
			os.Chmod(dir, 0o711)
		}
		t.Cleanup(func() {
			mb.in(t, func() error { return mb.m.Delete(ctx, name, nil) })
		})
	}
	slot := func(i int, hosts map[string]netip.Addr) ClusterSlot {
		return ClusterSlot{Subnet: subnet, Slot: i + 1, MaxSlots: 8, Hosts: hosts,
			Overlay: overlay.Config{VNI: 77, Local: under[i], Peers: []netip.Addr{under[1-i]}}}
	}
	a, b := members[0], members[1]
	if err := a.in(t, func() error {
		if _, err := a.m.Create(ctx, api.NetworkCreate{Name: name, Subnet: subnet.String()}); err != nil {
			return err
		}
		return a.m.SetCluster(ctx, name, slot(0, nil))
	}); err != nil {
		t.Fatal(err)
	}
	// Member 2's network is on a subnet of its own: a guest on it keeps
	// it from moving; without one it moves.
	if err := b.in(t, func() error {
		if _, err := b.m.Create(ctx, api.NetworkCreate{Name: name}); err != nil {
			return err
		}
		if _, err := b.m.Reserve(name, "web", NICOf("web", name)); err != nil {
			return err
		}
		if err := b.m.SetCluster(ctx, name, slot(1, nil)); !errors.Is(err, api.ErrConflict) || !strings.Contains(err.Error(), "web") {
			return fmt.Errorf("SetCluster with a guest on another subnet: %v, want a conflict naming the guest", err)
		}
		if err := b.m.Unreserve(name, NICOf("web", name).MAC.String()); err != nil {
			return err
		}
		return b.m.SetCluster(ctx, name, slot(1, nil))
	}); err != nil {
		t.Fatal(err)
	}
	for i, mb := range members {
		n, err := mb.m.Get(name)
		if want := fmt.Sprintf("10.77.0.%d", i+1); err != nil || n.Subnet != subnet.String() || n.Gateway != want || n.DNSMasqPID <= 0 {
			t.Fatalf("member %d: %+v, %v; want subnet %s, gateway %s", i+1, n, err, subnet, want)
		}
	}
	ga, gb := plugGuest(t, a, name, "ga"), plugGuest(t, b, name, "gb")
	la, lb := dhcp(t, ga, "guest-a"), dhcp(t, gb, "guest-b")
	if !inRange(la["ip"], "10.77.0.9", "10.77.0.38") || la["router"] != "10.77.0.1" || la["dns"] != "10.77.0.1" || la["mtu"] != "1450" {
		t.Errorf("guest on member 1 got %v; want an address of 10.77.0.9-38 from 10.77.0.1, mtu 1450", la)
	}
	if !inRange(lb["ip"], "10.77.0.39", "10.77.0.68") || lb["router"] != "10.77.0.2" || lb["dns"] != "10.77.0.2" {
		t.Errorf("guest on member 2 got %v; want an address of 10.77.0.39-68 from 10.77.0.2", lb)
	}
	// Their requests reached the overlay and went no further.
	for _, mb := range members {
		out, err := exec.Command("ip", "netns", "exec", mb.ns, "nft", "list", "chain", "bridge", overlay.FilterTable, "forward").CombinedOutput()
		if err != nil || !regexp.MustCompile(`oifname "pvx77" .*udp dport 67-68 counter packets [1-9]`).Match(out) {
			t.Errorf("member %s: no DHCP packet dropped on its way into the overlay: %v:\n%s", mb.ns, err, out)
		}
	}
	leases := b.m.Leases(name)
	if len(leases) != 1 || leases[0].Hostname != "guest-b" || leases[0].IPv4 != lb["ip"] {
		t.Fatalf("member 2's leases: %+v", leases)
	}
	// Member 1 learns member 2's guests.
	addrB := netip.MustParseAddr(leases[0].IPv4)
	if err := a.in(t, func() error {
		return a.m.SetCluster(ctx, name, slot(0, map[string]netip.Addr{"guest-b": addrB}))
	}); err != nil {
		t.Fatal(err)
	}
	// dnsmasq reads the hosts again when it gets to the SIGHUP.
	resolves := func(g, server, host string) bool {
		for range 20 {
			out, err := exec.Command("ip", "netns", "exec", g, "busybox", "nslookup", host, server).CombinedOutput()
			if err == nil && strings.Contains(string(out), addrB.String()) {
				return true
			}
			time.Sleep(100 * time.Millisecond)
		}
		return false
	}
	for _, host := range []string{"guest-b", "guest-b." + Domain} {
		if !resolves(ga, "10.77.0.1", host) {
			t.Errorf("member 1's dnsmasq does not answer %s with %s", host, addrB)
		}
	}
	pings := func() bool {
		return exec.Command("ip", "netns", "exec", ga, "busybox", "ping", "-c", "2", "-W", "2", addrB.String()).Run() == nil
	}
	if !pings() {
		t.Fatalf("guest on member 1 cannot ping member 2's guest at %s", addrB)
	}
	// Member 2's daemon restarts after its overlay device went: its slot
	// and overlay come back, and its dnsmasq is adopted.
	n, _ := b.m.Get(name)
	if err := b.in(t, func() error {
		b.m.Close()
		if err := netlink.LinkDel(&netlink.Vxlan{LinkAttrs: netlink.LinkAttrs{Name: overlay.Device(77)}}); err != nil {
			return err
		}
		b.m = NewManager(b.m.layout, b.m.log)
		b.m.Restore(ctx)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.m.Close)
	if again, err := b.m.Get(name); err != nil || again.Gateway != "10.77.0.2" || again.DNSMasqPID != n.DNSMasqPID {
		t.Errorf("member 2 after a restart: %+v, %v; want gateway 10.77.0.2 and dnsmasq %d adopted", again, err, n.DNSMasqPID)
	}
	if !pings() {
		t.Error("guest on member 1 cannot ping member 2's guest after member 2 restarted")
	}
	// Member 2 leaves the cluster: the usual gateway, no overlay.
	if err := b.in(t, func() error {
		if err := b.m.ClearCluster(ctx, name); err != nil {
			return err
		}
		if _, err := netlink.LinkByName(overlay.Device(77)); err == nil {
			return errors.New("the overlay device outlived ClearCluster")
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if n, err := b.m.Get(name); err != nil || n.Gateway != "10.77.0.1" || n.Subnet != subnet.String() {
		t.Errorf("member 2 out of the cluster: %+v, %v", n, err)
	}
	if pings() {
		t.Error("guest on member 1 still pings member 2's guest after member 2 left the cluster")
	}
}

// TestBadClusterSlotsAreRefused: each mistake is named, and the network
// is left as it was.
func TestBadClusterSlotsAreRefused(t *testing.T) {
	m := newManager(t)
	ctx := context.Background()
	if _, err := m.Create(ctx, api.NetworkCreate{Name: "pvbadcl0", Subnet: "10.78.0.0/24"}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Delete(ctx, "pvbadcl0", nil) })
	subnet := netip.MustParsePrefix("10.78.0.0/24")
	ov := overlay.Config{VNI: 5, Local: netip.MustParseAddr("127.0.0.1")}
	for _, tc := range []struct {
		c    ClusterSlot
		want string
	}{
		{ClusterSlot{Subnet: subnet, Slot: 0, MaxSlots: 8, Overlay: ov}, "cluster slot 0"},
		{ClusterSlot{Subnet: subnet, Slot: 9, MaxSlots: 8, Overlay: ov}, "cluster slot 9"},
		{ClusterSlot{Subnet: subnet, Slot: 1, MaxSlots: 0, Overlay: ov}, "maxSlots 0"},
		{ClusterSlot{Subnet: netip.MustParsePrefix("10.78.0.0/29"), Slot: 1, MaxSlots: 8, Overlay: ov}, "too small"},
		{ClusterSlot{Subnet: netip.MustParsePrefix("10.78.0.1/24"), Slot: 1, MaxSlots: 8, Overlay: ov}, "cluster subnet"},
		{ClusterSlot{Subnet: subnet, Slot: 1, MaxSlots: 8}, "VNI"},
		{ClusterSlot{Subnet: subnet, Slot: 1, MaxSlots: 8, Overlay: overlay.Config{VNI: 5, Local: netip.MustParseAddr("10.99.99.99")}}, "no interface of this host has that address"},
		{ClusterSlot{Subnet: subnet, Slot: 1, MaxSlots: 8, Overlay: ov, Hosts: map[string]netip.Addr{"Bad_Name": ov.Local}}, "cluster host"},
	} {
		if err := m.SetCluster(ctx, "pvbadcl0", tc.c); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("SetCluster(%+v) = %v, want an error saying %q", tc.c, err, tc.want)
		}
	}
	if n, err := m.Get("pvbadcl0"); err != nil || n.Gateway != "10.78.0.1" {
		t.Errorf("after refused slots: %+v, %v", n, err)
	}
	if err := m.SetCluster(ctx, "pvnone0", ClusterSlot{Subnet: subnet, Slot: 1, MaxSlots: 8, Overlay: ov}); !errors.Is(err, api.ErrNotFound) {
		t.Errorf("SetCluster on a network that does not exist: %v", err)
	}
}
