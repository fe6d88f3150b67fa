package testgate

import (
	"os"
	"testing"
)

// TestGatesSkipUnderShort runs each gate in a subtest and checks that it
// skips exactly when it must: both under -short, RequireRoot also when
// not root.
func TestGatesSkipUnderShort(t *testing.T) {
	var rootRan, longRan bool
	t.Run("root", func(t *testing.T) { RequireRoot(t); rootRan = true })
	t.Run("long", func(t *testing.T) { RequireLong(t, "runs a real runtime"); longRan = true })
	if want := !testing.Short() && os.Geteuid() == 0; rootRan != want {
		t.Errorf("RequireRoot let the test run: %v, want %v", rootRan, want)
	}
	if want := !testing.Short(); longRan != want {
		t.Errorf("RequireLong let the test run: %v, want %v", longRan, want)
	}
}
