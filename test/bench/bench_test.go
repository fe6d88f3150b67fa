package bench

import (
	"context"
	"fmt"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/polyvisor/polyvisor/internal/testenv"
	"github.com/polyvisor/polyvisor/pkg/api"
)

// opTimeout bounds one API operation; it only catches a hang.
const opTimeout = 2 * time.Minute

// launchMemo carries BenchmarkLaunch's state across its calls.
type launchMemo struct {
	spec  *specs.Spec // config.json of the first guest polyvisor launched
	lower string      // the template's root tree, which the raw run mounts under its overlay
	seq   int         // guest and raw container names stay unique across calls
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
		if memo.spec == nil {
			g, err := f.client.Guest(ctx, name)
			if err == nil {
				memo.spec, err = specOf(g)
			}
			if err == nil {
				memo.lower, err = f.templateRootfs(ctx, "busybox")
			}
			if err != nil {
				b.Fatal(err)
			}
		}
		if err := testenv.DeleteGuest(ctx, f.client, name); err != nil {
			b.Fatal(err)
		}
	}
	launchRaw := func(id string) {
		r, err := prepareRaw(f.rawDir(), memo.spec, memo.lower, id)
		if err != nil {
			b.Fatal(err)
		}
		took, err := r.Run()
		if rerr := r.Remove(); err == nil && rerr != nil {
			err = rerr
		}
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
		// The raw run needs the spec of a polyvisor guest to copy.
		if i%2 == 0 || memo.spec == nil {
			launchPolyvisor(name)
			launchRaw(name)
		} else {
			launchRaw(name)
			launchPolyvisor(name)
		}
	}
	ratio := pv.median() / raw.median()
	b.ReportMetric(pv.median(), "polyvisor-ms/op")
	b.ReportMetric(raw.median(), "runc-ms/op")
	b.ReportMetric(ratio, "ratio")
	b.Logf("n=%d polyvisor ms: min %.1f p50 %.1f p90 %.1f max %.1f; runc ms: min %.1f p50 %.1f p90 %.1f max %.1f; ratio %.2f (target <= 1.5)",
		len(pv), pv.percentile(0), pv.median(), pv.percentile(90), pv.percentile(100),
		raw.percentile(0), raw.median(), raw.percentile(90), raw.percentile(100), ratio)
}

// Sizes of the idle memory benchmark.
const (
	idleGuests = 50
	idleSettle = 2 * time.Second
)

// idleMemory is what BenchmarkIdleMemory50 measured, in KiB of PSS.
type idleMemory struct {
	monitors     int64 // all monitors together
	inits        int64 // all containers' init processes together, for scale
	daemonBefore int64
	daemonAfter  int64
}

// BenchmarkIdleMemory50 measures what polyvisor itself costs in memory per
// idle container: the PSS of each guest's monitor process, plus the
// daemon's growth. It launches 50 busybox containers with default limits
// once, whatever b.N, and deletes them after measuring.
func BenchmarkIdleMemory50(b *testing.B) {
	requireRoot(b)
	f := openFixture(b, "idlememory50")
	m, _ := f.memo.(*idleMemory)
	if m == nil {
		var err error
		if m, err = measureIdleMemory(b, f); err != nil {
			b.Fatal(err)
		}
		f.memo = m
		b.Logf("%d idle guests: monitors %d KiB PSS in all, container inits %d KiB; daemon %d -> %d KiB",
			idleGuests, m.monitors, m.inits, m.daemonBefore, m.daemonAfter)
	}
	for range b.N {
		// Nothing to repeat: the measurement is of a steady state.
	}
	perMonitor := float64(m.monitors) / idleGuests
	perDaemon := float64(m.daemonAfter-m.daemonBefore) / idleGuests
	b.ReportMetric(0, "ns/op")
	b.ReportMetric(perMonitor, "pss-kib-per-guest")
	b.ReportMetric(perDaemon, "daemon-kib-per-guest")
	b.ReportMetric(perMonitor+perDaemon, "polyvisor-kib-per-guest")
}

func measureIdleMemory(b *testing.B, f *fixture) (*idleMemory, error) {
	m := &idleMemory{}
	var err error
	if m.daemonBefore, err = pssKiB(f.daemon.PID()); err != nil {
		return nil, err
	}
	names := guestNames("idle", idleGuests)
	// One at a time, as guests usually arrive, so that the daemon's growth
	// is its steady state rather than the peak of a burst.
	for _, name := range names {
		ctx, cancel := context.WithTimeout(b.Context(), opTimeout)
		err := f.launch(ctx, name)
		cancel()
		if err != nil {
			return nil, err
		}
	}
	time.Sleep(idleSettle)
	ctx, cancel := context.WithTimeout(b.Context(), opTimeout)
	defer cancel()
	guests, err := f.client.Guests(ctx)
	if err != nil {
		return nil, fmt.Errorf("list idle guests: %w", err)
	}
	if len(guests) != idleGuests {
		return nil, fmt.Errorf("listed %d guests, want %d", len(guests), idleGuests)
	}
	for _, g := range guests {
		if g.State != api.StateRunning || g.MonitorPID == 0 {
			return nil, fmt.Errorf("guest %s is %s with monitor pid %d", g.Name, g.State, g.MonitorPID)
		}
		monitor, err := pssKiB(g.MonitorPID)
		if err != nil {
			return nil, fmt.Errorf("guest %s monitor: %w", g.Name, err)
		}
		init, err := pssKiB(g.PID)
		if err != nil {
			return nil, fmt.Errorf("guest %s init: %w", g.Name, err)
		}
		m.monitors += monitor
		m.inits += init
	}
	if m.daemonAfter, err = pssKiB(f.daemon.PID()); err != nil {
		return nil, err
	}
	err = forEach(names, 4, func(name string) error {
		ctx, cancel := context.WithTimeout(b.Context(), opTimeout)
		defer cancel()
		return testenv.DeleteGuest(ctx, f.client, name)
	})
	if err != nil {
		return nil, fmt.Errorf("delete idle guests: %w", err)
	}
	return m, nil
}
