package monitor

import "testing"

func TestParseMappingHeader(t *testing.T) {
	const exe = "/usr/bin/polyvisor monitor"
	for _, tc := range []struct {
		line     string
		header   bool
		ours     bool
		start    uintptr
		wantSize uintptr
	}{
		{"00400000-00513000 r-xp 00000000 fd:01 1234    /usr/bin/polyvisor monitor\n", true, true, 0x400000, 0x113000},
		{"00513000-00665000 r--p 00113000 fd:01 1234    /usr/bin/polyvisor monitor\n", true, true, 0x513000, 0x152000},
		{"00665000-00676000 rw-p 00265000 fd:01 1234    /usr/bin/polyvisor monitor\n", true, false, 0x665000, 0x11000},
		{"7f00-8f00 r--s 00000000 fd:01 99 /usr/bin/polyvisor monitor\n", true, false, 0x7f00, 0x1000},
		{"7f5adb803000-7f5adb8c5000 rw-p 00000000 00:00 0\n", true, false, 0x7f5adb803000, 0xc2000},
		{"Anonymous:             0 kB\n", false, false, 0, 0},
		{"VmFlags: rd ex mr mw me\n", false, false, 0, 0},
	} {
		m, header := parseMappingHeader([]byte(tc.line), exe)
		if header != tc.header || m.ours != tc.ours || (header && (m.start != tc.start || m.end-m.start != tc.wantSize)) {
			t.Errorf("%q: got %+v header=%v", tc.line, m, header)
		}
	}
}

// TestTrimMemory trims the test binary itself: it must go on running.
func TestTrimMemory(t *testing.T) {
	if err := trimMemory(); err != nil {
		t.Fatal(err)
	}
	if err := trimMemory(); err != nil {
		t.Fatal(err)
	}
}
