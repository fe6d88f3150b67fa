package bench

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/polyvisor/polyvisor/internal/evaluation/peer"
	"github.com/polyvisor/polyvisor/internal/idmap"
	"github.com/polyvisor/polyvisor/internal/testenv"
)

// launchMemo carries BenchmarkLaunch's state across its calls.
type launchMemo struct {
	rawBundle
	seq int // guest and raw container names stay unique across calls
}

// rawBundle is what a raw runc run of a polyvisor guest's bundle needs:
// the peer that says what the OCI runtime alone costs.
type rawBundle struct {
	spec  *specs.Spec // config.json of the first guest polyvisor launched
	lower string      // the template's root tree, which the raw run mounts under its overlay
}

// learn keeps the spec of guest name, the first time only.
func (r *rawBundle) learn(ctx context.Context, f *fixture, name string) error {
	if r.spec != nil {
		return nil
	}
	g, err := f.client.Guest(ctx, name)
	if err == nil {
		r.spec, err = f.specOf(g)
	}
	if err == nil {
		r.lower, err = f.templateRootfs(ctx, "busybox")
	}
	return err
}

// run times runc run -d of the learnt bundle as container id, then
// removes it, untimed.
func (r *rawBundle) run(f *fixture, id string) (time.Duration, error) {
	c, err := prepareRaw(f.rawDir(), r.spec, r.lower, id)
	if err != nil {
		return 0, err
	}
	took, err := c.Run()
	if rerr := c.Remove(); err == nil && rerr != nil {
		err = rerr
	}
	return took, err
}

// BenchmarkLaunch compares the latency of launching a busybox container
// through the API (create + start until init runs) with runc run -d of the
// same OCI spec. Each iteration does both, alternating which goes first so
// that neither always runs on the caches the other warmed.
func BenchmarkLaunch(b *testing.B) {
	requireRoot(b)
	f := openFixture(b, "launch")
	memo, _ := f.memo.(*launchMemo)
	if memo == nil {
		memo = &launchMemo{}
		f.memo = memo
	}
	var pv, raw samples
	launchPolyvisor := func(name string) {
		ctx, cancel := context.WithTimeout(b.Context(), opTimeout)
		defer cancel()
		b.StartTimer()
		began := time.Now()
		err := f.launch(ctx, name)
		took := time.Since(began)
		b.StopTimer()
		if err != nil {
			b.Fatal(err)
		}
		pv = append(pv, took)
		if err := memo.learn(ctx, f, name); err != nil {
			b.Fatal(err)
		}
		if err := testenv.DeleteGuest(ctx, f.client, name); err != nil {
			b.Fatal(err)
		}
	}
	launchRaw := func(id string) {
		took, err := memo.run(f, id)
		if err != nil {
			b.Fatal(err)
		}
		raw = append(raw, took)
	}

	b.ResetTimer()
	b.StopTimer() // only polyvisor's launch runs on the benchmark's clock
	for i := range b.N {
		memo.seq++
		name := fmt.Sprintf("launch-%03d", memo.seq)
		turn := i
		if memo.spec == nil {
			turn = 0 // the raw run needs the spec of a polyvisor guest to copy
		}
		inTurns(turn, func() { launchPolyvisor(name) }, func() { launchRaw(name) })
	}
	ratio := reportRatio(b, pv, "polyvisor-ms/op", raw, "runc-ms/op")
	b.Logf("n=%d polyvisor ms: min %.1f p50 %.1f p90 %.1f max %.1f; runc ms: min %.1f p50 %.1f p90 %.1f max %.1f; ratio %.2f (target <= 1.1)",
		len(pv), pv.percentile(0), pv.median(), pv.percentile(90), pv.percentile(100),
		raw.percentile(0), raw.median(), raw.percentile(90), raw.percentile(100), ratio)
}

// lxcPeer is LXC beside a fixture's daemon, on a copy of the fixture's
// busybox template: the peer of the CLI launch benchmarks.
type lxcPeer struct {
	mgr  *peer.LXC
	path string // LXC's lxcpath, for lxc-stop -k
}

// openLXC sets LXC up once per fixture; the fixture's close removes its
// containers, cgroups and files. The benchmark is skipped, with the
// reason, where LXC is not installed.
func openLXC(b *testing.B, f *fixture) *lxcPeer {
	b.Helper()
	if err := peer.Installed("lxc"); err != nil {
		b.Skipf("bench: LXC cannot run here: %v", err)
	}
	ctx, cancel := context.WithTimeout(b.Context(), opTimeout)
	defer cancel()
	template, err := f.templateRootfs(ctx, "busybox")
	if err != nil {
		b.Fatal(err)
	}
	// The container's unprivileged root must reach the tree and its upper
	// dir: the fixture's temp dir (0700) is not searchable, /var/tmp is.
	dir, err := os.MkdirTemp("/var/tmp", "pv-bench-lxc-")
	if err != nil {
		b.Fatal(err)
	}
	p := &lxcPeer{mgr: &peer.LXC{}}
	env := peer.Env{Dir: filepath.Join(dir, "peer"), RootFS: filepath.Join(dir, "rootfs"), CPUs: 1, MemoryMiB: 256}
	p.path = filepath.Join(env.Dir, "lxc")
	f.onClose(func() {
		cctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		if err := p.mgr.Close(cctx); err != nil {
			fmt.Fprintf(os.Stderr, "bench: %s: close LXC: %v\n", f.name, err)
		}
		os.RemoveAll(dir)
	})
	err = os.Chmod(dir, 0o711)
	if err == nil {
		err = os.Mkdir(env.Dir, 0o711)
	}
	if err == nil {
		// The template is owned by the shared id map already, as LXC's
		// containers map ids: a plain copy.
		err = idmap.CopyTree(ctx, template, env.RootFS, nil)
	}
	if err == nil {
		err = p.mgr.Setup(ctx, env)
	}
	if err != nil {
		b.Fatalf("set up LXC: %v", err)
	}
	return p
}

// launch is what a user of LXC does to get a running container from the
// same tree: LXC.Create (config, overlay upper dir) and LXC.Start
// (lxc-start -d, then lxc-attach until a command runs).
func (p *lxcPeer) launch(ctx context.Context, id string) error {
	if err := p.mgr.Create(ctx, id); err != nil {
		return err
	}
	return p.mgr.Start(ctx, id)
}

// remove kills container id at once (LXC.Stop waits seconds for busybox
// init) and destroys it.
func (p *lxcPeer) remove(ctx context.Context, id string) error {
	// A container that is not running makes lxc-stop fail: Delete says
	// whether anything is wrong.
	exec.CommandContext(ctx, "lxc-stop", "-P", p.path, "-n", id, "-k").Run()
	return p.mgr.Delete(ctx, id)
}

// cliLaunch runs `polyvisor launch busybox NAME`, as a user would; it
// returns once the guest's init runs.
func cliLaunch(d *testenv.Daemon, name string) error {
	out, errOut, code := d.Run("launch", "busybox", name)
	if code != 0 {
		return fmt.Errorf("polyvisor launch busybox %s: exit %d: %s%s", name, code, out, errOut)
	}
	return nil
}

// launchVsLXCMemo carries the LXC peer, the raw runtime's bundle and a
// name counter across calls.
type launchVsLXCMemo struct {
	lxc *lxcPeer
	raw rawBundle
	seq int
}

// lxcMemo is the fixture's LXC peer, opened on the first benchmark that
// asks for it.
func lxcMemo(b *testing.B, f *fixture) *launchVsLXCMemo {
	memo, _ := f.memo.(*launchVsLXCMemo)
	if memo == nil {
		memo = &launchVsLXCMemo{lxc: openLXC(b, f)}
		f.memo = memo
	}
	return memo
}

// BenchmarkLaunchCLIvsLXC times `polyvisor launch busybox NAME` (the CLI
// process, the API round trip, create and start until init runs; the
// fixture's daemon gives guests no network) against LXC's create and
// start of a container on an overlay of the same tree, until lxc-attach
// runs a command in it. A third side, raw `runc run -d` of polyvisor's
// own bundle (mounts made untimed beforehand), says what the OCI runtime
// alone costs beside LXC: the floor of any launch through it. The sides
// take turns at going first; deleting any is untimed, so each iteration
// starts with no guest running.
func BenchmarkLaunchCLIvsLXC(b *testing.B) {
	requireRoot(b)
	f := openFixture(b, "launchcli")
	memo := lxcMemo(b, f)
	var pv, lxc, raw samples
	runPV := func(name string) {
		b.StartTimer()
		began := time.Now()
		err := cliLaunch(f.daemon, name)
		pv = append(pv, time.Since(began))
		b.StopTimer()
		if err != nil {
			b.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(b.Context(), opTimeout)
		defer cancel()
		if err := memo.raw.learn(ctx, f, name); err != nil {
			b.Fatal(err)
		}
		if err := testenv.DeleteGuest(ctx, f.client, name); err != nil {
			b.Fatal(err)
		}
	}
	runRaw := func(id string) {
		if memo.raw.spec == nil {
			return // learnt from polyvisor's first guest, which comes first
		}
		took, err := memo.raw.run(f, id)
		if err != nil {
			b.Fatal(err)
		}
		raw = append(raw, took)
	}
	runLXC := func(id string) {
		ctx, cancel := context.WithTimeout(b.Context(), opTimeout)
		defer cancel()
		began := time.Now()
		err := memo.lxc.launch(ctx, id)
		lxc = append(lxc, time.Since(began))
		if rerr := memo.lxc.remove(ctx, id); err == nil {
			err = rerr
		}
		if err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	b.StopTimer() // the clock runs for polyvisor's launches only
	for i := range b.N {
		memo.seq++
		name := fmt.Sprintf("cli-%03d", memo.seq)
		sides := []func(){func() { runPV(name) }, func() { runLXC(name) }, func() { runRaw(name) }}
		for k := range sides {
			sides[(i+k)%len(sides)]()
		}
	}
	ratio := reportRatio(b, pv, "polyvisor-ms/op", lxc, "lxc-ms/op")
	b.ReportMetric(raw.median(), "runc-ms/op")
	b.ReportMetric(raw.median()/lxc.median(), "runc-vs-lxc")
	b.Logf("n=%d polyvisor CLI ms: min %.1f p50 %.1f p90 %.1f max %.1f; LXC create+start ms: min %.1f p50 %.1f p90 %.1f max %.1f; ratio %.2f (target <= 1.0); raw runc run -d of polyvisor's bundle (n=%d) ms: p50 %.1f, %.2f x LXC",
		len(pv), pv.percentile(0), pv.median(), pv.percentile(90), pv.percentile(100),
		lxc.percentile(0), lxc.median(), lxc.percentile(90), lxc.percentile(100), ratio,
		len(raw), raw.median(), raw.median()/lxc.median())
}

// Sizes of the parallel launch benchmark.
const (
	parallelGuests  = 100
	parallelClients = 10
	// parallelTimeout bounds one round of launches or its cleanup; it
	// only catches a hang.
	parallelTimeout = 10 * time.Minute
)

// BenchmarkLaunchParallel100 times how long 10 clients, each launching one
// guest after another, take to have 100 busybox containers running:
// polyvisor through its CLI, against LXC's create and start of the same
// number on the same tree. The two alternate which goes first; each
// round's guests are removed, untimed, before the next round.
func BenchmarkLaunchParallel100(b *testing.B) {
	requireRoot(b)
	f := openFixture(b, "launchparallel")
	memo := lxcMemo(b, f)
	var pv, lxc samples
	// round launches every name with parallelClients workers and returns
	// the wall time until the last one runs, then removes them all; with
	// timed, the launches run on the benchmark's clock.
	round := func(names []string, timed bool, launch, remove func(ctx context.Context, name string) error) time.Duration {
		ctx, cancel := context.WithTimeout(b.Context(), parallelTimeout)
		defer cancel()
		if timed {
			b.StartTimer()
		}
		began := time.Now()
		err := forEach(names, parallelClients, func(name string) error { return launch(ctx, name) })
		took := time.Since(began)
		if timed {
			b.StopTimer()
		}
		if rerr := forEach(names, 4, func(name string) error { return remove(ctx, name) }); err == nil {
			err = rerr
		}
		if err != nil {
			b.Fatal(err)
		}
		return took
	}
	runPV := func(names []string) {
		pv = append(pv, round(names, true,
			func(ctx context.Context, name string) error { return cliLaunch(f.daemon, name) },
			func(ctx context.Context, name string) error { return testenv.DeleteGuest(ctx, f.client, name) }))
	}
	runLXC := func(names []string) {
		lxc = append(lxc, round(names, false, memo.lxc.launch, memo.lxc.remove))
	}
	b.ResetTimer()
	b.StopTimer()
	for i := range b.N {
		memo.seq++
		names := guestNames(fmt.Sprintf("par%d", memo.seq), parallelGuests)
		inTurns(i, func() { runPV(names) }, func() { runLXC(names) })
	}
	ratio := reportRatio(b, pv, "polyvisor-ms/op", lxc, "lxc-ms/op")
	b.Logf("n=%d rounds of %d launches by %d clients: polyvisor s: %s; LXC s: %s; ratio of medians %.2f (target <= 1.0)",
		len(pv), parallelGuests, parallelClients, secondsOf(pv), secondsOf(lxc), ratio)
}

// secondsOf lists round times in seconds, for the log.
func secondsOf(s samples) string {
	var out []byte
	for i, d := range s {
		if i > 0 {
			out = append(out, ' ')
		}
		out = fmt.Appendf(out, "%.2f", d.Seconds())
	}
	return string(out)
}
