package guest

import "testing"

func TestParseMemTotal(t *testing.T) {
	got, err := parseMemTotal([]byte("MemTotal:       24567890 kB\nMemFree:         1234 kB\n"))
	if err != nil || got != Size(24567890)<<10 {
		t.Errorf("parseMemTotal = %d, %v", got, err)
	}
	for _, bad := range []string{"", "MemFree: 1 kB\n", "MemTotal: lots kB\n", "MemTotal: 12 MB\n"} {
		if _, err := parseMemTotal([]byte(bad)); err == nil {
			t.Errorf("parseMemTotal(%q) succeeded", bad)
		}
	}
	if m, err := HostMemory(); err != nil || m < MinMemory {
		t.Errorf("HostMemory = %s, %v", m, err)
	}
}
