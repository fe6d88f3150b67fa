package testenv

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/polyvisor/polyvisor/pkg/api"
)

// ClusterLab is a test's hosts for a cluster: each member a daemon in a
// network namespace of its own, every namespace (and the test, from the
// host's, at .254) on one bridge in a namespace the lab makes.
type ClusterLab struct {
	tb       testing.TB
	bin      string
	underlay string
	prefix   string // 198.19.N.
	seq      int
}

// Member is one of a lab's daemons.
type Member struct {
	*Daemon
	Name, Addr, veth string
}

// NewClusterLab makes the underlay; the test's cleanup removes it and
// every member.
func NewClusterLab(tb testing.TB, binDir string) *ClusterLab {
	tb.Helper()
	id := os.Getpid()
	lab := &ClusterLab{tb: tb, bin: binDir, underlay: fmt.Sprintf("pv-ul-%d", id), prefix: fmt.Sprintf("198.19.%d.", id%250)}
	lab.ip("netns", "add", lab.underlay)
	tb.Cleanup(func() { exec.Command("ip", "netns", "delete", lab.underlay).Run() })
	hostEnd := fmt.Sprintf("pvul%d", id%100000)
	for _, args := range [][]string{
		{"-n", lab.underlay, "link", "add", "br0", "type", "bridge"},
		{"-n", lab.underlay, "link", "set", "br0", "up"},
		{"link", "add", hostEnd, "type", "veth", "peer", "name", "host", "netns", lab.underlay},
		{"-n", lab.underlay, "link", "set", "host", "master", "br0", "up"},
		{"addr", "add", lab.prefix + "254/24", "dev", hostEnd},
		{"link", "set", hostEnd, "up"},
	} {
		lab.ip(args...)
	}
	tb.Cleanup(func() { exec.Command("ip", "link", "delete", hostEnd).Run() })
	return lab
}

func (lab *ClusterLab) ip(args ...string) {
	lab.tb.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		lab.tb.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
}

// Member starts a daemon named name in its own namespace, on the
// underlay at the next address, serving HTTPS there; extra are its
// flags (none: no default network).
func (lab *ClusterLab) Member(name string, extra ...string) *Member {
	tb := lab.tb
	tb.Helper()
	lab.seq++
	addr := fmt.Sprintf("%s%d", lab.prefix, lab.seq)
	ns := fmt.Sprintf("pv-cl-%d-%s", os.Getpid(), name)
	args := append([]string{"--listen", addr + ":8443"}, extra...)
	if len(extra) == 0 {
		args = append(args, "--default-network", "none")
	}
	veth := "ul-" + name
	d, err := StartInNetnsBefore(tb.TempDir(), lab.bin, ns, func() error {
		for _, a := range [][]string{
			{"link", "add", veth, "netns", lab.underlay, "type", "veth", "peer", "name", "eth0", "netns", ns},
			{"-n", lab.underlay, "link", "set", veth, "master", "br0", "up"},
			{"-n", ns, "addr", "add", addr + "/24", "dev", "eth0"},
			{"-n", ns, "link", "set", "eth0", "up"},
		} {
			if out, err := exec.Command("ip", a...).CombinedOutput(); err != nil {
				return fmt.Errorf("ip %s: %v: %s", strings.Join(a, " "), err, out)
			}
		}
		return nil
	}, args...)
	if err != nil {
		tb.Fatal(err)
	}
	m := &Member{Daemon: d, Name: name, Addr: addr, veth: veth}
	tb.Cleanup(func() { m.destroy(tb) })
	return m
}

// destroy ends a member outside its cluster: the others may be gone, and
// a member without a quorum refuses the deletes that clean up.
func (m *Member) destroy(tb testing.TB) {
	if tb.Failed() {
		log := m.Log()
		tb.Logf("member %s's log (its end):\n%s", m.Name, log[max(0, len(log)-6000):])
	}
	m.Kill()
	os.RemoveAll(filepath.Join(m.StateDir, "cluster"))
	if err := m.Destroy(); err != nil {
		tb.Logf("destroy member %s: %v", m.Name, err)
	}
}

// Cut takes a member off the underlay, or puts it back.
func (lab *ClusterLab) Cut(m *Member, off bool) {
	state := "up"
	if off {
		state = "down"
	}
	lab.ip("-n", lab.underlay, "link", "set", m.veth, state)
}

// Form founds a cluster of the members, the first founding it, with the
// given init flags, and waits for them all to be online (and the first
// three to vote).
func (lab *ClusterLab) Form(members []*Member, initFlags ...string) {
	tb := lab.tb
	tb.Helper()
	first := members[0]
	first.Must(tb, append([]string{"cluster", "init", "--member", first.Name}, initFlags...)...)
	for _, m := range members[1:] {
		m.Must(tb, "cluster", "join", strings.TrimSpace(first.Must(tb, "cluster", "add", m.Name)))
	}
	Eventually(tb, 60*time.Second, "every member online", func() error {
		view := first.Cluster(tb)
		if len(view.Members) != len(members) {
			return fmt.Errorf("members: %+v", view.Members)
		}
		for i, m := range view.Members {
			if m.Health != api.MemberOnline || (i < 3 && m.Role != "voter") {
				return fmt.Errorf("member %+v", m)
			}
		}
		return nil
	})
}

// Cluster is `cluster list` as the member answers it.
func (m *Member) Cluster(tb testing.TB) api.Cluster {
	tb.Helper()
	var c api.Cluster
	if err := json.Unmarshal([]byte(m.Must(tb, "cluster", "list", "--format", "json")), &c); err != nil {
		tb.Fatal(err)
	}
	return c
}

// Listed is every guest the member lists, by name; a guest listed twice
// fails the test.
func (m *Member) Listed(tb testing.TB) map[string]api.Guest {
	tb.Helper()
	var gs []api.Guest
	if err := json.Unmarshal([]byte(m.Must(tb, "list", "--format", "json")), &gs); err != nil {
		tb.Fatal(err)
	}
	out := map[string]api.Guest{}
	for _, g := range gs {
		if _, twice := out[g.Name]; twice {
			tb.Errorf("guest %s is listed twice", g.Name)
		}
		out[g.Name] = g
	}
	return out
}

// Eventually retries check every half second until it returns nil, and
// fails the test if it has not within; it returns how long it took.
func Eventually(tb testing.TB, within time.Duration, what string, check func() error) time.Duration {
	tb.Helper()
	began := time.Now()
	var err error
	for time.Since(began) < within {
		if err = check(); err == nil {
			return time.Since(began)
		}
		time.Sleep(500 * time.Millisecond)
	}
	tb.Fatalf("%s: not within %s: %v", what, within, err)
	return 0
}

// Die ends member m as a host's death does: its daemon and every process
// of its running guests (as via lists them), SIGKILLed.
func (m *Member) Die(tb testing.TB, via *Member) {
	tb.Helper()
	var pids []int
	for _, g := range via.Listed(tb) {
		if g.Member == m.Name && g.State == api.StateRunning {
			pids = append(pids, g.PID, g.MonitorPID)
		}
	}
	m.Kill()
	for _, pid := range pids {
		if pid > 0 {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

// WaitReplica waits until one of members keeps a replica of guest name
// taken after since (a copy begun before a write lacks it) and the
// cluster's record of it says so: the record is written once the copy
// is sent, so the test waits for the next copy, which begins only after.
func WaitReplica(tb testing.TB, name string, since time.Time, members ...*Member) {
	tb.Helper()
	waitCopy(tb, name, since, members)
	waitCopy(tb, name, time.Now(), members)
}

func waitCopy(tb testing.TB, name string, since time.Time, members []*Member) {
	tb.Helper()
	Eventually(tb, time.Minute, name+"'s replica", func() error {
		for _, m := range members {
			data, err := os.ReadFile(filepath.Join(m.StateDir, "replicas", name, "meta.json"))
			var meta struct {
				At time.Time `json:"at"`
			}
			if err == nil && json.Unmarshal(data, &meta) == nil && meta.At.After(since) {
				return nil
			}
		}
		return fmt.Errorf("no replica since %s yet", since.Format(time.TimeOnly))
	})
}
