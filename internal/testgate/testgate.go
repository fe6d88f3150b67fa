// Package testgate holds the gates tests pass before they touch the host:
// each skips the test with the reason printed, so that a skip is never
// silent. It imports nothing of polyvisor's, so any package's tests can use
// it.
//
// Two kinds of tests meet these gates. Tests that need root (mounts,
// cgroups, namespaces, network devices, runc, QEMU's tools on root-owned
// trees) call RequireRoot. Tests that need no root but run real runtimes or
// take long call RequireLong. Both skip under `go test -short`, which is
// what `make unit` runs: the daemon's own logic and every parser, in
// seconds, as any user. `make test` runs without -short, as root, and so
// runs them all.
package testgate

import (
	"os"
	"testing"
)

// RequireRoot skips t under -short (make unit) and when not run as root.
func RequireRoot(t testing.TB) {
	t.Helper()
	if testing.Short() {
		t.Skip("needs root and the host's runtimes: skipped by -short (make unit); make test runs it")
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root (make test runs as root)")
	}
}

// RequireLong skips t under -short (make unit); why says what the test
// runs that makes it more than a unit test (a real runtime, a long wait).
func RequireLong(t testing.TB, why string) {
	t.Helper()
	if testing.Short() {
		t.Skip(why + ": skipped by -short (make unit); make test runs it")
	}
}
