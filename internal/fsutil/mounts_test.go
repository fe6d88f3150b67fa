package fsutil

import (
	"slices"
	"testing"
)

func TestUnescapeMount(t *testing.T) {
	for in, want := range map[string]string{
		`/plain`:            "/plain",
		`/with\040space`:    "/with space",
		`/tab\011and\134bs`: "/tab\tand\\bs",
		`/x\134y`:           `/x\y`,
		`/short\04`:         `/short\04`,
	} {
		if got := unescapeMount(in); got != want {
			t.Errorf("unescapeMount(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestMountPointsListsTheRoot(t *testing.T) {
	points, err := MountPoints()
	if err != nil || !slices.Contains(points, "/") {
		t.Fatalf("MountPoints = %q, %v; want / among them", points, err)
	}
	under, err := MountsUnder("/proc")
	if err != nil || !slices.Contains(under, "/proc") || slices.Contains(under, "/") {
		t.Errorf("MountsUnder(/proc) = %q, %v", under, err)
	}
}
