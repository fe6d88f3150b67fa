package monitor

import (
	"strconv"
	"testing"
)

// FuzzParseReady checks that any line either parses to a positive pid
// that reads back as the same "ok" line, or is an error.
func FuzzParseReady(f *testing.F) {
	for _, seed := range []string{"ok 1\n", "error runc run: failed\n", "ok -5", "ok 99999999999999999999", ""} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, line string) {
		pid, err := ParseReady(line)
		if err != nil {
			return
		}
		if pid <= 0 {
			t.Fatalf("%q parsed to pid %d", line, pid)
		}
		if again, err := ParseReady("ok " + strconv.Itoa(pid)); err != nil || again != pid {
			t.Fatalf("pid %d does not round-trip: %d %v", pid, again, err)
		}
	})
}
