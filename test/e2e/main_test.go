// Package e2e drives the real polyvisor binaries (daemon, CLI, monitor)
// against real runc, busybox-static and debootstrap, as a user would.
// Templates are built once per run and shared by every test.
package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/polyvisor/polyvisor/internal/testenv"
	"github.com/polyvisor/polyvisor/pkg/api"
)

// env is the shared fixture: binaries, one daemon, built templates.
var env struct {
	bin     string // directory holding polyvisor and polyvisor-monitor
	main    *testenv.Daemon
	skipWhy string
}

func TestMain(m *testing.M) {
	code, err := setup(m)
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e setup:", err)
		code = 1
	}
	os.Exit(code)
}

func setup(m *testing.M) (int, error) {
	if os.Geteuid() != 0 {
		fmt.Println("e2e: skipped: containers need root (run make test as root)")
		env.skipWhy = "needs root"
		return m.Run(), nil
	}
	tmp, err := os.MkdirTemp("", "pv-e2e-")
	if err != nil {
		return 1, err
	}
	defer os.RemoveAll(tmp)
	if env.bin, err = testenv.BuildBinaries(testenv.RepoRoot(), tmp); err != nil {
		return 1, err
	}
	// Guests join no network unless a test says so: networks are tested by
	// daemons inside namespaces of their own (netnsDaemon), so that no
	// bridge, dnsmasq or NAT rule of a test reaches the host's namespace.
	// This daemon stays in the host's to fetch packages for templates.
	if env.main, err = testenv.Start(filepath.Join(tmp, "main"), env.bin, "--default-network", "none"); err != nil {
		return 1, err
	}
	defer env.main.Destroy()
	for _, args := range [][]string{{"template", "build", "busybox"}, {"template", "build", "debian:bookworm", "--name", "debian"}} {
		began := time.Now()
		if out, errOut, code := env.main.Run(args...); code != 0 {
			return 1, fmt.Errorf("%v: %s%s", args, out, errOut)
		}
		fmt.Printf("e2e: %s took %s\n", strings.Join(args, " "), time.Since(began).Round(time.Millisecond))
	}
	return m.Run(), nil
}

func info(t *testing.T, d *testenv.Daemon, name string) api.Guest {
	t.Helper()
	var g api.Guest
	if err := json.Unmarshal([]byte(d.Must(t, "info", name, "--format", "json")), &g); err != nil {
		t.Fatal(err)
	}
	return g
}

// launch starts a guest and deletes it when the test ends.
func launch(t *testing.T, d *testenv.Daemon, template, name string, flags ...string) api.Guest {
	t.Helper()
	d.Must(t, append([]string{"launch", template, name}, flags...)...)
	t.Cleanup(func() { d.Run("delete", "--force", name) })
	return info(t, d, name)
}

func requireRoot(t *testing.T) {
	t.Helper()
	if env.skipWhy != "" {
		t.Skip("e2e: " + env.skipWhy)
	}
}

// ownDaemon starts a daemon of the test's own, with the busybox template
// built, for tests that kill, restart or misconfigure it; it is destroyed
// when the test ends.
func ownDaemon(t *testing.T, extra ...string) *testenv.Daemon {
	t.Helper()
	d, err := testenv.Start(t.TempDir(), env.bin, append([]string{"--default-network", "none"}, extra...)...)
	if err != nil {
		t.Fatal(err)
	}
	// A test may leave a guest it broke on purpose: what Destroy cannot
	// delete is logged, and the temp dir goes anyway.
	t.Cleanup(func() {
		if err := d.Destroy(); err != nil {
			t.Logf("destroy the test's daemon: %v", err)
		}
	})
	d.Must(t, "template", "build", "busybox")
	return d
}
