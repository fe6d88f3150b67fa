package container

import "testing"

func TestRuntimeComplaintsBecomeOneReadableLine(t *testing.T) {
	for in, want := range map[string]string{
		`time="2026-12-05T06:32:05Z" level=error msg="container does not exist"`:                                     "container does not exist",
		"something\n" + `time="2026-12-05T06:32:05Z" level=error msg="unable to start: \"x\" failed" extra=1` + "\n": `unable to start: "x" failed`,
		`time="2026-12-05T06:32:05Z" level=warning msg=bare other=2`:                                                 "bare",
		"plain complaint\nlast line\n":         "last line",
		`time="t" level=error no message here`: `time="t" level=error no message here`,
	} {
		if got := oneLine(in); got != want {
			t.Errorf("oneLine(%q) = %q, want %q", in, got, want)
		}
	}
}
