package peer

import (
	"fmt"
	"os"
	"testing"
)

// TestMain fails the package when its tests changed the mode of the
// host's temp dir: one once made /tmp 0711 to make a tree of its own
// searchable, and apt's sandboxed user could then not write its temp
// files there (every later apt-get update failed).
func TestMain(m *testing.M) {
	tmp := os.TempDir()
	before, err := os.Stat(tmp)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	after, err := os.Stat(tmp)
	if err != nil || after.Mode() != before.Mode() {
		fmt.Fprintf(os.Stderr, "the tests changed %s from %v to %v (%v): restore it with chmod\n", tmp, before.Mode(), after.Mode(), err)
		code = 1
	}
	os.Exit(code)
}
