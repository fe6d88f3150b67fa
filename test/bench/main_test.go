package bench

import (
	"fmt"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"testing"

	"github.com/polyvisor/polyvisor/internal/testenv"
)

// skipWhy is set when the benchmarks cannot run here.
var skipWhy string

func TestMain(m *testing.M) {
	os.Exit(benchMain(m))
}

func benchMain(m *testing.M) int {
	if os.Geteuid() != 0 {
		skipWhy = "containers need root (run make bench as root)"
		fmt.Println("bench: skipped:", skipWhy)
		return m.Run()
	}
	// A ^C must not leave containers, mounts and cgroups behind.
	interrupted := make(chan os.Signal, 1)
	signal.Notify(interrupted, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		sig := <-interrupted
		fmt.Fprintf(os.Stderr, "bench: %v: cleaning up\n", sig)
		cleanup()
		os.Exit(1)
	}()
	code := m.Run()
	cleanup()
	return code
}

// cleanup tears down the open fixture and the built binaries.
func cleanup() {
	closeFixture()
	removeBinaries()
}

// requireRoot skips b when the benchmarks cannot run on this host.
func requireRoot(b *testing.B) {
	b.Helper()
	if skipWhy != "" {
		b.Skip("bench: " + skipWhy)
	}
}

// The binaries are built on the first benchmark's demand, not in TestMain,
// so that `go test ./...` (unit tests only) does not pay for a build.
var built struct {
	once   sync.Once
	tmp    string
	binDir string
	err    error
}

// binaries builds polyvisor and polyvisor-monitor once and returns their
// directory.
func binaries() (string, error) {
	built.once.Do(func() {
		built.tmp, built.err = os.MkdirTemp("", "pv-bench-bin-")
		if built.err != nil {
			built.err = fmt.Errorf("build binaries: %w", built.err)
			return
		}
		built.binDir, built.err = testenv.BuildBinaries(testenv.RepoRoot(), built.tmp)
	})
	return built.binDir, built.err
}

func removeBinaries() {
	if built.tmp != "" {
		os.RemoveAll(built.tmp)
	}
}
