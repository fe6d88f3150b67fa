package qmp_test

import (
	"context"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/polyvisor/polyvisor/internal/qmp"
	"github.com/polyvisor/polyvisor/internal/qmp/qmptest"
)

// testCtx bounds everything a test waits for, so a bug hangs no test for
// long.
func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// connect starts a fake peer and dials it. The Client is closed, and the
// absence of leaked goroutines checked, when the test ends.
func connect(t *testing.T) (*qmptest.Server, *qmp.Client) {
	t.Helper()
	checkNoLeaks(t)
	s := qmptest.Start(t, filepath.Join(t.TempDir(), "qmp.sock"))
	m, err := qmp.Dial(testCtx(t), s.Path())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return s, m
}

// checkNoLeaks fails the test if, once everything else the test set up has
// been cleaned up, a goroutine of this package or of qmptest still runs.
// Call it before anything else registers a cleanup: cleanups run last
// registered first.
func checkNoLeaks(t *testing.T) {
	t.Cleanup(func() {
		deadline := time.Now().Add(5 * time.Second)
		for {
			leaked := leakedGoroutines()
			if leaked == "" {
				return
			}
			if time.Now().After(deadline) {
				t.Errorf("goroutines left behind:\n%s", leaked)
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
	})
}

func leakedGoroutines() string {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	var leaked []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "internal/qmp.") || strings.Contains(g, "internal/qmp/qmptest.") {
			if !strings.Contains(g, "leakedGoroutines") && !strings.Contains(g, "testing.tRunner") {
				leaked = append(leaked, g)
			}
		}
	}
	return strings.Join(leaked, "\n\n")
}

// waitClosed fails the test unless ch is closed within a few seconds.
func waitClosed(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(10 * time.Second):
		t.Fatalf("%s: not closed after 10s", what)
	}
}
