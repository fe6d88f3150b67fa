package cli

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
)

// TestZeroCountsAreRefused: an explicit 0 is refused on the spot, naming
// the flag and the fix, instead of being taken for "the default" (the
// request cannot tell them apart). No daemon listens: nothing is sent.
func TestZeroCountsAreRefused(t *testing.T) {
	socket := filepath.Join(t.TempDir(), "none.sock")
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"launch", "busybox", "web", "--cpus", "0"}, "--cpus 0: give at least 1 CPU"},
		{[]string{"create", "busybox", "web", "--cpus", "-2"}, "--cpus -2: give at least 1 CPU"},
		{[]string{"launch", "busybox", "web", "--processes", "0"}, "--processes 0: give at least 1 process"},
		{[]string{"import", "disk.qcow2", "--cpus", "0"}, "--cpus 0: give at least 1 CPU"},
	} {
		root := NewRoot()
		root.SetArgs(append(c.args, "--socket", socket))
		err := root.ExecuteContext(context.Background())
		if err == nil || !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: err = %v, want one line saying %q", strings.Join(c.args, " "), err, c.want)
		}
	}
}

// TestBadDiskQuotaIsRefused: --disk takes a size of 16MiB to 64TiB or
// none; anything else is refused before any request, in one line naming
// --disk. No daemon listens: nothing is sent.
func TestBadDiskQuotaIsRefused(t *testing.T) {
	socket := filepath.Join(t.TempDir(), "none.sock")
	for value, want := range map[string]string{
		"0":     "--disk 0: give at least 16MiB",
		"-1GiB": `--disk: "-1GiB" is not a size`,
		"65TiB": "--disk 65TiB: use at most 64TiB",
		"lots":  `--disk: "lots" is not a size`,
	} {
		for _, verb := range []string{"launch", "create"} {
			root := NewRoot()
			root.SetArgs([]string{verb, "busybox", "web", "--disk", value, "--socket", socket})
			err := root.ExecuteContext(context.Background())
			if err == nil || !strings.Contains(err.Error(), want) || strings.Contains(err.Error(), "\n") {
				t.Errorf("%s --disk %s: err = %v, want one line saying %q", verb, value, err, want)
			}
		}
	}
}
