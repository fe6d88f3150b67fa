package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/polyvisor/polyvisor/internal/layout"
	"github.com/polyvisor/polyvisor/internal/network"
	"github.com/polyvisor/polyvisor/internal/testenv"
	"github.com/polyvisor/polyvisor/pkg/api"
)

// netnsDaemon is a daemon of the test's own inside a network namespace the
// test makes (and Destroy deletes): its bridges, dnsmasq and traffic never
// touch the host's namespace.
func netnsDaemon(t *testing.T) *testenv.Daemon {
	t.Helper()
	d, err := testenv.StartInNetns(t.TempDir(), env.bin, netnsName(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := d.Destroy(); err != nil {
			t.Errorf("destroy: %v", err)
		}
	})
	return d
}

// netnsName names the network namespace of a test's own daemon.
func netnsName(t *testing.T) string {
	ns := fmt.Sprintf("pv-e2e-%d-%s", os.Getpid(), strings.ToLower(strings.NewReplacer("/", "-", "_", "-").Replace(t.Name())))
	return ns[:min(len(ns), 40)]
}

func networks(t *testing.T, d *testenv.Daemon) map[string]api.Network {
	t.Helper()
	var list []api.Network
	if err := jsonUnmarshal(d.Must(t, "network", "list", "--format", "json"), &list); err != nil {
		t.Fatal(err)
	}
	byName := map[string]api.Network{}
	for _, n := range list {
		byName[n.Name] = n
	}
	return byName
}

func TestNetworksAreManagedAndOutliveTheDaemon(t *testing.T) {
	requireRoot(t)
	d := netnsDaemon(t)
	if out := d.Must(t, "network", "create", "lan"); !strings.Contains(out, "10.86.0.0/24, gateway 10.86.0.1") {
		t.Errorf("network create said: %s", out)
	}
	d.Must(t, "network", "create", "iso", "--isolated", "--subnet", "192.168.77.0/24")
	expectError(t, d, "overlaps 10.86.0.0/24 (network lan)", "network", "create", "clash", "--subnet", "10.86.0.0/16")
	expectError(t, d, "network lan: already exists", "network", "create", "lan")
	expectError(t, d, "subnet", "network", "create", "bad", "--subnet", "10.1.2.3")
	nets := networks(t, d)
	lan, iso := nets["lan"], nets["iso"]
	if len(nets) != 2 || lan.DNSMasqPID <= 0 || !iso.Isolated || iso.Gateway != "192.168.77.1" {
		t.Fatalf("networks: %+v", nets)
	}
	addr, err := exec.Command("ip", "-n", d.Netns, "addr", "show", "lan").Output()
	if err != nil || !strings.Contains(string(addr), "inet 10.86.0.1/24") || !strings.Contains(string(addr), ",UP") {
		t.Errorf("bridge lan in the daemon's namespace: %v: %s", err, addr)
	}
	if err := exec.Command("ip", "link", "show", "lan").Run(); err == nil {
		t.Error("a bridge named lan appeared in the host's namespace")
	}
	// Killed daemon: dnsmasq keeps serving, and is adopted again.
	d.Kill()
	if !alive(lan.DNSMasqPID) {
		t.Fatal("killing the daemon killed dnsmasq")
	}
	if err := d.Restart(); err != nil {
		t.Fatal(err)
	}
	if again := networks(t, d)["lan"]; again.DNSMasqPID != lan.DNSMasqPID {
		t.Errorf("after a restart dnsmasq is %d, want %d adopted", again.DNSMasqPID, lan.DNSMasqPID)
	}
	d.Must(t, "network", "delete", "lan", "iso")
	if len(networks(t, d)) != 0 || alive(lan.DNSMasqPID) || alive(iso.DNSMasqPID) {
		t.Errorf("after delete: networks %v, dnsmasq alive %v %v", networks(t, d), alive(lan.DNSMasqPID), alive(iso.DNSMasqPID))
	}
	if err := exec.Command("ip", "-n", d.Netns, "link", "show", "lan").Run(); err == nil {
		t.Error("the bridge of a deleted network is left")
	}
	expectError(t, d, "network lan: not found", "network", "show", "lan")
}

// copyTemplate copies a built template from one daemon's state to another's.
func copyTemplate(t *testing.T, from, to *testenv.Daemon, id string) {
	t.Helper()
	src := filepath.Join(layout.New(from.StateDir).TemplatesDir(), id)
	dst := filepath.Join(layout.New(to.StateDir).TemplatesDir(), id)
	if out, err := exec.Command("cp", "-a", src, dst).CombinedOutput(); err != nil {
		t.Fatalf("copy template %s: %v: %s", id, err, out)
	}
}

// waitForAddress waits for a guest's DHCP lease to show in info.
func waitForAddress(t *testing.T, d *testenv.Daemon, name string) string {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		if g := info(t, d, name); len(g.IPv4) > 0 {
			return g.IPv4[0]
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s got no address within a minute; its console:\n%s", name, d.Must(t, "console", name, "--log"))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func TestGuestsGetAddressesAndReachEachOtherByName(t *testing.T) {
	requireVMTemplates(t)
	d := netnsDaemon(t)
	d.Must(t, "template", "build", "busybox")
	// The daemon in its namespace cannot reach a mirror: it gets a copy
	// of the VM template the main daemon built.
	copyTemplate(t, env.main, d, "busybox.vm.amd64")
	c1 := launch(t, d, "busybox", "net-c1")
	c2 := launch(t, d, "busybox", "net-c2")
	vm := launch(t, d, "busybox", "net-vm", "--type", "vm")
	addrs := map[string]string{}
	for _, g := range []api.Guest{c1, c2, vm} {
		addrs[g.Name] = waitForAddress(t, d, g.Name)
		if !strings.HasPrefix(addrs[g.Name], "10.86.0.") || len(g.Networks) != 1 || g.Networks[0] != "polyvisor0" {
			t.Errorf("%s: address %s, networks %v", g.Name, addrs[g.Name], g.Networks)
		}
	}
	for _, pair := range [][2]string{{"net-c1", "net-c2"}, {"net-c2", "net-vm"}, {"net-vm", "net-c1"}} {
		from, to := pair[0], pair[1]
		out, errOut, code := d.Run("exec", from, "--", "busybox", "ping", "-c", "1", "-W", "5", to+".polyvisor")
		if code != 0 || !strings.Contains(out, addrs[to]) {
			t.Errorf("ping %s.polyvisor from %s: exit %d: %s%s", to, from, code, out, errOut)
		}
	}
	// The DHCP exchange and the pings are on each guest's usage, counted
	// on the host's end of its NIC (a veth, a tap); the VM's QEMU has read
	// its disk and used CPU.
	for _, name := range []string{c1.Name, c2.Name, vm.Name} {
		u := info(t, d, name).Usage
		if u == nil || u.NetworkReceiveBytes <= 0 || u.NetworkTransmitBytes <= 0 || u.CPUSeconds <= 0 || u.MemoryBytes <= 0 {
			t.Errorf("usage of %s after DHCP and pings: %+v", name, u)
		}
	}
	if u := info(t, d, vm.Name).Usage; u == nil || u.DiskReadBytes <= 0 {
		t.Errorf("usage of the VM %s: %+v, want its disk read", vm.Name, u)
	}
	// An isolated network gives no route out.
	d.Must(t, "network", "create", "e2e-iso", "--isolated")
	t.Cleanup(func() { d.Run("network", "delete", "e2e-iso") })
	iso := launch(t, d, "busybox", "net-iso", "--network", "e2e-iso")
	waitForAddress(t, d, iso.Name)
	if routes := d.Must(t, "exec", iso.Name, "--", "ip", "route"); strings.Contains(routes, "default") {
		t.Errorf("a guest on an isolated network has a default route:\n%s", routes)
	}
	expectError(t, d, "used by", "network", "delete", "e2e-iso")
	expectError(t, d, "network nowhere", "launch", "busybox", "net-x", "--network", "nowhere")
	// Deleting a guest takes its host interface (veth or tap) away, and
	// its lease.
	for _, g := range []api.Guest{c1, vm} {
		nic := network.NICOf(g.Name, "polyvisor0")
		d.Must(t, "delete", "--force", g.Name)
		if err := exec.Command("ip", "-n", d.Netns, "link", "show", nic.HostIf).Run(); err == nil {
			t.Errorf("the interface %s of deleted guest %s is left", nic.HostIf, g.Name)
		}
		for _, l := range networks(t, d)["polyvisor0"].Leases {
			if l.MAC == nic.MAC.String() {
				t.Errorf("deleted guest %s keeps its lease %+v", g.Name, l)
			}
		}
	}
}

func TestLaunchDeleteCyclesLeaveNothingOnTheNetwork(t *testing.T) {
	requireRoot(t)
	d := netnsDaemon(t)
	d.Must(t, "template", "build", "busybox")
	const cycles = 200
	for i := range cycles {
		name := fmt.Sprintf("cycle-%03d", i)
		d.Must(t, "launch", "busybox", name)
		if i%20 == 0 {
			waitForAddress(t, d, name) // a lease to release
		}
		d.Must(t, "delete", "--force", name)
	}
	// A crash: the daemon killed with a guest running, and that guest
	// ending while no daemon watches; the next daemon releases it.
	kept := launch(t, d, "busybox", "survivor")
	gone := launch(t, d, "busybox", "casualty")
	waitForAddress(t, d, kept.Name)
	waitForAddress(t, d, gone.Name)
	d.Kill()
	syscall.Kill(gone.PID, syscall.SIGKILL)
	if err := d.Restart(); err != nil {
		t.Fatal(err)
	}
	d.Must(t, "delete", "--force", gone.Name)
	if g := info(t, d, kept.Name); g.State != api.StateRunning || len(g.IPv4) != 1 {
		t.Errorf("the guest that outlived the daemon: %+v", g)
	}
	d.Must(t, "delete", "--force", kept.Name)
	links, _ := exec.Command("ip", "-n", d.Netns, "-br", "link").Output()
	if strings.Contains(string(links), network.HostIfPrefix) {
		t.Errorf("guest interfaces left after %d cycles and a crash:\n%s", cycles, links)
	}
	if n := networks(t, d)[network.DefaultName]; len(n.Leases) != 0 {
		t.Errorf("leases left after %d cycles and a crash: %+v", cycles, n.Leases)
	}
	table, err := exec.Command("ip", "netns", "exec", d.Netns, "nft", "list", "table", "ip", "polyvisor").CombinedOutput()
	if err != nil || strings.Count(string(table), "masquerade") != 1 || strings.Contains(string(table), "pv-") {
		t.Errorf("nftables table after the cycles: %v:\n%s", err, table)
	}
}

func TestPublishedPortAnswersOnTheHostsAddresses(t *testing.T) {
	requireRoot(t)
	d := netnsDaemon(t)
	d.Must(t, "template", "build", "busybox")
	copyTemplate(t, env.main, d, "debian") // built with the mirror the namespace cannot reach
	web := launch(t, d, "debian", "web", "--publish", "8080:80")
	d.Must(t, "exec", web.Name, "--", "sh", "-c", "mkdir -p /www && echo hello-from-web > /www/index.html && busybox httpd -p 80 -h /www")
	waitForAddress(t, d, web.Name)
	inNetns := func(args ...string) *exec.Cmd {
		return exec.Command("nsenter", append([]string{"--net=/run/netns/" + d.Netns, "--"}, args...)...)
	}
	for _, url := range []string{"http://127.0.0.1:8080/", "http://10.86.0.1:8080/"} {
		// (busybox 1.35's wget -T crashes: timeout bounds it instead)
		out, err := inNetns("timeout", "20", "busybox", "wget", "-q", "-O", "-", url).CombinedOutput()
		if err != nil || string(out) != "hello-from-web\n" {
			t.Errorf("GET %s on the host: %v: %q", url, err, out)
		}
	}
	if g := info(t, d, web.Name); len(g.Publish) != 1 || g.Publish[0] != "8080:80/tcp" {
		t.Errorf("info's publish: %v", g.Publish)
	}
	// A port a host process holds, a port another guest publishes, and a
	// malformed one are refused, leaving no guest behind.
	holder := inNetns("busybox", "nc", "-l", "-p", "9090")
	if err := holder.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { holder.Process.Kill(); holder.Wait() }()
	time.Sleep(200 * time.Millisecond)
	expectError(t, d, "port 9090/tcp is in use", "launch", "busybox", "web2", "--publish", "9090:80")
	expectError(t, d, "guest web publishes 8080:80/tcp already", "launch", "busybox", "web2", "--publish", "127.0.0.1:8080:81")
	expectError(t, d, "two ports are needed", "launch", "busybox", "web2", "--publish", "80")
	expectError(t, d, "joins no network", "launch", "busybox", "web2", "--publish", "8081:80", "--network", "none")
	if gs, _ := d.Guests(); len(gs) != 1 {
		t.Errorf("refused launches left guests: %+v", gs)
	}
	// Published ports change live; the network, once the guest is stopped.
	if out := d.Must(t, "config", "set", web.Name, "publish=8081:80"); !strings.Contains(out, "publish=8081:80: applied live") {
		t.Errorf("config set publish said: %s", out)
	}
	get := func(url string) (string, error) {
		out, err := inNetns("timeout", "20", "busybox", "wget", "-q", "-O", "-", url).CombinedOutput()
		return string(out), err
	}
	if out, err := get("http://127.0.0.1:8081/"); err != nil || out != "hello-from-web\n" {
		t.Errorf("GET on the newly published port: %v: %q", err, out)
	}
	if out, err := get("http://127.0.0.1:8080/"); err == nil {
		t.Errorf("the unpublished port still answers: %q", out)
	}
	expectError(t, d, "stop it first", "config", "set", web.Name, "network=other")
	d.Must(t, "network", "create", "other")
	d.Must(t, "stop", web.Name)
	if out := d.Must(t, "config", "set", web.Name, "network=other"); !strings.Contains(out, "network=other: applies at next start") {
		t.Errorf("config set network said: %s", out)
	}
	d.Must(t, "start", web.Name)
	if ip := waitForAddress(t, d, web.Name); !strings.HasPrefix(ip, "10.86.1.") {
		t.Errorf("after moving to network other (10.86.1.0/24) the guest has %s", ip)
	}
	d.Must(t, "delete", "--force", web.Name)
	table, _ := inNetns("nft", "list", "table", "ip", "polyvisor").CombinedOutput()
	if strings.Contains(string(table), "dnat") {
		t.Errorf("a deleted guest's published port is still forwarded:\n%s", table)
	}
}
