package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/polyvisor/polyvisor/internal/testenv"
	"github.com/polyvisor/polyvisor/pkg/api"
)

// listGuests is the size of the listing benchmark.
const listGuests = 1000

// BenchmarkList1000 times listing 1,000 stopped guests: each iteration is
// one client.Guests call (the whole API round trip with the JSON decode,
// on the benchmark's clock), then the summaries `list` asks for by the
// API, `polyvisor list` and `polyvisor list --format json` as a user or
// a script runs them, and a Go hello-world,
// the floor of any Go CLI's start on this machine, in a rotating order.
// The guests are created once, whatever b.N.
//
// No peer lists here: LXC's and podman's 1,000 containers would take
// minutes to make for each run, and the target (p50 <= 30 ms through the
// CLI) is absolute; the hello-world measured beside it says what of the
// CLI's figure is this machine's process start.
func BenchmarkList1000(b *testing.B) {
	requireRoot(b)
	f := openFixture(b, "list1000")
	if f.memo == nil {
		names := guestNames("list", listGuests)
		// Deleted here, four at a time, each in its own time: the
		// daemon's teardown deletes one guest after another within one
		// deadline, which 1,000 overrun on a busy machine.
		f.onClose(func() {
			err := forEach(names, 4, func(name string) error {
				ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
				defer cancel()
				return testenv.DeleteGuest(ctx, f.client, name)
			})
			if err != nil {
				fmt.Fprintf(os.Stderr, "bench: list1000: %v\n", err)
			}
		})
		began := time.Now()
		// Overlay clones cost a few directories and a quota image each;
		// four workers keep the daemon busy without piling up requests.
		err := forEach(names, 4, func(name string) error {
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
	hello, err := helloWorld()
	if err != nil {
		b.Fatal(err)
	}

	var viaAPI, summaries, table, asJSON, floor samples
	runs := []func() error{
		func() error {
			ctx, cancel := context.WithTimeout(b.Context(), opTimeout)
			defer cancel()
			began := time.Now()
			rows, err := f.client.GuestSummaries(ctx)
			summaries = append(summaries, time.Since(began))
			if err == nil && len(rows) != listGuests {
				err = fmt.Errorf("listed %d summaries, want %d", len(rows), listGuests)
			}
			return err
		},
		func() error { return cliList(f.daemon, "table", &table) },
		func() error { return cliList(f.daemon, "json", &asJSON) },
		func() error { return appendTook(&floor, func() error { return runChecked(hello, "hello") }) },
	}
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
		for k := range runs {
			if err := runs[(i+k)%len(runs)](); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportMetric(viaAPI.median(), "api-p50-ms")
	b.ReportMetric(viaAPI.percentile(95), "api-p95-ms")
	b.ReportMetric(summaries.median(), "api-summary-p50-ms")
	b.ReportMetric(table.median(), "cli-table-p50-ms")
	b.ReportMetric(table.percentile(95), "cli-table-p95-ms")
	b.ReportMetric(asJSON.median(), "cli-json-p50-ms")
	b.ReportMetric(asJSON.percentile(95), "cli-json-p95-ms")
	b.ReportMetric(floor.median(), "hello-p50-ms")
	b.Logf("n=%d ms p50/p95: api %.1f/%.1f, api summaries %.1f/%.1f, cli table %.1f/%.1f, cli json %.1f/%.1f, go hello-world %.1f/%.1f (target: cli p50 <= 30)",
		len(viaAPI), viaAPI.median(), viaAPI.percentile(95), summaries.median(), summaries.percentile(95), table.median(), table.percentile(95),
		asJSON.median(), asJSON.percentile(95), floor.median(), floor.percentile(95))
}

// cliList runs `polyvisor list` in format (table or json), adds the time
// it took to took, and then checks that it printed every guest: the
// check's own decode of the JSON is no part of the CLI's time.
func cliList(d *testenv.Daemon, format string, took *samples) error {
	began := time.Now()
	out, errOut, code := d.Run("list", "--format", format)
	*took = append(*took, time.Since(began))
	if code != 0 {
		return fmt.Errorf("polyvisor list --format %s: exit %d: %s", format, code, errOut)
	}
	n := strings.Count(out, "\n") - 1 // the header
	if format == "json" {
		var guests []api.Guest
		if err := json.Unmarshal([]byte(out), &guests); err != nil {
			return fmt.Errorf("decode polyvisor list: %w", err)
		}
		n = len(guests)
	}
	if n != listGuests {
		return fmt.Errorf("polyvisor list --format %s printed %d guests, want %d", format, n, listGuests)
	}
	return nil
}

// BenchmarkCLIStart times the CLI's start-up, which every command pays:
// `polyvisor --help` (parses its arguments, prints, exits; no daemon)
// against a Go hello-world built in the same run, alternating which runs
// first. The difference is what polyvisor's size and initialisation add
// to Go's own process start.
func BenchmarkCLIStart(b *testing.B) {
	bin, err := binaries()
	if err != nil {
		b.Fatal(err)
	}
	hello, err := helloWorld()
	if err != nil {
		b.Fatal(err)
	}
	polyvisor := filepath.Join(bin, "polyvisor")
	var pv, floor samples
	b.ResetTimer()
	b.StopTimer()
	for i := range b.N {
		runPV := func() error {
			b.StartTimer()
			defer b.StopTimer()
			return appendTook(&pv, func() error { return runChecked(polyvisor, "Usage:", "--help") })
		}
		runHello := func() error { return appendTook(&floor, func() error { return runChecked(hello, "hello") }) }
		first, second := runPV, runHello
		if i%2 == 1 {
			first, second = runHello, runPV
		}
		if err := first(); err != nil {
			b.Fatal(err)
		}
		if err := second(); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(pv.median(), "polyvisor-p50-ms")
	b.ReportMetric(pv.percentile(95), "polyvisor-p95-ms")
	b.ReportMetric(floor.median(), "hello-p50-ms")
	b.ReportMetric(pv.median()/floor.median(), "ratio")
	b.Logf("n=%d ms p50/p95: polyvisor --help %.1f/%.1f, go hello-world %.1f/%.1f; polyvisor adds %.1f ms",
		len(pv), pv.median(), pv.percentile(95), floor.median(), floor.percentile(95), pv.median()-floor.median())
}

// appendTook times fn and, when it succeeds, adds its duration to s.
func appendTook(s *samples, fn func() error) error {
	began := time.Now()
	if err := fn(); err != nil {
		return err
	}
	*s = append(*s, time.Since(began))
	return nil
}

// runChecked runs a program to its end and checks that its output holds want.
func runChecked(path, want string, args ...string) error {
	var out bytes.Buffer
	cmd := exec.Command(path, args...)
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s: %w: %s", filepath.Base(path), err, out.String())
	}
	if !strings.Contains(out.String(), want) {
		return fmt.Errorf("%s printed %q, want %q in it", filepath.Base(path), out.String(), want)
	}
	return nil
}

var hello struct {
	once sync.Once
	path string
	err  error
}

// helloWorld builds, once, a Go program that prints hello and exits,
// beside polyvisor's binaries, with the same toolchain.
func helloWorld() (string, error) {
	hello.once.Do(func() {
		if _, hello.err = binaries(); hello.err != nil {
			return
		}
		dir := filepath.Join(built.tmp, "hello")
		if hello.err = os.MkdirAll(dir, 0o755); hello.err != nil {
			return
		}
		src := filepath.Join(dir, "main.go")
		if hello.err = os.WriteFile(src, []byte("package main\n\nimport \"fmt\"\n\nfunc main() { fmt.Println(\"hello\") }\n"), 0o644); hello.err != nil {
			return
		}
		hello.path = filepath.Join(dir, "hello")
		cmd := exec.Command("go", "build", "-o", hello.path, src)
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			hello.err = fmt.Errorf("build a Go hello-world: %w: %s", err, out)
		}
	})
	return hello.path, hello.err
}
