package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/polyvisor/polyvisor/internal/testenv"
	"github.com/polyvisor/polyvisor/pkg/api"
)

// opTimeout bounds one API operation; it only catches a hang.
const opTimeout = 2 * time.Minute

// Sizes of the listing benchmark.
const (
	listGuests = 500
	// cliEvery: the CLI, a process start per call, is timed once per this
	// many iterations.
	cliEvery = 2
)

// BenchmarkList500 times listing 500 (stopped) guests: each iteration is
// one client.Guests call, the whole API round trip with the JSON decode;
// every cliEvery-th iteration also times `polyvisor list --format json`.
// The 500 guests are created once, whatever b.N.
func BenchmarkList500(b *testing.B) {
	requireRoot(b)
	f := openFixture(b, "list500")
	if f.memo == nil {
		began := time.Now()
		// Overlay clones cost a few directories each; four workers keep the
		// daemon busy without piling up requests.
		err := forEach(guestNames("list", listGuests), 4, func(name string) error {
			ctx, cancel := context.WithTimeout(b.Context(), opTimeout)
			defer cancel()
			return f.createGuest(ctx, api.GuestCreate{Name: name, Template: "busybox", Networks: []string{"none"}})
		})
		if err != nil {
			b.Fatal(err)
		}
		took := time.Since(began)
		b.Logf("created %d guests in %s (%.1f ms each, 4 at a time)", listGuests, took.Round(time.Millisecond), ms(took)/listGuests)
		f.memo = true
	}

	var viaAPI, viaCLI samples
	b.ResetTimer()
	b.StopTimer() // only the API call runs on the benchmark's clock
	for i := range b.N {
		ctx, cancel := context.WithTimeout(b.Context(), opTimeout)
		b.StartTimer()
		began := time.Now()
		guests, err := f.client.Guests(ctx)
		took := time.Since(began)
		b.StopTimer()
		cancel()
		if err != nil {
			b.Fatal(err)
		}
		if len(guests) != listGuests {
			b.Fatalf("listed %d guests, want %d", len(guests), listGuests)
		}
		viaAPI = append(viaAPI, took)
		if i%cliEvery == 0 {
			took, err := timeCLIList(f.daemon)
			if err != nil {
				b.Fatal(err)
			}
			viaCLI = append(viaCLI, took)
		}
	}
	b.ReportMetric(viaAPI.median(), "api-p50-ms")
	b.ReportMetric(viaAPI.percentile(95), "api-p95-ms")
	b.ReportMetric(viaCLI.median(), "cli-p50-ms")
	b.ReportMetric(viaCLI.percentile(95), "cli-p95-ms")
	b.Logf("n=%d api ms: min %.1f p50 %.1f p95 %.1f max %.1f; n=%d cli ms: min %.1f p50 %.1f p95 %.1f max %.1f (target p50 < 50)",
		len(viaAPI), viaAPI.percentile(0), viaAPI.median(), viaAPI.percentile(95), viaAPI.percentile(100),
		len(viaCLI), viaCLI.percentile(0), viaCLI.median(), viaCLI.percentile(95), viaCLI.percentile(100))
}

// timeCLIList times `polyvisor list --format json` and checks its output.
func timeCLIList(d *testenv.Daemon) (time.Duration, error) {
	began := time.Now()
	out, errOut, code := d.Run("list", "--format", "json")
	took := time.Since(began)
	if code != 0 {
		return 0, fmt.Errorf("polyvisor list: exit %d: %s", code, errOut)
	}
	var guests []api.Guest
	if err := json.Unmarshal([]byte(out), &guests); err != nil {
		return 0, fmt.Errorf("decode polyvisor list: %w", err)
	}
	if len(guests) != listGuests {
		return 0, fmt.Errorf("polyvisor list printed %d guests, want %d", len(guests), listGuests)
	}
	return took, nil
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
