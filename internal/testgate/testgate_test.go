package testgate

import (
	"os"
	"strings"
	"testing"
)

// TestGatesSkipUnderShort runs each gate in a subtest and checks that it
// skips exactly when it must: both under -short, RequireRoot also when
// not root, with the reason given.
func TestGatesSkipUnderShort(t *testing.T) {
	var rootRan, longRan bool
	t.Run("root", func(t *testing.T) { RequireRoot(t, "mounts need root"); rootRan = true })
	t.Run("long", func(t *testing.T) { RequireLong(t, "runs a real runtime"); longRan = true })
	if want := !testing.Short() && os.Geteuid() == 0; rootRan != want {
		t.Errorf("RequireRoot let the test run: %v, want %v", rootRan, want)
	}
	if want := !testing.Short(); longRan != want {
		t.Errorf("RequireLong let the test run: %v, want %v", longRan, want)
	}
	why := RootSkip("mounts need root")
	if rootRan != (why == "") || (why != "" && !strings.HasPrefix(why, "mounts need root")) {
		t.Errorf("RootSkip = %q while RequireRoot let the test run: %v", why, rootRan)
	}
}
