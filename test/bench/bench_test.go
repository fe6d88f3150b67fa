package bench

import (
	"context"
	"fmt"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/polyvisor/polyvisor/internal/testenv"
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
