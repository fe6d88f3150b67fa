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

// A client more than maxClientBacklog bytes (or clientQueue reads) of
// console output behind is too slow, and is disconnected: the guest and the
// log never wait for a client, and the monitor's memory stays bounded.
const (
	maxClientBacklog = 1 << 20
	clientQueue      = 256
)

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

	mu      sync.Mutex
	clients map[*attachClient]struct{}
	closed  bool
}

// attachClient is one connection. Its writer goroutine owns the writes to
// conn; the server closes out when the client is dropped or the guest ends.
type attachClient struct {
	conn    *os.File
	out     chan []byte
	backlog int    // bytes queued in out; guarded by the server's mu
	exit    *int32 // set, before out is closed, when the guest has exited
}

func newAttachServer(ln *stream.Listener, console *os.File, log *slog.Logger) *attachServer {
	return &attachServer{ln: ln, console: console, log: log, clients: map[*attachClient]struct{}{}}
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
	c := &attachClient{conn: conn, out: make(chan []byte, clientQueue)}
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
	if len(s.clients) == 0 {
		return
	}
	chunk := append([]byte(nil), p...) // shared, read-only, by all clients
	for c := range s.clients {
		if c.backlog+len(chunk) > maxClientBacklog {
			s.log.Warn("disconnecting attach client that does not keep up", "backlog", c.backlog)
			s.dropLocked(c)
			continue
		}
		select {
		case c.out <- chunk:
			c.backlog += len(chunk)
		default:
			s.log.Warn("disconnecting attach client that does not keep up", "queued", len(c.out))
			s.dropLocked(c)
		}
	}
}

// sent records that chunk has left c's queue.
func (s *attachServer) sent(c *attachClient, chunk []byte) {
	s.mu.Lock()
	c.backlog -= len(chunk)
	s.mu.Unlock()
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
		close(c.out)
		s.log.Info("attach client disconnected", "clients", len(s.clients))
	}
	c.conn.Close()
}

// writeLoop sends c its queued output, then the guest's exit code if the
// guest is gone, and closes the connection.
func (s *attachServer) writeLoop(c *attachClient) {
	defer c.conn.Close()
	for chunk := range c.out {
		s.sent(c, chunk)
		if err := stream.WriteFrame(c.conn, stream.Stdout, chunk); err != nil {
			s.drop(c)
			for range c.out {
			}
			return
		}
	}
	if c.exit != nil {
		_ = stream.WriteFrame(c.conn, stream.Exit, stream.EncodeExit(*c.exit))
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

// shutdown stops accepting, gives each client the guest's exit code and
// disconnects it. Call wait afterwards, once the console is closed, so that
// no client is left writing to it.
func (s *attachServer) shutdown(exitCode int32) {
	s.mu.Lock()
	s.closed = true
	for c := range s.clients {
		c.exit = &exitCode
		delete(s.clients, c)
		_ = c.conn.SetWriteDeadline(time.Now().Add(farewellTimeout))
		close(c.out)
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
