package qmp

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"syscall"
	"time"
)

// Retry pacing for Dial while QEMU is still starting: quick at first, since
// QEMU usually creates its socket within milliseconds, then gentler.
const (
	firstRetryDelay = 5 * time.Millisecond
	maxRetryDelay   = 200 * time.Millisecond
)

// Dial connects to the QMP socket of a QEMU started with
// -qmp unix:PATH,server=on,wait=off, reads its greeting and leaves
// capability negotiation mode, so the Client is ready for commands.
//
// While the socket does not exist yet or refuses connections (QEMU is still
// starting), Dial keeps trying until ctx ends. QEMU serves one QMP client
// per socket at a time: while another client is connected, no greeting
// comes and Dial waits for ctx too.
func Dial(ctx context.Context, socketPath string) (*Client, error) {
	conn, err := dialUntilListening(ctx, socketPath)
	if err != nil {
		return nil, fmt.Errorf("qmp dial %s: %w", socketPath, err)
	}
	c, err := handshake(ctx, conn)
	if err != nil {
		return nil, fmt.Errorf("qmp dial %s: %w", socketPath, err)
	}
	return c, nil
}

// dialUntilListening connects to the unix socket at path, retrying while
// it is missing or nobody listens on it.
func dialUntilListening(ctx context.Context, path string) (net.Conn, error) {
	var dialer net.Dialer
	delay := firstRetryDelay
	for {
		conn, err := dialer.DialContext(ctx, "unix", path)
		if err == nil {
			return conn, nil
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("%w; last attempt: %w", ctx.Err(), err)
		}
		if !errors.Is(err, syscall.ENOENT) && !errors.Is(err, syscall.ECONNREFUSED) {
			return nil, err
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("%w; last attempt: %w", ctx.Err(), err)
		case <-time.After(delay):
		}
		delay = min(2*delay, maxRetryDelay)
	}
}

// handshake reads QEMU's greeting, starts the Client's reader and
// negotiates capabilities. It owns conn: on failure conn is closed.
func handshake(ctx context.Context, conn net.Conn) (*Client, error) {
	lines := newLineScanner(conn)
	if err := readGreeting(ctx, conn, lines); err != nil {
		conn.Close()
		return nil, err
	}
	c := newClient(conn, lines)
	go c.readLoop()
	// No capability is asked for: out-of-band execution is the only one
	// QEMU offers, and in-order replies are all this package needs.
	if err := c.Run(ctx, qmpCapabilities{}, nil); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// readGreeting reads the first line and checks that it is a QMP greeting.
// Until the reader goroutine starts, nothing but ctx bounds this read, so a
// deadline in the past interrupts it when ctx ends.
func readGreeting(ctx context.Context, conn net.Conn, lines *bufio.Scanner) error {
	interrupted := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		conn.SetReadDeadline(time.Unix(1, 0))
		close(interrupted)
	})
	defer func() {
		if !stop() {
			<-interrupted
			conn.SetReadDeadline(time.Time{})
		}
	}()
	if !lines.Scan() {
		if ctx.Err() != nil {
			return fmt.Errorf("read greeting: %w", ctx.Err())
		}
		if err := lines.Err(); err != nil {
			return fmt.Errorf("read greeting: %w", err)
		}
		return fmt.Errorf("read greeting: %w", errPeerEOF)
	}
	msg, err := decodeMessage(lines.Bytes())
	if err != nil {
		return fmt.Errorf("read greeting: %w", err)
	}
	if msg.kind != kindGreeting {
		return fmt.Errorf("read greeting: %w: first message is not a QMP greeting", errBadMessage)
	}
	if ctx.Err() != nil {
		return fmt.Errorf("read greeting: %w", ctx.Err())
	}
	return nil
}
