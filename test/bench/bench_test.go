package bench

import (
	"context"
	"encoding/json"
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
