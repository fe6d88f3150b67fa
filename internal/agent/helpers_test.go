package agent

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/polyvisor/polyvisor/internal/agent/agenttest"
)

// testTimeout bounds each wait of a test: generous, since it only bounds
// a hang.
const testTimeout = 20 * time.Second

// startAgent runs an agent in this process on device until the test ends,
// and returns a function that stops it earlier.
func startAgent(t *testing.T, device string) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		Run(ctx, Config{Port: device, Log: testLogger(t)})
	}()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			<-done
		})
	}
	t.Cleanup(stop)
	return stop
}

// newGuest returns a stand-in port with an agent serving it.
func newGuest(t *testing.T) *agenttest.Port {
	t.Helper()
	port := agenttest.NewPort(t)
	startAgent(t, port.Device)
	return port
}

// dial connects to the agent behind port, closing the client at the end.
func dial(t *testing.T, port *agenttest.Port) *Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	c, err := Dial(ctx, port.Socket)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// result is what a command printed and returned.
type result struct {
	stdout, stderr string
	code           int
}

// execute runs req with stdin and collects its output.
func execute(t *testing.T, c *Client, req ExecRequest, stdin string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	var stdout, stderr bytes.Buffer
	code, err := c.Exec(ctx, req, strings.NewReader(stdin), &stdout, &stderr, nil)
	if err != nil {
		t.Fatalf("exec %q: %v", req.Command, err)
	}
	return result{stdout.String(), stderr.String(), code}
}

// testLogger sends the agent's log to the test's log.
func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

// syncBuffer is a bytes.Buffer for a writer and a reader in different
// goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// waitFor polls cond until it holds or the test's patience ends.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(testTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
