package bench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/polyvisor/polyvisor/internal/testenv"
	"github.com/polyvisor/polyvisor/pkg/api"
	"github.com/polyvisor/polyvisor/pkg/client"
)

// fixture is one benchmark's daemon, with the busybox template built.
//
// The testing package calls each benchmark function more than once (b.N=1,
// then the requested N), so a fixture outlives a single call: it is kept
// until another benchmark asks for its own, or until TestMain ends. Only
// one exists at a time, so that no idle daemon or guest of one benchmark
// weighs on the next one's numbers.
type fixture struct {
	name   string
	dir    string // temp dir holding the daemon's state and any raw bundles
	daemon *testenv.Daemon
	client *client.Client
	// memo holds what the benchmark set up or measured in its first call,
	// for the next calls to reuse.
	memo any
	// closers undo what a benchmark set up beside the daemon.
	closers []func()
}

// onClose runs fn when the fixture closes, before its daemon goes.
func (f *fixture) onClose(fn func()) { f.closers = append(f.closers, fn) }

var (
	fixtureMu sync.Mutex
	current   *fixture
)

// openFixture returns the fixture of the named benchmark, starting its
// daemon and building busybox on first use.
func openFixture(b *testing.B, name string, extra ...string) *fixture {
	b.Helper()
	return openFixtureWith(b, name, false, extra...)
}

// openNetworkFixture is openFixture with the daemon in a network namespace
// of its own, where its guests join the default network.
func openNetworkFixture(b *testing.B, name string) *fixture {
	b.Helper()
	return openFixtureWith(b, name, true)
}

func openFixtureWith(b *testing.B, name string, netns bool, extra ...string) *fixture {
	b.Helper()
	fixtureMu.Lock()
	defer fixtureMu.Unlock()
	if current != nil && current.name == name {
		return current
	}
	if current != nil {
		current.close()
		current = nil
	}
	f, err := newFixture(name, netns, extra)
	if err != nil {
		b.Fatal(err)
	}
	current = f
	return f
}

// closeFixture tears down the open fixture, if any.
func closeFixture() {
	fixtureMu.Lock()
	defer fixtureMu.Unlock()
	if current != nil {
		current.close()
		current = nil
	}
}

// newFixture starts a fixture's daemon, with extra daemon flags.
func newFixture(name string, netns bool, extra []string) (*fixture, error) {
	dir, err := os.MkdirTemp("", "pv-bench-"+name+"-")
	if err != nil {
		return nil, fmt.Errorf("fixture %s: %w", name, err)
	}
	binDir, err := binaries()
	if err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("fixture %s: %w", name, err)
	}
	var d *testenv.Daemon
	if netns {
		d, err = testenv.StartInNetns(filepath.Join(dir, "daemon"), binDir, fmt.Sprintf("pv-bench-%d", os.Getpid()), extra...)
	} else {
		d, err = testenv.Start(filepath.Join(dir, "daemon"), binDir, append([]string{"--default-network", "none"}, extra...)...)
	}
	if err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("fixture %s: %w", name, err)
	}
	f := &fixture{name: name, dir: dir, daemon: d, client: d.Client()}
	began := time.Now()
	if out, errOut, code := d.Run("template", "build", "busybox"); code != 0 {
		f.close()
		return nil, fmt.Errorf("fixture %s: template build busybox: exit %d: %s%s", name, code, out, errOut)
	}
	fmt.Printf("bench: %s: template build busybox took %s\n", name, time.Since(began).Round(time.Millisecond))
	return f, nil
}

// close deletes every guest and raw container the fixture made, stops its
// daemon and removes its files. Problems are printed, not fatal: the rest
// of the cleanup still has to happen.
func (f *fixture) close() {
	for _, fn := range f.closers {
		fn()
	}
	if err := f.daemon.Destroy(); err != nil {
		fmt.Fprintf(os.Stderr, "bench: %s: destroy daemon: %v\n", f.name, err)
	}
	if err := sweepRaw(f.rawDir()); err != nil {
		fmt.Fprintf(os.Stderr, "bench: %s: sweep raw runc containers: %v\n", f.name, err)
	}
	// Never recurse into a mount that a failed delete left behind.
	if err := unmountUnder(f.dir); err != nil {
		fmt.Fprintf(os.Stderr, "bench: %s: %v\n", f.name, err)
	}
	if err := os.RemoveAll(f.dir); err != nil {
		fmt.Fprintf(os.Stderr, "bench: %s: remove %s: %v\n", f.name, f.dir, err)
	}
}

// rawDir holds the bundles, overlays and runc state of raw runc runs.
func (f *fixture) rawDir() string { return filepath.Join(f.dir, "raw") }

// launch creates and starts a busybox guest through the API and waits
// until its init runs.
func (f *fixture) launch(ctx context.Context, name string) error {
	// No network: these figures are the container class's own; what a
	// network adds is measured apart.
	return f.createGuest(ctx, api.GuestCreate{Name: name, Template: "busybox", Start: true, Networks: []string{"none"}})
}

// createGuest sends a create request and waits for its operation.
func (f *fixture) createGuest(ctx context.Context, req api.GuestCreate) error {
	op, err := f.client.CreateGuest(ctx, req)
	if err == nil {
		err = f.client.Wait(ctx, op, nil)
	}
	if err != nil {
		return fmt.Errorf("create guest %s: %w", req.Name, err)
	}
	return nil
}

// forEach runs fn on every name with a few workers and returns the first
// error; used for bulk setup and teardown.
func forEach(names []string, workers int, fn func(name string) error) error {
	work := make(chan string)
	errs := make(chan error, len(names))
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for name := range work {
				if err := fn(name); err != nil {
					errs <- err
				}
			}
		})
	}
	for _, n := range names {
		work <- n
	}
	close(work)
	wg.Wait()
	close(errs)
	return <-errs // nil when the channel is empty
}

// guestNames returns prefix-000, prefix-001, ... for n guests.
func guestNames(prefix string, n int) []string {
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("%s-%03d", prefix, i)
	}
	return names
}
