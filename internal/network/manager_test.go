package network

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/polyvisor/polyvisor/internal/layout"
	"github.com/polyvisor/polyvisor/internal/procutil"
	"github.com/polyvisor/polyvisor/pkg/api"
)

func newManager(t *testing.T) *Manager {
	t.Helper()
	l := layout.New(t.TempDir())
	m := NewManager(l, slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
	t.Cleanup(func() {
		m.Close()
		os.RemoveAll(l.RunDir())
	})
	return m
}

// client is a network namespace plugged into a bridge by a veth pair, as a
// guest would be, where busybox's udhcpc and nslookup run.
type client struct {
	ns, mac string
}

func plugClient(t *testing.T, bridge, name string) client {
	t.Helper()
	ns := fmt.Sprintf("pv-client-%d-%s", os.Getpid(), name)
	host := "veth-" + name
	for _, args := range [][]string{
		{"netns", "add", ns},
		{"link", "add", host, "type", "veth", "peer", "name", "eth0", "netns", ns},
		{"link", "set", host, "master", bridge, "up"},
		{"-n", ns, "link", "set", "lo", "up"},
		{"-n", ns, "link", "set", "eth0", "up"},
	} {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %v: %v: %s", args, err, out)
		}
	}
	t.Cleanup(func() {
		exec.Command("ip", "link", "delete", host).Run()
		exec.Command("ip", "netns", "delete", ns).Run()
	})
	out, err := exec.Command("ip", "-n", ns, "-br", "link", "show", "eth0").Output()
	if err != nil {
		t.Fatal(err)
	}
	return client{ns: ns, mac: strings.Fields(string(out))[2]}
}

func (c client) run(t *testing.T, args ...string) (string, error) {
	t.Helper()
	out, err := exec.Command("ip", append([]string{"netns", "exec", c.ns, "busybox"}, args...)...).CombinedOutput()
	return string(out), err
}

func TestNetworkLeasesAndNamesAndSurvives(t *testing.T) {
	m := newManager(t)
	ctx := context.Background()
	n, err := m.Create(ctx, api.NetworkCreate{Name: "pvtest0"})
	if err != nil {
		t.Fatal(err)
	}
	if n.Subnet != "10.86.0.0/24" || n.Gateway != "10.86.0.1" || n.DNSMasqPID <= 0 {
		t.Fatalf("created %+v", n)
	}
	link, err := netlink.LinkByName("pvtest0")
	if err != nil || link.Type() != "bridge" || link.Attrs().OperState == netlink.OperDown {
		t.Fatalf("bridge: %v, %v", link, err)
	}
	// DHCP: a client gets an address in the subnet, and its name resolves.
	c := plugClient(t, "pvtest0", "a")
	if out, err := c.run(t, "udhcpc", "-i", "eth0", "-n", "-q", "-f", "-t", "5", "-x", "hostname:guest-a", "-s", "/bin/true"); err != nil {
		t.Fatalf("udhcpc: %v: %s", err, out)
	}
	n, _ = m.Get("pvtest0")
	if len(n.Leases) != 1 || n.Leases[0].MAC != c.mac || !strings.HasPrefix(n.Leases[0].IPv4, "10.86.0.") || n.Leases[0].Hostname != "guest-a" {
		t.Fatalf("leases %+v, want one for %s", n.Leases, c.mac)
	}
	out, err := exec.Command("busybox", "nslookup", "guest-a."+Domain, n.Gateway).CombinedOutput()
	if err != nil || !strings.Contains(string(out), n.Leases[0].IPv4) {
		t.Errorf("nslookup guest-a.%s: %v: %s", Domain, err, out)
	}
	// A deleted guest's lease is released, and its name with it.
	if err := m.Release(ctx, "pvtest0", c.mac); err != nil {
		t.Fatal(err)
	}
	if n, _ := m.Get("pvtest0"); len(n.Leases) != 0 {
		t.Errorf("leases after release: %+v", n.Leases)
	}
	if out, err := exec.Command("busybox", "nslookup", "guest-a."+Domain, n.Gateway).CombinedOutput(); err == nil {
		t.Errorf("guest-a.%s still resolves after its lease was released: %s", Domain, out)
	}
	if out, err := c.run(t, "udhcpc", "-i", "eth0", "-n", "-q", "-f", "-t", "5", "-x", "hostname:guest-a", "-s", "/bin/true"); err != nil {
		t.Fatalf("udhcpc again: %v: %s", err, out)
	}
	n, _ = m.Get("pvtest0")
	// dnsmasq killed from outside comes back.
	dead, _ := procutil.Identify(n.DNSMasqPID)
	dead.Signal(9)
	deadline := time.Now().Add(10 * time.Second)
	for {
		n, _ = m.Get("pvtest0")
		if n.DNSMasqPID > 0 && n.DNSMasqPID != dead.PID {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("a killed dnsmasq was not started again")
		}
		time.Sleep(100 * time.Millisecond)
	}
	// A second network gets the next free subnet; a daemon restart adopts both.
	if iso, err := m.Create(ctx, api.NetworkCreate{Name: "pvtest1", Isolated: true}); err != nil || iso.Subnet != "10.86.1.0/24" {
		t.Fatalf("second network: %+v, %v", iso, err)
	}
	table := nftTable(t)
	for _, want := range []string{"ip saddr 10.86.0.0/24 ip daddr != 10.86.0.0/24 masquerade", `iifname "pvtest1" oifname != "pvtest1" drop`} {
		if !strings.Contains(table, want) {
			t.Errorf("nftables table lacks %q:\n%s", want, table)
		}
	}
	pid := n.DNSMasqPID
	m.Close()
	again := NewManager(m.layout, m.log)
	t.Cleanup(again.Close)
	again.Restore(ctx)
	if n, err := again.Get("pvtest0"); err != nil || n.DNSMasqPID != pid || len(n.Leases) != 1 {
		t.Errorf("after a restart: %+v, %v; want dnsmasq %d adopted and the lease kept", n, err, pid)
	}
	if err := again.Delete(ctx, "pvtest0", []string{"web"}); !errors.Is(err, api.ErrConflict) {
		t.Errorf("deleting a network in use: %v", err)
	}
	for _, name := range []string{"pvtest0", "pvtest1"} {
		if err := again.Delete(ctx, name, nil); err != nil {
			t.Fatal(err)
		}
		if _, err := netlink.LinkByName(name); err == nil {
			t.Errorf("bridge %s left after delete", name)
		}
	}
	if procutil.Identity.Alive(mustIdentify(pid)) {
		t.Errorf("dnsmasq %d left after delete", pid)
	}
	if names, _ := again.Names(); len(names) != 0 {
		t.Errorf("networks left on disk: %v", names)
	}
	if table := nftTable(t); table != "" {
		t.Errorf("the nftables table outlived the last network:\n%s", table)
	}
}

// nftTable lists polyvisor's nftables table, "" when there is none.
func nftTable(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("nft", "list", "table", "ip", natTable).CombinedOutput()
	if err != nil {
		if strings.Contains(string(out), "No such file") {
			return ""
		}
		t.Fatalf("nft list table: %v: %s", err, out)
	}
	return string(out)
}

func mustIdentify(pid int) procutil.Identity {
	id, _ := procutil.Identify(pid)
	return id
}

func TestBadNetworksAreRefusedAndLeaveNothing(t *testing.T) {
	m := newManager(t)
	ctx := context.Background()
	if _, err := m.Create(ctx, api.NetworkCreate{Name: "pvbad0", Subnet: "10.70.0.0/24"}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Delete(ctx, "pvbad0", nil) })
	for _, tc := range []struct {
		req  api.NetworkCreate
		want string
	}{
		{api.NetworkCreate{Name: "pvbad1", Subnet: "10.70.0.128/25"}, "overlaps 10.70.0.0/24 (network pvbad0)"},
		{api.NetworkCreate{Name: "pvbad1", Subnet: "10.70.0.1/24"}, "host bits are set"},
		{api.NetworkCreate{Name: "pvbad0"}, "exists"},
		{api.NetworkCreate{Name: "lo"}, "interface of that name"},
		{api.NetworkCreate{Name: "a-very-long-network-name"}, "network name"},
	} {
		if _, err := m.Create(ctx, tc.req); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("create %+v: err = %v, want one saying %q", tc.req, err, tc.want)
		}
	}
	if names, _ := m.Names(); len(names) != 1 {
		t.Errorf("refused networks left definitions: %v", names)
	}
	if _, err := netlink.LinkByName("pvbad1"); err == nil {
		t.Error("a refused network left its bridge")
	}
}

// TestInterruptedCreateAndDeleteAreFinishedAtRestore: a daemon killed
// while it created a network (its client saw the create fail) or deleted
// one used to leave the network for the next daemon to bring up again.
// The intent each records first makes the next one remove it: bridge,
// dnsmasq, NAT rules, definition.
func TestInterruptedCreateAndDeleteAreFinishedAtRestore(t *testing.T) {
	m := newManager(t)
	ctx := context.Background()
	var pids []int
	for i, intent := range []string{intentCreate, intentDelete} {
		name := fmt.Sprintf("pvint%d", i)
		n, err := m.Create(ctx, api.NetworkCreate{Name: name})
		if err != nil {
			t.Fatal(err)
		}
		pids = append(pids, n.DNSMasqPID)
		def, err := m.store.load(name)
		if err != nil {
			t.Fatal(err)
		}
		def.Intent = intent // as the create or delete had recorded when the daemon died
		if err := m.store.save(def); err != nil {
			t.Fatal(err)
		}
	}
	m.Close()
	again := NewManager(m.layout, m.log)
	t.Cleanup(again.Close)
	again.Restore(ctx)
	if names, _ := again.Names(); len(names) != 0 {
		t.Errorf("networks left on disk: %v", names)
	}
	for i, pid := range pids {
		if _, err := netlink.LinkByName(fmt.Sprintf("pvint%d", i)); err == nil {
			t.Errorf("bridge pvint%d left", i)
		}
		if mustIdentify(pid).Alive() {
			t.Errorf("dnsmasq %d left", pid)
		}
	}
	if table := nftTable(t); table != "" {
		t.Errorf("the nftables table outlived the networks:\n%s", table)
	}
}

// TestSweepReservationsDropsWhatNoGuestHolds: a reservation of a guest
// that was never made, was deleted or moved goes; the others stay.
func TestSweepReservationsDropsWhatNoGuestHolds(t *testing.T) {
	m := newManager(t)
	ctx := context.Background()
	if _, err := m.Create(ctx, api.NetworkCreate{Name: "pvres0"}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Delete(ctx, "pvres0", nil) })
	for _, g := range []string{"kept", "moved"} {
		if _, err := m.Reserve("pvres0", g, NICOf(g, "pvres0")); err != nil {
			t.Fatal(err)
		}
	}
	dropped, err := m.SweepReservations(func(network, guest, mac string) bool {
		return guest == "kept" && mac == NICOf("kept", network).MAC.String()
	})
	if err != nil || len(dropped) != 1 || dropped[0] != "pvres0/moved" {
		t.Errorf("dropped %v, %v; want pvres0/moved", dropped, err)
	}
	list, _ := m.reservations("pvres0")
	if len(list) != 1 || list[0].Name != "kept" {
		t.Errorf("reservations left: %+v", list)
	}
}
