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

// FuzzParseMappingHeader checks that no smaps line makes the parser panic
// or produce an empty or inverted range.
func FuzzParseMappingHeader(f *testing.F) {
	f.Add("00400000-00513000 r-xp 00000000 fd:01 1234    /bin/x\n", "/bin/x")
	f.Add("Anonymous:             0 kB\n", "/bin/x")
	f.Add("-", "")
	f.Fuzz(func(t *testing.T, line, exe string) {
		m, header := parseMappingHeader([]byte(line), exe)
		if header && m.end <= m.start {
			t.Fatalf("%q: range %x-%x", line, m.start, m.end)
		}
		if m.ours && !header {
			t.Fatalf("%q: ours but not a header", line)
		}
	})
}
