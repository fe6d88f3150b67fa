// Package testgate holds the gates tests pass before they touch the host:
// each skips the test with the reason printed, so that a skip is never
// silent. It imports nothing of polyvisor's, so any package's tests can use
// it.
//
// Tests that need root (mounts, cgroups, namespaces, network devices,
// runc, root-owned trees) call RequireRoot; tests that need no root but
// run real runtimes or take long call RequireLong; a TestMain that sets up
// root-only fixtures for the whole package asks RootSkip. All of them skip
// under `go test -short`, which is what `make unit` runs: the daemon's own
// logic and every parser, in seconds, as any user. `make test` runs
// without -short, as root, and so runs them all.
package testgate

import (
	"flag"
	"os"
	"testing"
)

// shortSkip is how a gate words a skip under -short.
const shortSkip = ": skipped by -short (make unit); make test runs it"

// RequireRoot skips t under -short (make unit) and when not run as root;
// why says what needs root ("idmapped mounts need root").
func RequireRoot(t testing.TB, why string) {
	t.Helper()
	if reason := RootSkip(why); reason != "" {
		t.Skip(reason)
	}
}

// RequireLong skips t under -short (make unit); why says what the test
// runs that makes it more than a unit test (a real runtime, a long wait).
func RequireLong(t testing.TB, why string) {
	t.Helper()
	if testing.Short() {
		t.Skip(why + shortSkip)
	}
}

// RootSkip returns why tests that need root must be skipped (under -short,
// or when not root), "" when they can run. A TestMain calls it before
// m.Run to skip its package's root-only setup.
func RootSkip(why string) string {
	if !flag.Parsed() {
		flag.Parse() // testing.Short needs the test flags parsed
	}
	switch {
	case testing.Short():
		return why + shortSkip
	case os.Geteuid() != 0:
		return why + " (make test runs as root)"
	}
	return ""
}
