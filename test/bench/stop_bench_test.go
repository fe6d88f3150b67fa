package bench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/polyvisor/polyvisor/internal/evaluation/peer"
	"github.com/polyvisor/polyvisor/internal/exporter"
	"github.com/polyvisor/polyvisor/internal/idmap"
	"github.com/polyvisor/polyvisor/internal/testenv"
	"github.com/polyvisor/polyvisor/pkg/api"
	"github.com/polyvisor/polyvisor/pkg/client"
)

// stopSettle is how long a freshly started guest is left idle before it
// is stopped: its init has installed its signal handlers and started what
// its inittab respawns, as an idle guest has.
const stopSettle = 300 * time.Millisecond

// stopBaseEnv names a second polyvisor source tree (a worktree at an older
// commit) whose daemon, with its own busybox template, is measured in the
// same rounds: a before/after comparison on the same machine and load.
const stopBaseEnv = "POLYVISOR_BENCH_BASE"

// stopMemo carries BenchmarkStop's set-up across its calls: the peers and
// the base daemon are made once.
type stopMemo struct {
	peers    []stopPeer
	peersDir string
	base     *testenv.Daemon
	baseTmp  string
	seq      int
}

// stopPeer is a peer manager measured beside polyvisor.
type stopPeer struct {
	name string
	mgr  peer.Manager
}

// BenchmarkStop times stopping an idle busybox container: polyvisor's stop
// through the API (an operation, waited for until the guest is recorded
// stopped and released) and through the CLI, `lxc-stop` and `podman stop`
// of the same busybox tree (the template's), and, when POLYVISOR_BENCH_BASE
// names an older source tree, polyvisor built from it with its own
// template. Every round starts each guest untimed, leaves it idle for
// stopSettle and times its stop; the order rotates from round to round.
// Medians and the ratios of polyvisor's to each peer's are reported.
func BenchmarkStop(b *testing.B) {
	requireRoot(b)
	f := openFixture(b, "stop")
	memo, _ := f.memo.(*stopMemo)
	if memo == nil {
		memo = &stopMemo{}
		f.memo = memo
		f.onClose(memo.close)
		if err := memo.setUp(b, f); err != nil {
			b.Fatal(err)
		}
	}

	type runner struct {
		name string
		stop func(round int) (time.Duration, error)
		got  samples
	}
	pvStop := func(c *client.Client, viaCLI *testenv.Daemon) func(int) (time.Duration, error) {
		return func(round int) (time.Duration, error) {
			memo.seq++
			name := fmt.Sprintf("stop-%04d", memo.seq)
			return timePolyvisorStop(b.Context(), c, viaCLI, name)
		}
	}
	runners := []*runner{
		{name: "polyvisor", stop: pvStop(f.client, nil)},
		{name: "polyvisor-cli", stop: pvStop(f.client, f.daemon)},
	}
	if memo.base != nil {
		runners = append(runners, &runner{name: "base", stop: pvStop(memo.base.Client(), nil)})
	}
	for _, p := range memo.peers {
		runners = append(runners, &runner{name: p.name, stop: func(int) (time.Duration, error) {
			memo.seq++
			return timePeerStop(b.Context(), p.mgr, fmt.Sprintf("pvstop%04d", memo.seq))
		}})
	}

	b.ResetTimer()
	b.StopTimer()
	for i := range b.N {
		for k := range runners {
			r := runners[(i+k)%len(runners)]
			took, err := r.stop(i)
			if err != nil {
				b.Fatalf("%s: %v", r.name, err)
			}
			r.got = append(r.got, took)
		}
	}

	pv := runners[0].got.median()
	var line []string
	for _, r := range runners {
		unit := strings.ReplaceAll(r.name, "-", "_") + "-ms/op"
		b.ReportMetric(r.got.median(), unit)
		line = append(line, fmt.Sprintf("%s p50 %.1f (min %.1f max %.1f)", r.name, r.got.median(), r.got.percentile(0), r.got.percentile(100)))
		if r.name != "polyvisor" && r.name != "polyvisor-cli" {
			b.ReportMetric(pv/r.got.median(), "ratio-vs-"+r.name)
		}
	}
	b.Logf("n=%d ms: %s; targets: polyvisor <= 200 ms and <= 1.0x lxc and podman", b.N, strings.Join(line, "; "))
}

// setUp makes the peers (each skipped, with the reason, if it cannot run
// here) and the base daemon.
func (m *stopMemo) setUp(b *testing.B, f *fixture) error {
	ctx := b.Context()
	tmpl, err := f.templateRootfs(ctx, "busybox")
	if err != nil {
		return err
	}
	// The peers' unprivileged roots must traverse down to the tree.
	if m.peersDir, err = os.MkdirTemp("/var/tmp", "pv-bench-stop-peers-"); err != nil {
		return err
	}
	if err := os.Chmod(m.peersDir, 0o711); err != nil {
		return err
	}
	env := peer.Env{
		RootTar:   filepath.Join(m.peersDir, "rootfs.tar"),
		RootFS:    filepath.Join(m.peersDir, "rootfs"),
		CPUs:      1,
		MemoryMiB: 256,
	}
	// The template's own tree (owned by the shared id map) for LXC's
	// overlay, and a tar of it owned by root for podman's image.
	if err := idmap.CopyTree(ctx, tmpl, env.RootFS, nil); err != nil {
		return fmt.Errorf("copy the template's tree for the peers: %w", err)
	}
	if err := exporter.Tree(ctx, tmpl, env.RootTar, idmap.ShiftDown(idmap.Default()), func(string, int64, int64) {}); err != nil {
		return fmt.Errorf("tar the template's tree for the peers: %w", err)
	}
	for _, name := range []string{"lxc", "podman"} {
		if why := peer.Installed(name); why != nil {
			b.Logf("peer %s skipped: %v", name, why)
			continue
		}
		mgr, err := peer.New(name)
		if err != nil {
			return err
		}
		penv := env
		penv.Dir = filepath.Join(m.peersDir, name)
		if err := os.Mkdir(penv.Dir, 0o711); err != nil {
			return err
		}
		// Close runs even after a failed Setup: the peer may have made
		// part of its state.
		m.peers = append(m.peers, stopPeer{name: name, mgr: mgr})
		if err := mgr.Setup(ctx, penv); err != nil {
			return fmt.Errorf("peer %s: %w", name, err)
		}
	}
	if base := os.Getenv(stopBaseEnv); base != "" {
		if err := m.startBase(f, base); err != nil {
			return err
		}
	}
	return nil
}

// startBase builds polyvisor from the source tree at root and starts its
// daemon with the busybox template built.
func (m *stopMemo) startBase(f *fixture, root string) error {
	var err error
	if m.baseTmp, err = os.MkdirTemp("", "pv-bench-stop-base-"); err != nil {
		return err
	}
	binDir, err := testenv.BuildBinaries(root, m.baseTmp)
	if err != nil {
		return fmt.Errorf("build the base at %s: %w", root, err)
	}
	if m.base, err = testenv.Start(filepath.Join(m.baseTmp, "daemon"), binDir, "--default-network", "none"); err != nil {
		return fmt.Errorf("start the base daemon: %w", err)
	}
	if out, errOut, code := m.base.Run("template", "build", "busybox"); code != 0 {
		return fmt.Errorf("base: template build busybox: exit %d: %s%s", code, out, errOut)
	}
	return nil
}

// close removes the peers' guests and state and the base daemon.
func (m *stopMemo) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	for _, p := range m.peers {
		if err := p.mgr.Close(ctx); err != nil {
			fmt.Fprintf(os.Stderr, "bench: stop: peer %s: %v\n", p.name, err)
		}
	}
	if m.peersDir != "" {
		os.RemoveAll(m.peersDir)
	}
	if m.base != nil {
		if err := m.base.Destroy(); err != nil {
			fmt.Fprintf(os.Stderr, "bench: stop: base daemon: %v\n", err)
		}
	}
	if m.baseTmp != "" {
		unmountUnder(m.baseTmp)
		os.RemoveAll(m.baseTmp)
	}
}

// timePolyvisorStop launches guest name, lets it settle, times its stop
// (through the API, or the CLI of viaCLI when set) and deletes it.
func timePolyvisorStop(ctx context.Context, c *client.Client, viaCLI *testenv.Daemon, name string) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	op, err := c.CreateGuest(ctx, api.GuestCreate{Name: name, Template: "busybox", Start: true, Networks: []string{"none"}})
	if err == nil {
		err = c.Wait(ctx, op, nil)
	}
	if err != nil {
		return 0, fmt.Errorf("launch %s: %w", name, err)
	}
	time.Sleep(stopSettle)
	began := time.Now()
	if viaCLI != nil {
		if out, errOut, code := viaCLI.Run("stop", name); code != 0 {
			err = fmt.Errorf("polyvisor stop: exit %d: %s%s", code, out, errOut)
		}
	} else if op, err = c.ChangeState(ctx, name, api.StateChange{Action: "stop"}); err == nil {
		err = c.Wait(ctx, op, nil)
	}
	took := time.Since(began)
	if err != nil {
		return 0, fmt.Errorf("stop %s: %w", name, err)
	}
	g, err := c.Guest(ctx, name)
	if err == nil && g.State != api.StateStopped {
		err = fmt.Errorf("guest %s is %s after its stop", name, g.State)
	}
	if derr := testenv.DeleteGuest(ctx, c, name); err == nil {
		err = derr
	}
	return took, err
}

// timePeerStop creates and starts a peer's guest id, lets it settle, times
// the peer's stop and deletes it.
func timePeerStop(ctx context.Context, mgr peer.Manager, id string) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	if err := mgr.Create(ctx, id); err != nil {
		return 0, err
	}
	if err := mgr.Start(ctx, id); err != nil {
		mgr.Delete(ctx, id)
		return 0, err
	}
	time.Sleep(stopSettle)
	began := time.Now()
	err := mgr.Stop(ctx, id)
	took := time.Since(began)
	if derr := mgr.Delete(ctx, id); err == nil {
		err = derr
	}
	return took, err
}
