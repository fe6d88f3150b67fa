// Package qmp is a small client for QEMU's machine protocol (QMP): a
// Client is one connection to one QEMU process, with typed commands
// written once (commands.go).
//
// A Client owns one reader goroutine. It hands each reply to the Run that
// waits for its id, so several goroutines may Run at once. QEMU's
// asynchronous events (SHUTDOWN, STOP, ...) are read and skipped: a guest's
// end is seen by its process ending (procutil.Identity.Wait) and recorded
// by its monitor process, which is QEMU's parent, and the daemon holds no
// connection open (QEMU serves one QMP client at a time), so there is
// nobody to hand events to.
package qmp

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"sync"
	"time"
)

// Client is one QMP connection to one QEMU process. Its methods are safe
// to call from several goroutines at once.
type Client struct {
	conn  net.Conn
	lines *bufio.Scanner // read by Dial, then only by the reader goroutine

	// writeSlot holds one token while a request is written, so requests
	// never interleave, and so that a Run waiting its turn can still give up
	// when its ctx ends (a mutex would not let it).
	writeSlot chan struct{}

	mu      sync.Mutex
	nextID  uint64
	pending map[uint64]chan reply // Runs waiting, by request id
	cause   error                 // why the connection ended or is ending; nil while up
	hungUp  bool                  // QEMU ended the connection, not us

	closeConn sync.Once
	done      chan struct{}
}

// reply is what the reader hands to a waiting Run.
type reply struct {
	result json.RawMessage
	err    error
}

func newClient(conn net.Conn, lines *bufio.Scanner) *Client {
	return &Client{
		conn:      conn,
		lines:     lines,
		writeSlot: make(chan struct{}, 1),
		nextID:    1,
		pending:   make(map[uint64]chan reply),
		done:      make(chan struct{}),
	}
}

// Run sends cmd and waits for its reply, then decodes the reply's result
// into result (a pointer, or nil to discard it). A failure QEMU reports comes
// back as a wrapped *Error.
//
// When ctx ends first, Run returns ctx.Err() and the connection stays
// usable; QEMU may still carry out the command, and its late reply is
// dropped.
func (c *Client) Run(ctx context.Context, cmd Command, result any) error {
	name, args := cmd.qmpCommand()
	raw, err := c.execute(ctx, name, args)
	if err != nil {
		if _, ends := cmd.(connectionEnder); ends && c.peerHungUp() {
			return nil
		}
		return fmt.Errorf("qmp %s: %w", name, err)
	}
	if result == nil {
		return nil
	}
	if err := json.Unmarshal(raw, result); err != nil {
		return fmt.Errorf("qmp %s: decode result: %w", name, err)
	}
	return nil
}

// execute sends one request and returns its reply's result.
func (c *Client) execute(ctx context.Context, name string, args any) (json.RawMessage, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	id, replies, err := c.register()
	if err != nil {
		return nil, err
	}
	line, err := encodeRequest(name, args, id)
	if err == nil {
		err = c.send(ctx, line)
	}
	if err != nil {
		c.unregister(id)
		return nil, err
	}
	select {
	case r := <-replies:
		return r.result, r.err
	case <-ctx.Done():
		c.unregister(id)
		return nil, ctx.Err()
	}
}

// register reserves a request id and the channel its reply will come on.
func (c *Client) register() (uint64, chan reply, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cause != nil {
		return 0, nil, c.cause
	}
	id := c.nextID
	c.nextID++
	replies := make(chan reply, 1) // the reader must never wait on a Run
	c.pending[id] = replies
	return id, replies, nil
}

func (c *Client) unregister(id uint64) {
	c.mu.Lock()
	delete(c.pending, id)
	c.mu.Unlock()
}

// send writes one request line, or gives up when ctx ends.
func (c *Client) send(ctx context.Context, line []byte) error {
	select {
	case c.writeSlot <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	case <-c.done:
		return c.Err()
	}
	defer func() { <-c.writeSlot }()

	// A write blocks only when QEMU has stopped reading. A deadline in the
	// past is the one way to interrupt it; it is lifted again afterwards.
	interrupted := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		c.conn.SetWriteDeadline(time.Unix(1, 0))
		close(interrupted)
	})
	n, err := c.conn.Write(line)
	if !stop() {
		<-interrupted
		c.conn.SetWriteDeadline(time.Time{})
	}
	switch {
	case err == nil:
		return nil
	case n > 0:
		// QEMU would read half a request followed by the next one: the
		// stream is of no use to anyone any more.
		c.abort(fmt.Errorf("%w: request cut short: %w", ErrClosed, err))
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("send: %w", err)
	case ctx.Err() != nil:
		return ctx.Err()
	default:
		return fmt.Errorf("send: %w", err)
	}
}

// Done returns a channel that is closed when the connection has ended:
// QEMU exited or hung up, the stream broke, or Close was called.
func (c *Client) Done() <-chan struct{} { return c.done }

// Err returns nil while the connection is up and, once Done is closed, why
// it ended, as an error that wraps ErrClosed.
func (c *Client) Err() error {
	select {
	case <-c.done:
	default:
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cause
}

// Close ends the connection and waits for the reader goroutine to finish.
// Runs still waiting fail with ErrClosed. QEMU keeps running; a later Dial
// can connect again. Close may be called more than once.
func (c *Client) Close() error {
	err := c.abort(ErrClosed)
	<-c.done
	return err
}

// abort records why the connection ends, unless a reason is already known,
// and closes it; the reader then winds down. It returns the error of
// closing the socket, if this call closed it.
func (c *Client) abort(cause error) error {
	c.mu.Lock()
	if c.cause == nil {
		c.cause = cause
	}
	c.mu.Unlock()
	return c.closeSocket()
}

func (c *Client) closeSocket() error {
	var err error
	c.closeConn.Do(func() { err = c.conn.Close() })
	return err
}

// peerHungUp reports whether the connection ended because QEMU closed it.
func (c *Client) peerHungUp() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.hungUp
}
