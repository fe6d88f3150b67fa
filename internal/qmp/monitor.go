// Package qmp is a small client for QEMU's machine protocol (QMP): one
// Monitor per QEMU process, typed commands written once (commands.go), and
// QEMU's asynchronous events on a channel.
//
// A Monitor owns one reader goroutine. It hands each reply to the Run that
// waits for its id and queues events, so several goroutines may Run at once
// and a slow event consumer never holds up a reply.
package qmp

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// eventBuffer is how many events wait for a reader of Events before the
// oldest is dropped. QEMU sends a handful per state change, so only a
// consumer that has stopped reading ever reaches it.
const eventBuffer = 256

// Monitor is one QMP connection to one QEMU process. Its methods are safe
// to call from several goroutines at once.
type Monitor struct {
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
	events    chan Event
	dropped   atomic.Uint64
	done      chan struct{}
}

// Event is one asynchronous QMP event, such as SHUTDOWN, POWERDOWN, RESET,
// STOP, RESUME or BLOCK_JOB_COMPLETED.
type Event struct {
	// Name is the event's name, in QEMU's spelling (upper case).
	Name string
	// Data is the event's "data" member, nil for events without one.
	Data json.RawMessage
	// Time is when QEMU emitted the event; zero if it gave no timestamp.
	Time time.Time
}

// reply is what the reader hands to a waiting Run.
type reply struct {
	result json.RawMessage
	err    error
}

func newMonitor(conn net.Conn, lines *bufio.Scanner) *Monitor {
	return &Monitor{
		conn:      conn,
		lines:     lines,
		writeSlot: make(chan struct{}, 1),
		nextID:    1,
		pending:   make(map[uint64]chan reply),
		events:    make(chan Event, eventBuffer),
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
func (m *Monitor) Run(ctx context.Context, cmd Command, result any) error {
	name, args := cmd.qmpCommand()
	raw, err := m.execute(ctx, name, args)
	if err != nil {
		if _, ends := cmd.(connectionEnder); ends && m.peerHungUp() {
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
func (m *Monitor) execute(ctx context.Context, name string, args any) (json.RawMessage, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	id, replies, err := m.register()
	if err != nil {
		return nil, err
	}
	line, err := encodeRequest(name, args, id)
	if err == nil {
		err = m.send(ctx, line)
	}
	if err != nil {
		m.unregister(id)
		return nil, err
	}
	select {
	case r := <-replies:
		return r.result, r.err
	case <-ctx.Done():
		m.unregister(id)
		return nil, ctx.Err()
	}
}

// register reserves a request id and the channel its reply will come on.
func (m *Monitor) register() (uint64, chan reply, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cause != nil {
		return 0, nil, m.cause
	}
	id := m.nextID
	m.nextID++
	replies := make(chan reply, 1) // the reader must never wait on a Run
	m.pending[id] = replies
	return id, replies, nil
}

func (m *Monitor) unregister(id uint64) {
	m.mu.Lock()
	delete(m.pending, id)
	m.mu.Unlock()
}

// send writes one request line, or gives up when ctx ends.
func (m *Monitor) send(ctx context.Context, line []byte) error {
	select {
	case m.writeSlot <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	case <-m.done:
		return m.Err()
	}
	defer func() { <-m.writeSlot }()

	// A write blocks only when QEMU has stopped reading. A deadline in the
	// past is the one way to interrupt it; it is lifted again afterwards.
	interrupted := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		m.conn.SetWriteDeadline(time.Unix(1, 0))
		close(interrupted)
	})
	n, err := m.conn.Write(line)
	if !stop() {
		<-interrupted
		m.conn.SetWriteDeadline(time.Time{})
	}
	switch {
	case err == nil:
		return nil
	case n > 0:
		// QEMU would read half a request followed by the next one: the
		// stream is of no use to anyone any more.
		m.abort(fmt.Errorf("%w: request cut short: %w", ErrClosed, err))
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

// Events returns the channel of QEMU's asynchronous events, in the order
// QEMU sent them. It is closed when the connection ends, after the last
// event read.
//
// Events are buffered (256) so that a slow consumer never holds up command
// replies; when the buffer is full the oldest event is dropped and
// DroppedEvents counts it. Dropping the oldest keeps the latest state
// change, which is what a consumer that catches up needs.
func (m *Monitor) Events() <-chan Event { return m.events }

// DroppedEvents returns how many events were dropped because nobody read
// Events fast enough.
func (m *Monitor) DroppedEvents() uint64 { return m.dropped.Load() }

// Done returns a channel that is closed when the connection has ended:
// QEMU exited or hung up, the stream broke, or Close was called.
func (m *Monitor) Done() <-chan struct{} { return m.done }

// Err returns nil while the connection is up and, once Done is closed, why
// it ended, as an error that wraps ErrClosed.
func (m *Monitor) Err() error {
	select {
	case <-m.done:
	default:
		return nil
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.cause
}

// Close ends the connection and waits for the reader goroutine to finish.
// Runs still waiting fail with ErrClosed. QEMU keeps running; a later Dial
// can connect again. Close may be called more than once.
func (m *Monitor) Close() error {
	err := m.abort(ErrClosed)
	<-m.done
	return err
}

// abort records why the connection ends, unless a reason is already known,
// and closes it; the reader then winds down. It returns the error of
// closing the socket, if this call closed it.
func (m *Monitor) abort(cause error) error {
	m.mu.Lock()
	if m.cause == nil {
		m.cause = cause
	}
	m.mu.Unlock()
	return m.closeSocket()
}

func (m *Monitor) closeSocket() error {
	var err error
	m.closeConn.Do(func() { err = m.conn.Close() })
	return err
}

// peerHungUp reports whether the connection ended because QEMU closed it.
func (m *Monitor) peerHungUp() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.hungUp
}
