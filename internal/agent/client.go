package agent

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"
)

// Timing of the host side.
const (
	// helloRetry is how often Dial repeats its Hello: the guest may still
	// be booting, and Hellos sent before the agent opened its port may
	// have been lost.
	helloRetry = 500 * time.Millisecond
	// closeFlush bounds how long Close waits to tell the agent to kill
	// the sessions still running.
	closeFlush = time.Second
)

// Errors of the host side.
var (
	// ErrClosed is returned by calls on a Client after Close.
	ErrClosed = errors.New("agent client closed")
	// ErrConnectionLost is returned when the connection to the agent
	// ends under a call: the socket failed, the stream went out of step,
	// or the agent restarted and forgot its sessions. Dial again.
	ErrConnectionLost = errors.New("agent connection lost")
	// ErrAgent wraps an error the agent reported for a session.
	ErrAgent = errors.New("agent error")
)

// Client is the host's connection to the agent in one guest, through the
// unix socket QEMU serves for the guest's virtio-serial port. It runs any
// number of commands at once. It is safe for concurrent use.
//
// The port outlives connections, so a guest that reboots or restarts its
// agent keeps the socket open; the agent then says so and calls fail with
// ErrConnectionLost. A guest that hangs says nothing: use Ping with a
// deadline to notice.
type Client struct {
	conn net.Conn
	info GuestInfo
	out  *queue[[]byte] // encoded frames for writeLoop

	mu       sync.Mutex
	sessions map[uint32]*clientSession
	pings    map[uint64]chan struct{}
	lastID   uint32
	lastPing uint64
	err      error         // why the connection ended, once lost is closed
	lost     chan struct{} // closed when the connection ends

	closeOnce  sync.Once
	writerDone chan struct{}
	wg         sync.WaitGroup // readLoop and writeLoop

	linkWindow uint64 // LinkWindow's n; 0: writes are not paced
	link       linkState
}

// linkState is what the client knows of the agent's reads, for pacing.
type linkState struct {
	mu    sync.Mutex
	paced bool          // the agent sends LinkAcks and the client paces by them
	read  uint64        // the agent's last LinkAck
	more  chan struct{} // signalled when read grows or pacing starts
}

// DialOption changes how Dial connects.
type DialOption func(*Client)

// LinkWindow paces the client's writes when the agent can send LinkAcks
// (its port is a serial line): the client asks for them, and at most n
// bytes it has written after its first Hello may be unread by the agent.
// For a UML guest, whose serial driver stalls for good once the guest's
// line discipline throttles input (see the package doc), n must stay
// under 3968. An agent that cannot send LinkAcks is not paced.
func LinkWindow(n int) DialOption {
	return func(c *Client) { c.linkWindow = uint64(max(n, 0)) }
}

// clientSession is the host's side of one Exec.
type clientSession struct {
	id     uint32
	events *queue[frame] // output, then the frame that ends the session
	credit *credit       // input bytes the agent will still accept
	done   chan struct{} // closed when Exec returns
}

// Dial connects to the agent's socket, the unix socket of QEMU's chardev
// for the agent's port, and shakes hands: it sends a Hello every 500 ms
// until the agent answers or ctx ends, so it can be called as soon as QEMU
// has started and returns once the guest has booted far enough to run its
// agent.
func Dial(ctx context.Context, socketPath string, opts ...DialOption) (*Client, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", socketPath)
	if err != nil {
		return nil, fmt.Errorf("connect to agent: %w", err)
	}
	n, err := newNonce()
	if err != nil {
		conn.Close()
		return nil, err
	}
	c := &Client{
		conn:       conn,
		out:        newQueue[[]byte](),
		sessions:   map[uint32]*clientSession{},
		pings:      map[uint64]chan struct{}{},
		lost:       make(chan struct{}),
		writerDone: make(chan struct{}),
		link:       linkState{more: make(chan struct{}, 1)},
	}
	for _, o := range opts {
		o(c)
	}
	acked := make(chan error, 1)
	c.wg.Add(2)
	go c.writeLoop()
	go c.readLoop(n, acked)

	hello := encodeFrame(typeHello, 0, encodeHello(n))
	tick := time.NewTicker(helloRetry)
	defer tick.Stop()
	for {
		c.out.push(hello)
		select {
		case err := <-acked:
			if err != nil {
				c.shutdown(err)
				return nil, fmt.Errorf("agent handshake on %s: %w", socketPath, err)
			}
			return c, nil
		case <-tick.C:
		case <-ctx.Done():
			c.shutdown(ctx.Err())
			return nil, fmt.Errorf("wait for the agent on %s: %w", socketPath, ctx.Err())
		}
	}
}

// Info returns what the agent said about its guest in the handshake.
func (c *Client) Info() GuestInfo {
	return c.info
}

// Ping checks that the agent answers, within ctx.
func (c *Client) Ping(ctx context.Context) error {
	c.mu.Lock()
	c.lastPing++
	token, answered := c.lastPing, make(chan struct{})
	c.pings[token] = answered
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		delete(c.pings, token)
		c.mu.Unlock()
	}()
	if err := c.send(typePing, 0, binary.BigEndian.AppendUint64(nil, token)); err != nil {
		return fmt.Errorf("ping agent: %w", err)
	}
	select {
	case <-answered:
		return nil
	case <-c.lost:
		return fmt.Errorf("ping agent: %w", c.err)
	case <-ctx.Done():
		return fmt.Errorf("ping agent: %w", ctx.Err())
	}
}

// Close tells the agent to kill the commands still running, closes the
// connection and waits for the client's goroutines. Calls in progress
// fail with ErrClosed.
func (c *Client) Close() error {
	c.closeOnce.Do(func() {
		c.mu.Lock()
		live := make([]uint32, 0, len(c.sessions))
		for id := range c.sessions {
			live = append(live, id)
		}
		c.mu.Unlock()
		for _, id := range live {
			c.send(typeError, id, []byte("the host closed the connection"))
		}
		c.out.close()
		select {
		case <-c.writerDone:
		case <-time.After(closeFlush):
		}
		c.shutdown(ErrClosed)
	})
	return nil
}

// shutdown ends the connection with err and waits for the goroutines.
func (c *Client) shutdown(err error) {
	c.fail(err)
	c.wg.Wait()
}

// fail ends the connection, once, with err as the reason every pending
// and later call gets.
func (c *Client) fail(err error) {
	c.mu.Lock()
	if c.err != nil {
		c.mu.Unlock()
		return
	}
	c.err = err
	close(c.lost)
	sessions := c.sessions
	c.sessions = map[uint32]*clientSession{}
	c.mu.Unlock()
	c.conn.Close()
	for _, s := range sessions {
		s.events.close() // without an Exit: Exec returns c.err
	}
}

// send queues one frame for the agent.
func (c *Client) send(typ byte, session uint32, payload []byte) error {
	select {
	case <-c.lost:
		return c.err
	default:
	}
	if !c.out.push(encodeFrame(typ, session, payload)) {
		return ErrClosed
	}
	return nil
}

// writeLoop writes queued frames to the socket, in order, until the
// queue is closed and empty or the connection ends. Nothing else writes to
// the socket, so no caller ever blocks on it.
func (c *Client) writeLoop() {
	defer c.wg.Done()
	defer close(c.writerDone)
	// sent counts the bytes written after the first frame, Dial's first
	// Hello, as the agent's LinkAcks do.
	var sent uint64
	first := true
	for {
		frames, closed := c.out.take()
		for _, f := range frames {
			if first {
				first = false
				if _, err := c.conn.Write(f); err != nil {
					c.fail(fmt.Errorf("%w: write: %w", ErrConnectionLost, err))
					return
				}
				continue
			}
			for len(f) > 0 {
				n, ok := c.linkRoom(len(f), sent)
				if !ok {
					return
				}
				if _, err := c.conn.Write(f[:n]); err != nil {
					c.fail(fmt.Errorf("%w: write: %w", ErrConnectionLost, err))
					return
				}
				sent += uint64(n)
				f = f[n:]
			}
		}
		if closed { // and every frame written
			return
		}
		select {
		case <-c.out.wait():
		case <-c.lost:
			return
		}
	}
}

// linkRoom waits until the link may carry more bytes and returns how many
// of want it may (all of them when the client is not paced). It returns
// false once the connection has ended.
func (c *Client) linkRoom(want int, sent uint64) (int, bool) {
	for {
		c.link.mu.Lock()
		paced, read := c.link.paced, c.link.read
		c.link.mu.Unlock()
		if !paced {
			return want, true
		}
		var inFlight uint64
		if sent > read {
			inFlight = sent - read
		}
		if inFlight < c.linkWindow {
			return int(min(uint64(want), c.linkWindow-inFlight)), true
		}
		select {
		case <-c.link.more:
		case <-c.lost:
			return 0, false
		}
	}
}

// linkUpdate records a LinkAck, or starts pacing, and wakes the writer.
func (c *Client) linkUpdate(fn func(*linkState)) {
	c.link.mu.Lock()
	fn(&c.link)
	c.link.mu.Unlock()
	select {
	case c.link.more <- struct{}{}:
	default:
	}
}

// readLoop finds the agent's answer to Dial's Hello, reports it on acked,
// then dispatches frames until the connection ends.
func (c *Client) readLoop(n nonce, acked chan<- error) {
	defer c.wg.Done()
	br := bufio.NewReaderSize(c.conn, headerSize+MaxPayload)
	p, err := readHelloAck(br, n)
	if err == nil {
		_, c.info, err = decodeHelloAck(p)
	}
	if err == nil && c.linkWindow > 0 && c.info.LinkAcks {
		// Before Dial returns, so ahead of every other frame.
		c.out.push(encodeFrame(typeLinkAck, 0, nil))
		c.linkUpdate(func(l *linkState) { l.paced = true })
	}
	acked <- err
	if err != nil {
		return
	}
	for {
		f, err := readFrame(br)
		if err != nil {
			c.fail(fmt.Errorf("%w: read: %w", ErrConnectionLost, err))
			return
		}
		if f.typ == typeHelloAck {
			// An answer to one of Dial's repeated Hellos, or the
			// agent announcing that it has restarted.
			if got, _, err := decodeHelloAck(f.payload); err != nil || got != n {
				c.fail(fmt.Errorf("%w: the agent restarted", ErrConnectionLost))
				return
			}
			continue
		}
		c.dispatch(f)
	}
}

// dispatch hands one frame to whoever waits for it. It never blocks, so
// one slow caller cannot hold up the others.
func (c *Client) dispatch(f frame) {
	if f.typ == typeLinkAck {
		if read, err := decodeLinkAck(f.payload); err == nil {
			c.linkUpdate(func(l *linkState) { l.read = max(l.read, read) })
		}
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	switch f.typ {
	case typePong:
		if len(f.payload) == 8 {
			token := binary.BigEndian.Uint64(f.payload)
			if answered, ok := c.pings[token]; ok {
				close(answered)
				delete(c.pings, token)
			}
		}
		return
	}
	s := c.sessions[f.session]
	if s == nil {
		return // a session Exec has given up on
	}
	switch f.typ {
	case typeStdout, typeStderr:
		s.events.push(f)
	case typeExit, typeError:
		s.events.push(f)
		s.events.close()
		delete(c.sessions, f.session)
	case typeAck:
		if n, err := decodeAck(f.payload); err == nil && n <= window {
			s.credit.give(int(n))
		}
	}
}
