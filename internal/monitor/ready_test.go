package monitor

import (
	"errors"
	"strings"
	"testing"
)

type lineRecorder struct {
	strings.Builder
	closed bool
}

func (r *lineRecorder) Close() error { r.closed = true; return nil }

func TestReadinessReportsOnce(t *testing.T) {
	var rec lineRecorder
	r := readiness{w: &rec}
	r.fail(errors.New("runc run: exit status 1:\nline two"))
	r.ok(42)
	if got := rec.String(); got != "error runc run: exit status 1:; line two\n" || !rec.closed {
		t.Fatalf("got %q, closed %v", got, rec.closed)
	}
	(&readiness{}).ok(1) // a monitor started by hand has no pipe
}

func TestParseReady(t *testing.T) {
	if pid, err := ParseReady("ok 1234\n"); err != nil || pid != 1234 {
		t.Fatalf("ok line: %d %v", pid, err)
	}
	_, err := ParseReady("error runc run: no such file\n")
	if !errors.Is(err, ErrStartFailed) || !strings.Contains(err.Error(), "runc run: no such file") {
		t.Fatalf("error line: %v", err)
	}
	for _, bad := range []string{"", "ok", "ok -1", "ok x", "ready 5"} {
		if _, err := ParseReady(bad); !errors.Is(err, ErrStartFailed) {
			t.Errorf("%q: got %v, want ErrStartFailed", bad, err)
		}
	}
}
