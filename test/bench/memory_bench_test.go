package bench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/polyvisor/polyvisor/internal/evaluation/peer"
	"github.com/polyvisor/polyvisor/internal/exporter"
	"github.com/polyvisor/polyvisor/internal/idmap"
	"github.com/polyvisor/polyvisor/internal/template"
	"github.com/polyvisor/polyvisor/internal/testenv"
	"github.com/polyvisor/polyvisor/pkg/api"
)

const (
	// idleSettle is the wait between the last launch and the reading: a
	// monitor trims its memory 2 s after a start (the supervisor after
	// each of its guests' starts).
	idleSettle = 5 * time.Second
	// idleWindow is how long the idle processes are watched for wake-ups.
	idleWindow = 10 * time.Second
	// peerIdleGuests is how many containers each peer runs for its
	// reading; a per-guest monitor's PSS hardly depends on how many run.
	peerIdleGuests = 10
)

// idleReading is what one round of n idle guests measured. Memory is in KiB.
type idleReading struct {
	n                          int
	monitorProcs               int   // distinct monitor processes: one supervisor runs many guests
	monitors                   int64 // PSS of those processes together, each counted once
	inits                      int64 // PSS of all the containers' inits, for scale
	daemonPSS0, daemonPSS1     int64 // the daemon's PSS before the launches, and with the guests idle
	daemonRSS0, daemonRSS1     int64
	daemonThreads0, daemonThr1 int
	// Context switches (voluntary and not) over idleWindow while the
	// guests idle, of the daemon and of the distinct monitor processes:
	// each is one wake-up of a thread.
	daemonSwitches, monitorSwitches int64
}

func (r *idleReading) perMonitor() float64 { return float64(r.monitors) / float64(r.n) }
func (r *idleReading) perDaemon() float64 {
	return float64(r.daemonPSS1-r.daemonPSS0) / float64(r.n)
}
func (r *idleReading) perGuest() float64 { return r.perMonitor() + r.perDaemon() }

// peerReading is a peer's per-container monitor (conmon, lxc monitor).
type peerReading struct {
	name     string
	n        int
	monitors int64 // PSS of all its monitors together, KiB
	switches int64 // their context switches over idleWindow
}

func (r peerReading) perMonitor() float64 { return float64(r.monitors) / float64(r.n) }

// idleMemo carries an idle benchmark's readings across its calls.
type idleMemo struct {
	readings map[int]*idleReading
	peers    []peerReading
	skipped  []string // peers that could not run, with why
}

// BenchmarkIdleMemory50 measures what polyvisor itself costs in memory per
// idle container: the PSS of the monitor processes (one supervisor runs
// all of the daemon's containers: it is counted once) plus the daemon's
// growth, over the guests, with 50 busybox containers with default
// limits. In the same run it measures the PSS of podman's conmon and LXC's
// monitor, one per container of the same busybox tree, and reports
// polyvisor's cost per guest as a ratio of conmon's. It measures once,
// whatever b.N.
func BenchmarkIdleMemory50(b *testing.B) {
	requireRoot(b)
	f := openFixture(b, "idlememory50")
	m := idleMeasured(b, f, []string{"podman", "lxc"}, 50)
	for range b.N {
		// Nothing to repeat: the measurement is of a steady state.
	}
	r := m.readings[50]
	b.ReportMetric(0, "ns/op")
	b.ReportMetric(r.perMonitor(), "pss-kib-per-guest")
	b.ReportMetric(r.perDaemon(), "daemon-kib-per-guest")
	b.ReportMetric(r.perGuest(), "polyvisor-kib-per-guest")
	b.ReportMetric(float64(r.monitorSwitches+r.daemonSwitches), "idle-wakeups-per-10s")
	reportPeers(b, m, r)
}

// BenchmarkIdleMemory500 checks that polyvisor's cost grows linearly with
// idle guests and that nothing per guest wakes while they idle: it
// launches 50 guests and reads them idle, then 450 more and reads the 500,
// and reports the monitors' PSS per guest (each distinct monitor process
// counted once), the daemon's PSS and RSS growth per guest at each, their
// ratio (500 over 50: 1.0 is linear), the daemon's threads, and the
// context switches of the daemon and of the distinct monitor processes
// over 10 s of idling. conmon's and LXC's monitor's PSS are measured in
// the same run for the ratios.
func BenchmarkIdleMemory500(b *testing.B) {
	requireRoot(b)
	f := openFixture(b, "idlememory500")
	m := idleMeasured(b, f, []string{"podman", "lxc"}, 50, 500)
	for range b.N {
	}
	small, large := m.readings[50], m.readings[500]
	b.ReportMetric(0, "ns/op")
	for _, r := range []*idleReading{small, large} {
		n := strconv.Itoa(r.n)
		b.ReportMetric(r.perMonitor(), "pss-kib-per-guest@"+n)
		b.ReportMetric(r.perDaemon(), "daemon-pss-kib-per-guest@"+n)
		b.ReportMetric(float64(r.daemonRSS1-r.daemonRSS0)/float64(r.n), "daemon-rss-kib-per-guest@"+n)
		b.ReportMetric(float64(r.daemonThr1), "daemon-threads@"+n)
		b.ReportMetric(float64(r.daemonSwitches), "daemon-wakeups-per-10s@"+n)
		b.ReportMetric(float64(r.monitorSwitches), "monitor-wakeups-per-10s@"+n)
	}
	b.ReportMetric(large.perGuest()/small.perGuest(), "per-guest-500/50")
	b.ReportMetric(float64(large.daemonRSS1-large.daemonRSS0)/float64(large.n)/
		(float64(small.daemonRSS1-small.daemonRSS0)/float64(small.n)), "daemon-rss-per-guest-500/50")
	reportPeers(b, m, large)
}

// reportPeers reports each peer's monitor PSS and polyvisor's per-guest
// cost over it.
func reportPeers(b *testing.B, m *idleMemo, r *idleReading) {
	for _, p := range m.peers {
		b.ReportMetric(p.perMonitor(), p.name+"-pss-kib")
		b.ReportMetric(r.perGuest()/p.perMonitor(), "ratio-vs-"+p.name)
	}
	for _, why := range m.skipped {
		b.Log(why)
	}
}

// idleMeasured measures, on the fixture's first call, polyvisor with each
// count of idle guests in turn (launching more guests for each, then
// deleting them all) and then the named peers. Each reading is printed as
// soon as it is taken: a run with 500 guests is long on a busy host.
func idleMeasured(b *testing.B, f *fixture, peers []string, counts ...int) *idleMemo {
	b.Helper()
	if m, ok := f.memo.(*idleMemo); ok {
		return m
	}
	m := &idleMemo{readings: map[int]*idleReading{}}
	readings, err := measureIdle(b, f, counts)
	if err != nil {
		b.Fatal(err)
	}
	for _, r := range readings {
		m.readings[r.n] = r
	}
	env, err := peerEnvFor(b.Context(), f)
	if err != nil {
		b.Fatal(err)
	}
	for _, name := range peers {
		if err := peer.Installed(name); err != nil {
			m.skipped = append(m.skipped, fmt.Sprintf("peer %s skipped: %v", name, err))
			continue
		}
		p, closeErr, err := measurePeerIdle(b.Context(), name, env, peerIdleGuests)
		if err != nil {
			b.Fatal(err)
		}
		if closeErr != nil {
			// The reading stands; what the peer left is the fixture's
			// to remove with its dir.
			fmt.Printf("bench: %s: %s left something behind: %v\n", f.name, name, closeErr)
		}
		m.peers = append(m.peers, p)
		fmt.Printf("bench: %s: %s: %d idle containers: monitors %d KiB PSS in all (%.0f each); wake-ups in %s: %d\n",
			f.name, name, p.n, p.monitors, p.perMonitor(), idleWindow, p.switches)
	}
	f.memo = m
	return m
}

// measureIdle launches busybox guests up to each count in turn and, each
// time they idle, reads the memory of the daemon and the monitors and
// counts their wake-ups; then it deletes the guests.
func measureIdle(b *testing.B, f *fixture, counts []int) (_ []*idleReading, err error) {
	pid := f.daemon.PID()
	var base idleReading
	if base.daemonPSS0, err = pssKiB(pid); err != nil {
		return nil, err
	}
	if base.daemonRSS0, err = statusKiB(pid, "VmRSS"); err != nil {
		return nil, err
	}
	base.daemonThreads0 = threadsOf(pid)
	var launched []string
	defer func() {
		derr := forEach(launched, 4, func(name string) error {
			ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
			defer cancel()
			return testenv.DeleteGuest(ctx, f.client, name)
		})
		if derr != nil && err == nil {
			err = fmt.Errorf("delete idle guests: %w", derr)
		}
	}()
	var readings []*idleReading
	for _, n := range counts {
		names := guestNames("idle", n)[len(launched):]
		// A few at a time: guests arrive over time, and the daemon's
		// growth should be its steady state rather than the peak of a
		// burst.
		err = forEach(names, 3, func(name string) error {
			ctx, cancel := context.WithTimeout(b.Context(), opTimeout)
			defer cancel()
			return f.launch(ctx, name)
		})
		launched = append(launched, names...) // what failed to launch is deleted too
		if err != nil {
			return nil, err
		}
		r := base
		r.n = n
		if err := readIdle(b.Context(), f, &r); err != nil {
			return nil, err
		}
		readings = append(readings, &r)
		fmt.Printf("bench: %s: %d idle guests: %d monitor processes, %d KiB PSS in all (%.0f per guest), inits %d KiB; daemon PSS %d -> %d KiB, RSS %d -> %d KiB, threads %d -> %d; wake-ups in %s: daemon %d, monitors %d\n",
			f.name, n, r.monitorProcs, r.monitors, r.perMonitor(), r.inits, r.daemonPSS0, r.daemonPSS1, r.daemonRSS0, r.daemonRSS1,
			r.daemonThreads0, r.daemonThr1, idleWindow, r.daemonSwitches, r.monitorSwitches)
	}
	return readings, nil
}

// readIdle waits for the guests to idle, then fills r's readings.
func readIdle(ctx context.Context, f *fixture, r *idleReading) error {
	pid := f.daemon.PID()
	time.Sleep(idleSettle)
	ctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	guests, err := f.client.Guests(ctx)
	if err != nil {
		return fmt.Errorf("list idle guests: %w", err)
	}
	if len(guests) != r.n {
		return fmt.Errorf("listed %d guests, want %d", len(guests), r.n)
	}
	// Containers share one supervisor: each monitor process is read and
	// watched once, however many guests it runs.
	var monitors []int
	for _, g := range guests {
		if g.State != api.StateRunning || g.MonitorPID == 0 {
			return fmt.Errorf("guest %s is %s with monitor pid %d", g.Name, g.State, g.MonitorPID)
		}
		monitors = append(monitors, g.MonitorPID)
	}
	slices.Sort(monitors)
	monitors = slices.Compact(monitors)
	r.monitorProcs = len(monitors)
	// The wake-up window first, so that reading smaps (which takes a
	// while for 500 processes) happens outside it.
	r.daemonSwitches, r.monitorSwitches = idleSwitches([]int{pid}, monitors)
	for _, mon := range monitors {
		pss, err := pssKiB(mon)
		if err != nil {
			return fmt.Errorf("monitor process %d: %w", mon, err)
		}
		r.monitors += pss
	}
	for _, g := range guests {
		init, err := pssKiB(g.PID)
		if err != nil {
			return fmt.Errorf("guest %s init: %w", g.Name, err)
		}
		r.inits += init
	}
	if r.daemonPSS1, err = pssKiB(pid); err != nil {
		return err
	}
	if r.daemonRSS1, err = statusKiB(pid, "VmRSS"); err != nil {
		return err
	}
	r.daemonThr1 = threadsOf(pid)
	return nil
}

// idleSwitches counts the context switches of two groups of processes over
// idleWindow, in which the benchmark does nothing.
func idleSwitches(a, b []int) (int64, int64) {
	a0, b0 := switchesOf(a), switchesOf(b)
	time.Sleep(idleWindow)
	return switchesOf(a) - a0, switchesOf(b) - b0
}

// switchesOf sums the voluntary and involuntary context switches of every
// thread of the processes.
func switchesOf(pids []int) int64 {
	var sum int64
	for _, pid := range pids {
		tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
		if err != nil {
			continue
		}
		for _, t := range tasks {
			for _, key := range []string{"voluntary_ctxt_switches", "nonvoluntary_ctxt_switches"} {
				v, _ := procStatusField(fmt.Sprintf("/proc/%d/task/%s/status", pid, t.Name()), key)
				sum += v
			}
		}
	}
	return sum
}

func threadsOf(pid int) int {
	v, _ := procStatusField(fmt.Sprintf("/proc/%d/status", pid), "Threads")
	return int(v)
}

// statusKiB reads a "kB" field of /proc/PID/status (VmRSS).
func statusKiB(pid int, key string) (int64, error) {
	return procStatusField(fmt.Sprintf("/proc/%d/status", pid), key)
}

// procStatusField reads the first number of a "Key:" line of a status file.
func procStatusField(path, key string) (int64, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, key+":"); ok {
			fields := strings.Fields(rest)
			if len(fields) == 0 {
				break
			}
			return strconv.ParseInt(fields[0], 10, 64)
		}
	}
	return 0, fmt.Errorf("no %s in %s", key, path)
}

// peerEnvFor prepares the busybox tree for the peers under the fixture's
// dir: a tar for podman's import and a copy shifted to the shared id map
// for LXC.
func peerEnvFor(ctx context.Context, f *fixture) (peer.Env, error) {
	base := filepath.Join(f.dir, "peers")
	// LXC's container processes, mapped to unprivileged ids, must reach
	// their tree.
	for _, d := range []string{f.dir, base} {
		if err := os.MkdirAll(d, 0o711); err != nil {
			return peer.Env{}, err
		}
		if err := os.Chmod(d, 0o711); err != nil {
			return peer.Env{}, err
		}
	}
	tree := filepath.Join(base, "tree")
	if err := os.Mkdir(tree, 0o755); err != nil {
		return peer.Env{}, err
	}
	if err := template.BuildBusybox(ctx, tree, nil); err != nil {
		return peer.Env{}, fmt.Errorf("busybox tree for the peers: %w", err)
	}
	env := peer.Env{
		RootTar: filepath.Join(base, "root.tar"), RootFS: filepath.Join(base, "rootfs"),
		CPUs: runtime.NumCPU(), MemoryMiB: 256,
	}
	if err := exporter.Tree(ctx, tree, env.RootTar, nil, func(string, int64, int64) {}); err != nil {
		return peer.Env{}, fmt.Errorf("busybox tar for the peers: %w", err)
	}
	if err := idmap.CopyTree(ctx, tree, env.RootFS, idmap.ShiftUp(idmap.Default())); err != nil {
		return peer.Env{}, fmt.Errorf("busybox tree for the peers: %w", err)
	}
	return env, nil
}

// measurePeerIdle runs n busybox containers under the named peer and reads
// the PSS of their monitors once they idle, and their wake-ups; the peer
// removes everything it made before this returns, and closeErr says what
// it could not.
func measurePeerIdle(ctx context.Context, name string, env peer.Env, n int) (r peerReading, closeErr, err error) {
	r = peerReading{name: name, n: n}
	m, err := peer.New(name)
	if err != nil {
		return r, nil, err
	}
	env.Dir = filepath.Join(filepath.Dir(env.RootTar), name)
	if err := os.Mkdir(env.Dir, 0o700); err != nil {
		return r, nil, err
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		closeErr = m.Close(cctx)
	}()
	if err := m.Setup(ctx, env); err != nil {
		return r, nil, err
	}
	var monitors []int
	for i := range n {
		id := fmt.Sprintf("pvidle%d", i)
		if err := m.Create(ctx, id); err != nil {
			return r, nil, err
		}
		if err := m.Start(ctx, id); err != nil {
			return r, nil, err
		}
		pids, err := m.PIDs(ctx, id)
		if err != nil {
			return r, nil, err
		}
		monitors = append(monitors, pids[0])
	}
	time.Sleep(idleSettle)
	_, r.switches = idleSwitches(nil, monitors)
	for _, pid := range monitors {
		pss, err := pssKiB(pid)
		if err != nil {
			return r, nil, fmt.Errorf("%s monitor: %w", name, err)
		}
		r.monitors += pss
	}
	return r, nil, nil
}
