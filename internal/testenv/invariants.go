package testenv

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"gopkg.in/yaml.v3"

	"github.com/polyvisor/polyvisor/internal/fsutil"
	"github.com/polyvisor/polyvisor/internal/layout"
	"github.com/polyvisor/polyvisor/internal/network"
	"github.com/polyvisor/polyvisor/internal/qmp"
	"github.com/polyvisor/polyvisor/internal/runc"
	"github.com/polyvisor/polyvisor/pkg/api"
)

// State is what a daemon holds, as its API reports it: the guests (by
// name), their snapshots, the networks and the templates.
type State struct {
	Guests    map[string]api.Guest
	Snapshots map[string][]string // by guest, sorted
	Networks  map[string]api.Network
	Templates []string // ids, sorted
}

// ReadState asks the daemon for its State.
func (d *Daemon) ReadState(ctx context.Context) (State, error) {
	c := d.Client()
	s := State{Guests: map[string]api.Guest{}, Snapshots: map[string][]string{}, Networks: map[string]api.Network{}}
	guests, err := c.Guests(ctx)
	if err != nil {
		return s, fmt.Errorf("list guests: %w", err)
	}
	for _, g := range guests {
		s.Guests[g.Name] = g
		if g.State == api.StateBroken {
			continue
		}
		snaps, err := c.Snapshots(ctx, g.Name)
		if err != nil {
			return s, fmt.Errorf("snapshots of %s: %w", g.Name, err)
		}
		names := []string{}
		for _, sn := range snaps {
			names = append(names, sn.Name)
		}
		sort.Strings(names)
		s.Snapshots[g.Name] = names
	}
	networks, err := c.Networks(ctx)
	if err != nil {
		return s, fmt.Errorf("list networks: %w", err)
	}
	for _, n := range networks {
		s.Networks[n.Name] = n
	}
	templates, err := c.Templates(ctx)
	if err != nil {
		return s, fmt.Errorf("list templates: %w", err)
	}
	for _, t := range templates {
		s.Templates = append(s.Templates, t.ID)
	}
	sort.Strings(s.Templates)
	return s, nil
}

// CheckInvariants returns what is wrong with the daemon's host after a
// crash and the next daemon's start, one line each: every guest loads
// (none broken) and none is frozen; no process names the daemon's state or
// run dir but a running guest's own (its monitor, QEMU) or a network's
// dnsmasq; no cgroup under the daemon's cgroup parent but a running
// guest's; no mount under the state dir but inside a running guest's
// directory; no staging, trash or pending leftover of an operation and no
// intent left in a definition; every snapshot has its record, and a VM's
// qcow2 holds exactly its snapshots' tags; with the daemon in a network
// namespace of its own, no guest interface but a running guest's, no
// bridge but a network's, and no NAT rule but for a network's subnet.
func (d *Daemon) CheckInvariants(ctx context.Context, s State) []string {
	var bad []string
	fail := func(format string, args ...any) { bad = append(bad, fmt.Sprintf(format, args...)) }
	l := layout.New(d.StateDir)
	running := map[string]api.Guest{}
	for name, g := range s.Guests {
		switch g.State {
		case api.StateBroken:
			fail("guest %s is broken: %s", name, g.Error)
		case api.StateRunning:
			running[name] = g
			if why := frozen(ctx, l, g); why != "" {
				fail("guest %s is frozen: %s", name, why)
			}
		}
	}
	bad = append(bad, strayProcesses(d, l, running, s.Networks)...)
	for _, dir := range CgroupDirs(l.CgroupParent()) {
		children, _ := os.ReadDir(dir)
		for _, c := range children {
			if _, ok := running[c.Name()]; c.IsDir() && !ok {
				fail("cgroup %s/%s of no running guest", dir, c.Name())
			}
		}
	}
	if points, err := fsutil.MountsUnder(d.StateDir); err != nil {
		fail("read mounts: %v", err)
	} else {
		for _, p := range points {
			rel, _ := filepath.Rel(l.GuestsDir(), p)
			name, _, _ := strings.Cut(rel, "/")
			if _, ok := running[name]; !ok || strings.HasPrefix(rel, "..") {
				fail("mount %s of no running guest", p)
			}
		}
	}
	bad = append(bad, leftovers(l)...)
	for name, g := range s.Guests {
		if g.Type == "vm" && g.State != api.StateBroken {
			if tags, err := qcow2Tags(ctx, filepath.Join(l.GuestDir(name), "disks", "root.qcow2")); err != nil {
				fail("snapshots in the disk of %s: %v", name, err)
			} else if !slices.Equal(tags, s.Snapshots[name]) {
				fail("VM %s: its disk holds snapshots %v, its records %v", name, tags, s.Snapshots[name])
			}
		}
	}
	if d.Netns != "" {
		bad = append(bad, strayInterfaces(d.Netns, running, s.Networks)...)
		bad = append(bad, strayNAT(d.Netns, s.Networks)...)
	}
	return bad
}

// frozen says why a running guest does not run: a container the runtime
// reports paused, a VM whose CPUs QEMU reports stopped; "" when it runs.
func frozen(ctx context.Context, l layout.Layout, g api.Guest) string {
	if g.Type == "vm" {
		ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		m, err := qmp.Dial(ctx, filepath.Join(l.GuestRunDir(g.Name), "qmp.sock"))
		if err != nil {
			return "cannot ask QEMU: " + err.Error()
		}
		defer m.Close()
		var st qmp.StatusInfo
		if err := m.Run(ctx, qmp.QueryStatus{}, &st); err != nil {
			return "query-status: " + err.Error()
		}
		if !st.Running {
			return "QEMU reports " + st.Status
		}
		return ""
	}
	st, err := runc.New("runc", l.RuncRoot()).State(ctx, g.Name)
	if err != nil {
		return "runc state: " + err.Error()
	}
	if st.Status != "running" {
		return "runc reports " + st.Status
	}
	return ""
}

// strayProcesses lists processes whose command line names the daemon's
// state or run dir without being a running guest's or a network's.
func strayProcesses(d *Daemon, l layout.Layout, running map[string]api.Guest, networks map[string]api.Network) []string {
	var bad []string
	var allowed []string
	for name := range running {
		allowed = append(allowed, l.GuestRunDir(name)+"/", l.GuestDir(name)+"/")
	}
	for name := range networks {
		allowed = append(allowed, l.NetworkRunDir(name)+"/", l.NetworkDir(name)+"/")
	}
	// The containers' supervisor is no guest's: it lingers a few seconds
	// after the last, and exits by itself.
	allowed = append(allowed, l.SupervisorDir()+"/")
	cmdlines, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, f := range cmdlines {
		data, err := os.ReadFile(f)
		if err != nil || len(data) == 0 {
			continue
		}
		pid := strings.TrimSuffix(strings.TrimPrefix(f, "/proc/"), "/cmdline")
		if pid == fmt.Sprint(d.PID()) {
			continue
		}
		args := strings.Split(strings.TrimRight(string(data), "\x00"), "\x00")
		if filepath.Base(args[0]) == "polyvisor" && slices.Contains(args, "--socket") && !slices.Contains(args, "daemon") {
			continue // a client of the test's
		}
		// Ours if an argument names the state or run dir (a template's
		// kernel, the runtime's root), accounted for if one names a
		// running guest's or a network's own directory.
		ours, ok := false, false
		for _, a := range args {
			if strings.Contains(a, d.StateDir) || strings.Contains(a, l.RunDir()) {
				ours = true
			}
			if slices.ContainsFunc(allowed, func(p string) bool { return strings.Contains(a+"/", p) }) {
				ok = true
			}
		}
		if ours && !ok {
			bad = append(bad, fmt.Sprintf("process %s of no running guest or network: %s", pid, strings.Join(args, " ")))
		}
	}
	return bad
}

// leftovers lists what interrupted operations may leave in the state dir:
// staging and trash entries (names starting with a dot, but for the
// templates' package cache), templates still marked pending, snapshots
// without their record, intents left in definitions.
func leftovers(l layout.Layout) []string {
	var bad []string
	dirs := []string{l.GuestsDir(), l.TemplatesDir(), l.NetworksDir()}
	guests, _ := os.ReadDir(l.GuestsDir())
	for _, g := range guests {
		dir := l.GuestDir(g.Name())
		dirs = append(dirs, filepath.Join(dir, "snapshots"), filepath.Join(dir, "disks"))
		var def struct {
			Status struct {
				Intent string `yaml:"intent"`
			} `yaml:"status"`
		}
		if data, err := os.ReadFile(filepath.Join(dir, "guest.yaml")); err == nil && yaml.Unmarshal(data, &def) == nil && def.Status.Intent != "" {
			bad = append(bad, fmt.Sprintf("guest %s: intent %s is left in its definition", g.Name(), def.Status.Intent))
		}
		snaps, _ := os.ReadDir(filepath.Join(dir, "snapshots"))
		for _, sn := range snaps {
			if strings.HasPrefix(sn.Name(), ".") {
				continue
			}
			if _, err := os.Stat(filepath.Join(dir, "snapshots", sn.Name(), "snapshot.yaml")); err != nil {
				bad = append(bad, fmt.Sprintf("snapshot %s of %s has no record", sn.Name(), g.Name()))
			}
		}
	}
	for _, dir := range dirs {
		entries, _ := os.ReadDir(dir)
		for _, e := range entries {
			if strings.HasPrefix(e.Name(), ".") && !(dir == l.TemplatesDir() && e.Name() == ".cache") {
				bad = append(bad, "leftover "+filepath.Join(dir, e.Name()))
			}
		}
	}
	templates, _ := os.ReadDir(l.TemplatesDir())
	for _, t := range templates {
		if _, err := os.Stat(filepath.Join(l.TemplatesDir(), t.Name(), "pending")); err == nil {
			bad = append(bad, "template "+t.Name()+" is still marked pending")
		}
	}
	networks, _ := os.ReadDir(l.NetworksDir())
	for _, n := range networks {
		var def struct {
			Intent string `yaml:"intent"`
		}
		if data, err := os.ReadFile(filepath.Join(l.NetworkDir(n.Name()), "network.yaml")); err == nil && yaml.Unmarshal(data, &def) == nil && def.Intent != "" {
			bad = append(bad, "network "+n.Name()+": intent "+def.Intent+" is left in its definition")
		}
	}
	return bad
}

// qcow2Tags lists the internal snapshots of a qcow2 image, sorted.
func qcow2Tags(ctx context.Context, path string) ([]string, error) {
	out, err := exec.CommandContext(ctx, "qemu-img", "snapshot", "-U", "-l", path).Output()
	if err != nil {
		return nil, err
	}
	tags := []string{}
	for _, line := range strings.Split(string(out), "\n")[1:] {
		f := strings.Fields(line)
		// "ID TAG VM-SIZE DATE TIME VM-CLOCK ICOUNT"; the header starts with ID.
		if len(f) >= 2 && f[0] != "ID" {
			tags = append(tags, f[1])
		}
	}
	sort.Strings(tags)
	return tags, nil
}

// strayInterfaces lists, in network namespace netns, guest interfaces
// (network.HostIfPrefix) of no running guest, and bridges of no network.
func strayInterfaces(netns string, running map[string]api.Guest, networks map[string]api.Network) []string {
	var bad []string
	allowed := map[string]bool{}
	for name, g := range running {
		for _, n := range g.Networks {
			allowed[network.NICOf(name, n).HostIf] = true
		}
	}
	links, err := linkNames(netns)
	if err != nil {
		return []string{err.Error()}
	}
	for _, name := range links {
		if strings.HasPrefix(name, network.HostIfPrefix) && !allowed[name] {
			bad = append(bad, "interface "+name+" of no running guest")
		}
	}
	bridges, err := linkNames(netns, "type", "bridge")
	if err != nil {
		return []string{err.Error()}
	}
	for _, b := range bridges {
		if _, ok := networks[b]; !ok {
			bad = append(bad, "bridge "+b+" of no network")
		}
	}
	for name := range networks {
		if !slices.Contains(bridges, name) {
			bad = append(bad, "network "+name+" has no bridge")
		}
	}
	return bad
}

// linkNames lists the interfaces of netns (ip link show, with filter).
func linkNames(netns string, filter ...string) ([]string, error) {
	out, err := exec.Command("ip", append([]string{"-n", netns, "-o", "link", "show"}, filter...)...).Output()
	if err != nil {
		return nil, fmt.Errorf("ip -n %s link show: %w", netns, err)
	}
	var names []string
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		if len(f) >= 2 {
			name, _, _ := strings.Cut(strings.TrimSuffix(f[1], ":"), "@")
			names = append(names, name)
		}
	}
	return names, nil
}

// strayNAT lists the subnets polyvisor's nftables table in netns matches
// that are no network's: rules of a network that was removed.
func strayNAT(netns string, networks map[string]api.Network) []string {
	f, err := os.Open("/run/netns/" + netns)
	if err != nil {
		return []string{err.Error()}
	}
	defer f.Close()
	conn, err := nftables.New(nftables.WithNetNSFd(int(f.Fd())))
	if err != nil {
		return []string{"nftables: " + err.Error()}
	}
	subnets := map[[4]byte]bool{}
	for _, n := range networks {
		if p, err := netip.ParsePrefix(n.Subnet); err == nil {
			subnets[p.Addr().As4()] = true
		}
	}
	tables, err := conn.ListTablesOfFamily(nftables.TableFamilyIPv4)
	if err != nil {
		return []string{"nftables: " + err.Error()}
	}
	var bad []string
	for _, t := range tables {
		if t.Name != "polyvisor" {
			continue
		}
		if len(networks) == 0 {
			bad = append(bad, "nftables table polyvisor outlives every network")
		}
		chains, err := conn.ListChainsOfTableFamily(nftables.TableFamilyIPv4)
		if err != nil {
			return append(bad, "nftables: "+err.Error())
		}
		for _, c := range chains {
			if c.Table.Name != t.Name {
				continue
			}
			rules, err := conn.GetRules(t, c)
			if err != nil {
				return append(bad, "nftables: "+err.Error())
			}
			for _, r := range rules {
				for _, e := range r.Exprs {
					if cmp, ok := e.(*expr.Cmp); ok && len(cmp.Data) == 4 && !subnets[[4]byte(cmp.Data)] {
						bad = append(bad, fmt.Sprintf("nftables chain %s matches %v, no network's subnet", c.Name, netip.AddrFrom4([4]byte(cmp.Data))))
					}
				}
			}
		}
	}
	return bad
}
