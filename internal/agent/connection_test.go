package agent

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"net"

	"testing"
	"time"

	"github.com/polyvisor/polyvisor/internal/agent/agenttest"
)

// quickDial is how long a Dial may take when the agent should resync at
// once: a handful of Hello retries, far less than the minutes it would
// take to feed a 64 KiB frame with Hellos.
const quickDial = 5 * time.Second

func TestReconnectKillsTheOldSessionsAndServesTheNewHost(t *testing.T) {
	port := newGuest(t)
	c1 := dial(t, port)
	var out syncBuffer
	done := make(chan error, 1)
	go func() {
		_, err := c1.Exec(context.Background(), ExecRequest{Command: []string{"sh", "-c", "echo $$; exec sleep 60"}}, nil, &out, nil, nil)
		done <- err
	}()
	pid := waitForPid(t, &out)

	port.Disconnect() // the host vanishes without a word, as a crashed daemon would
	if err := <-done; !errors.Is(err, ErrConnectionLost) {
		t.Fatalf("exec on the lost connection returned %v, want ErrConnectionLost", err)
	}
	if _, err := c1.Exec(context.Background(), ExecRequest{Command: []string{"true"}}, nil, nil, nil, nil); !errors.Is(err, ErrConnectionLost) {
		t.Fatalf("exec after the loss returned %v", err)
	}

	c2 := dial(t, port)
	waitFor(t, "the old session's command to be killed", func() bool { return !alive(pid) })
	if got := execute(t, c2, ExecRequest{Command: []string{"echo", "again"}}, ""); got.stdout != "again\n" {
		t.Fatalf("exec on the new connection: %+v", got)
	}
}

func TestResyncAfterAFrameCutOff(t *testing.T) {
	port := newGuest(t)
	c1 := dial(t, port)
	c1.Close()
	// A host that dies in the middle of a 60000-byte frame, with the
	// agent in step: the next Hello lands where the payload was expected.
	sendRaw(t, port, encodeFrame(typeStdin, 1, make([]byte, 60000))[:200])
	dialQuickly(t, port)
}

func TestResyncAfterGarbage(t *testing.T) {
	port := newGuest(t)
	garbage := make([]byte, 100<<10)
	rand.Read(garbage)
	// Noise that looks like frames, the start of a Hello signature, and
	// a Hello of some other host cut short.
	garbage = append(garbage, encodeFrame(typeExecStart, 7, []byte(`{"command":["false"]}`))...)
	garbage = append(garbage, encodeFrame(typeStdout, 9, make([]byte, MaxPayload))[:1000]...)
	garbage = append(garbage, helloSignature()[:20]...)
	garbage = append(garbage, encodeFrame(typeHello, 0, encodeHello(nonce{1}))[:30]...)
	sendRaw(t, port, garbage)
	c := dialQuickly(t, port)
	if got := execute(t, c, ExecRequest{Command: []string{"echo", "ok"}}, ""); got.stdout != "ok\n" {
		t.Fatalf("exec after garbage: %+v", got)
	}
}

func TestAgentRestartFailsTheConnectedHost(t *testing.T) {
	port := agenttest.NewPort(t)
	stop := startAgent(t, port.Device)
	c := dial(t, port)
	stop()
	startAgent(t, port.Device)
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	waitFor(t, "the client to notice the restart", func() bool {
		return errors.Is(c.Ping(ctx), ErrConnectionLost)
	})
	dial(t, port).Ping(ctx)
}

func TestDialWaitsForABootingGuest(t *testing.T) {
	port := agenttest.NewPort(t)
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	dialed := make(chan error, 1)
	go func() {
		c, err := Dial(ctx, port.Socket)
		if err == nil {
			c.Close()
		}
		dialed <- err
	}()
	time.Sleep(1200 * time.Millisecond) // a few Hellos go unanswered
	startAgent(t, port.Device)
	if err := <-dialed; err != nil {
		t.Fatalf("dial: %v", err)
	}
}

func TestDialGivesUpWithTheContext(t *testing.T) {
	port := agenttest.NewPort(t) // no agent
	ctx, cancel := context.WithTimeout(context.Background(), 700*time.Millisecond)
	defer cancel()
	if _, err := Dial(ctx, port.Socket); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("dial without an agent returned %v", err)
	}
	if _, err := Dial(context.Background(), port.Socket+".missing"); err == nil {
		t.Fatal("dial of a missing socket succeeded")
	}
}

func TestCloseKillsRunningCommands(t *testing.T) {
	port := newGuest(t)
	c := dial(t, port)
	var out syncBuffer
	done := make(chan error, 1)
	go func() {
		_, err := c.Exec(context.Background(), ExecRequest{Command: []string{"sh", "-c", "echo $$; exec sleep 60"}}, nil, &out, nil, nil)
		done <- err
	}()
	pid := waitForPid(t, &out)
	c.Close()
	if err := <-done; !errors.Is(err, ErrClosed) {
		t.Fatalf("exec during Close returned %v, want ErrClosed", err)
	}
	waitFor(t, "the command to be killed", func() bool { return !alive(pid) })
	if err := c.Ping(context.Background()); !errors.Is(err, ErrClosed) {
		t.Fatalf("ping after Close returned %v", err)
	}
}

func TestStalledSessionDoesNotHoldUpOthers(t *testing.T) {
	c := dial(t, newGuest(t))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// One command never reads its endless input, another's caller never
	// reads its endless output.
	stalled := make(chan error, 2)
	go func() {
		_, err := c.Exec(ctx, ExecRequest{Command: []string{"sleep", "60"}}, endless{}, nil, nil, nil)
		stalled <- err
	}()
	unblock := make(chan struct{})
	go func() {
		_, err := c.Exec(ctx, ExecRequest{Command: []string{"yes"}}, nil, blockingWriter{unblock}, nil, nil)
		stalled <- err
	}()
	time.Sleep(300 * time.Millisecond) // both windows are full by now
	for i := range 3 {
		if got := execute(t, c, ExecRequest{Command: []string{"echo", "through"}}, ""); got.stdout != "through\n" {
			t.Fatalf("exec %d beside stalled sessions: %+v", i, got)
		}
	}
	cancel()
	close(unblock)
	for range 2 {
		if err := <-stalled; !errors.Is(err, context.Canceled) {
			t.Errorf("stalled exec returned %v", err)
		}
	}
}

// sendRaw connects to the port's socket as a host that writes p and goes.
func sendRaw(t *testing.T, port *agenttest.Port, p []byte) {
	t.Helper()
	conn, err := net.Dial("unix", port.Socket)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Write(p); err != nil {
		t.Fatal(err)
	}
	// Let the relay pass it all on before the next host connects.
	time.Sleep(200 * time.Millisecond)
	conn.Close()
}

// dialQuickly dials and fails the test if that takes more than quickDial.
func dialQuickly(t *testing.T, port *agenttest.Port) *Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), quickDial)
	defer cancel()
	c, err := Dial(ctx, port.Socket)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// endless is an input that never ends.
type endless struct{}

func (endless) Read(p []byte) (int, error) {
	return copy(p, bytes.Repeat([]byte("y"), len(p))), nil
}

// blockingWriter blocks every write until unblock is closed.
type blockingWriter struct{ unblock chan struct{} }

func (w blockingWriter) Write(p []byte) (int, error) {
	<-w.unblock
	return len(p), nil
}
