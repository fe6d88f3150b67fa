package monitor

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/polyvisor/polyvisor/internal/stream"
)

// maxClientBacklog is how far, in bytes of console output, a client may
// fall behind before it is disconnected: the guest and the log never wait
// for a client, and the monitor's memory stays bounded. It is one frame's
// worth, so a backlog always goes out as a single frame.
const maxClientBacklog = stream.MaxPayload

// keptBufferCap is the largest output buffer a client keeps between
// bursts; a larger one, grown by a burst, is left to the GC.
const keptBufferCap = 64 << 10

// farewellTimeout bounds the last writes to clients when the guest is gone.
const farewellTimeout = 2 * time.Second

// attachServer serves the guest's console to clients on console.sock: their
// Stdin frames go to the pty, their Resize frames set its size, and every
// client gets all console output as Stdout frames.
type attachServer struct {
	ln      *stream.Listener
	console *os.File
	log     *slog.Logger
	wg      sync.WaitGroup // the accept loop and each client's two loops
	gc      *collector     // the process's, shared by every guest it serves

	mu      sync.Mutex
	clients map[*attachClient]struct{}
	closed  bool
}

// attachClient is one connection. Output for it accumulates in pending,
// and its writer goroutine sends what has accumulated as one frame each
// time it is woken, so a fast guest costs few writes.
type attachClient struct {
	conn *os.File
	wake chan struct{} // capacity 1: pending output or the end awaits the writer

	// Guarded by the server's mu.
	pending []byte
	gone    bool   // dropped, or the guest has ended: the writer finishes
	exit    *int32 // the guest's exit code, when it has ended
}

func newAttachServer(ln *stream.Listener, console *os.File, gc *collector, log *slog.Logger) *attachServer {
	return &attachServer{ln: ln, console: console, gc: gc, log: log, clients: map[*attachClient]struct{}{}}
}

// serve accepts clients until shutdown. Wait for it with wait.
func (s *attachServer) serve(ctx context.Context) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			conn, err := s.ln.Accept(ctx)
			if err != nil {
				if s.isClosed() || ctx.Err() != nil || errors.Is(err, os.ErrClosed) {
					return
				}
				// Out of descriptors, most likely: wait rather than spin.
				s.log.Warn("accept attach client", "err", err)
				time.Sleep(100 * time.Millisecond)
				continue
			}
			s.add(conn)
		}
	}()
}

func (s *attachServer) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

func (s *attachServer) add(conn *os.File) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		conn.Close()
		return
	}
	s.gc.attached()
	c := &attachClient{conn: conn, wake: make(chan struct{}, 1)}
	s.clients[c] = struct{}{}
	s.log.Info("attach client connected", "clients", len(s.clients))
	s.wg.Add(2)
	go func() {
		defer s.wg.Done()
		s.writeLoop(c)
	}()
	go func() {
		defer s.wg.Done()
		s.readLoop(c)
	}()
}

// broadcast queues console output for every client. It never blocks: a
// client too far behind is disconnected.
func (s *attachServer) broadcast(p []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.clients {
		if len(c.pending)+len(p) > maxClientBacklog {
			s.log.Warn("disconnecting attach client that does not keep up", "backlog", len(c.pending))
			s.dropLocked(c)
			continue
		}
		c.pending = append(c.pending, p...)
		c.notify()
	}
}

// notify wakes c's writer, or leaves it a wake-up if it is busy.
func (c *attachClient) notify() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// drop disconnects c. It is safe to call more than once.
func (s *attachServer) drop(c *attachClient) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.dropLocked(c)
}

func (s *attachServer) dropLocked(c *attachClient) {
	if _, ok := s.clients[c]; ok {
		delete(s.clients, c)
		c.gone = true
		c.notify()
		s.log.Info("attach client disconnected", "clients", len(s.clients))
		s.gc.detached()
	}
	c.conn.Close()
}

// writeLoop sends c its output as it accumulates, then, once the guest is
// gone, its exit code, and closes the connection.
func (s *attachServer) writeLoop(c *attachClient) {
	defer c.conn.Close()
	var out []byte
	for range c.wake {
		s.mu.Lock()
		out, c.pending = c.pending, out[:0]
		gone, exit := c.gone, c.exit
		s.mu.Unlock()
		if len(out) > 0 {
			if err := stream.WriteFrame(c.conn, stream.Stdout, out); err != nil {
				s.drop(c)
				return
			}
		}
		if gone {
			if exit != nil {
				_ = stream.WriteFrame(c.conn, stream.Exit, stream.EncodeExit(*exit))
			}
			return
		}
		if cap(out) > keptBufferCap {
			out = nil
		}
	}
}

// readLoop applies c's frames to the console until c disconnects.
func (s *attachServer) readLoop(c *attachClient) {
	defer s.drop(c)
	for {
		f, err := stream.ReadFrame(c.conn)
		if err != nil {
			return
		}
		switch f.Type {
		case stream.Stdin:
			if _, err := s.console.Write(f.Data); err != nil {
				s.log.Warn("write to console", "err", err)
				return
			}
		case stream.Resize:
			if err := s.resize(f.Data); err != nil {
				s.log.Warn("resize console", "err", err)
			}
		default:
			// CloseStdin has no meaning on a pty (a client sends ^D);
			// other types are not for the monitor.
			s.log.Debug("ignoring attach frame", "type", f.Type)
		}
	}
}

// resize sets the pty's window size; the kernel sends SIGWINCH to the
// guest's foreground process group.
func (s *attachServer) resize(payload []byte) error {
	rows, cols, err := stream.DecodeResize(payload)
	if err != nil {
		return err
	}
	raw, err := s.console.SyscallConn()
	if err != nil {
		return err
	}
	var ioctlErr error
	err = raw.Control(func(fd uintptr) {
		ioctlErr = unix.IoctlSetWinsize(int(fd), unix.TIOCSWINSZ, &unix.Winsize{Row: rows, Col: cols})
	})
	if err != nil {
		return err
	}
	return ioctlErr
}

// shutdown stops accepting, and has each client sent its remaining output
// and the guest's exit code, then disconnected. Call wait afterwards, once
// the console is closed, so that no client is left writing to it.
func (s *attachServer) shutdown(exitCode int32) {
	s.mu.Lock()
	s.closed = true
	for c := range s.clients {
		delete(s.clients, c)
		s.gc.detached()
		c.exit = &exitCode
		c.gone = true
		_ = c.conn.SetWriteDeadline(time.Now().Add(farewellTimeout))
		c.notify()
	}
	s.mu.Unlock()
	if err := s.ln.Close(); err != nil {
		s.log.Warn("close attach socket", "err", err)
	}
}

// wait returns when the accept loop and all client loops have ended.
func (s *attachServer) wait() {
	s.wg.Wait()
}
