package libvirt

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	golibvirt "github.com/digitalocean/go-libvirt"

	"github.com/polyvisor/polyvisor/internal/vendorhost"
)

// errStreamEnded: libvirt ended a console stream as soon as it opened it.
var errStreamEnded = errors.New("the console stream ended as soon as it opened: the guest's console is not ready")

// consoleBuffer bounds the guest output a console holds for a reader that
// does not keep up; older output beyond it is dropped, as a serial line
// would.
const consoleBuffer = 1 << 20

// Console attaches to the domain's first console (its serial port, or an
// LXC container's tty) through libvirt's stream on a connection of its
// own: closing the console ends that connection and nothing else.
func (h *Host) Console(ctx context.Context, name string) (io.ReadWriteCloser, error) {
	d, s, err := h.lookupState(ctx, name)
	if err != nil {
		return nil, err
	}
	if s != golibvirt.DomainRunning && s != golibvirt.DomainBlocked && s != golibvirt.DomainPaused {
		return nil, fmt.Errorf("%w: console of %s: it is %s: start it first", vendorhost.ErrConflict, name, stateName(s))
	}
	// Safe: one console at a time, libvirt refusing a second rather than
	// taking this one over; drivers without that (LXC) take no flag.
	flags := golibvirt.DomainConsoleSafe
	var c *console
	for attempt := 0; ; attempt++ {
		c, err = h.openConsole(ctx, d, flags)
		if le, ok := libvirtError(err); ok && golibvirt.ErrorNumber(le.Code) == golibvirt.ErrInvalidArg && flags != 0 {
			flags = 0
			continue
		}
		// A console opened just after the start (an LXC container's
		// tty not yet opened inside) ends at once: try again shortly.
		if !errors.Is(err, errStreamEnded) || attempt == 10 {
			break
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("console of %s: %w", name, ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
	if err != nil {
		return nil, fmt.Errorf("console of %s: %w", name, h.c.mapError(err))
	}
	return c, nil
}

// openConsole opens the console stream on a session of its own. Its error
// is libvirt's, unmapped, for Console to retry on.
func (h *Host) openConsole(ctx context.Context, d golibvirt.Domain, flags golibvirt.DomainConsoleFlags) (*console, error) {
	sess, err := dial(ctx, h.c.t, h.c.creds)
	if err != nil {
		return nil, err
	}
	in, typed := io.Pipe() // what the user types, to the guest
	c := &console{sess: sess, input: typed, out: newOutputBuffer()}
	// The stream's goroutine is the console's: Close ends it and waits.
	go func() {
		err := sess.lv.DomainOpenConsoleBidirectional(d, nil, in, c.out, uint32(flags))
		in.Close()
		c.out.end(err)
	}()
	// The stream's refusal (a busy console, no console) arrives at once;
	// a working one is silent until the guest writes.
	select {
	case <-c.out.done:
		err := c.out.endErr()
		sess.close()
		if _, ok := libvirtError(err); ok {
			return nil, err
		}
		if err == nil {
			return nil, fmt.Errorf("%w: %w", vendorhost.ErrConflict, errStreamEnded)
		}
		return nil, h.c.mapError(err)
	case <-time.After(300 * time.Millisecond):
	}
	return c, nil
}

// console is a domain's console stream: Read gives the guest's output,
// Write types into the guest.
type console struct {
	sess  *session
	input *io.PipeWriter
	out   *outputBuffer
}

// outputBuffer is where the stream writes the guest's output, from
// go-libvirt's reader goroutine, which must never block (it serves the
// whole connection): it is bounded by dropping, not by waiting.
type outputBuffer struct {
	mu     sync.Mutex
	cond   *sync.Cond
	buf    []byte
	closed bool
	err    error         // the stream's end
	done   chan struct{} // closed when the stream goroutine returns
}

func newOutputBuffer() *outputBuffer {
	b := &outputBuffer{done: make(chan struct{})}
	b.cond = sync.NewCond(&b.mu)
	return b
}

// Write takes guest output. It never fails: go-libvirt's stream reader
// returns on a write error while its connection's reader may be blocked
// handing it the next packet, which deadlocks the connection; output after
// Close is dropped instead, until the stream's end arrives.
func (b *outputBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return len(p), nil
	}
	b.buf = append(b.buf, p...)
	if over := len(b.buf) - consoleBuffer; over > 0 {
		b.buf = b.buf[over:]
	}
	b.cond.Broadcast()
	return len(p), nil
}

// end records the stream's end.
func (b *outputBuffer) end(err error) {
	b.mu.Lock()
	b.err = err
	b.mu.Unlock()
	close(b.done)
	b.cond.Broadcast()
}

func (b *outputBuffer) endErr() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.err
}

// Read returns the guest's output; io.EOF once the stream has ended and
// everything was read.
func (c *console) Read(p []byte) (int, error) {
	b := c.out
	b.mu.Lock()
	defer b.mu.Unlock()
	for len(b.buf) == 0 {
		if b.closed {
			return 0, io.ErrClosedPipe
		}
		select {
		case <-b.done:
			return 0, io.EOF
		default:
		}
		b.cond.Wait()
	}
	n := copy(p, b.buf)
	b.buf = b.buf[n:]
	return n, nil
}

// Write types p into the guest's console.
func (c *console) Write(p []byte) (int, error) { return c.input.Write(p) }

// Close ends the stream and its connection, and waits for the stream's
// goroutine.
func (c *console) Close() error {
	b := c.out
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	b.cond.Broadcast()
	b.mu.Unlock()
	c.input.Close() // the client's end of the stream, sent to libvirt
	select {
	case <-b.done:
	case <-time.After(5 * time.Second):
	}
	err := c.sess.close()
	select {
	case <-b.done:
	case <-time.After(5 * time.Second):
		err = errors.Join(err, errors.New("the console stream did not end"))
	}
	return err
}
