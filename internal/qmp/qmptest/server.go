// Package qmptest is a fake QMP peer for unit tests: a tiny server on a unix
// socket that greets like QEMU, answers qmp_capabilities, lets a test script
// the reply to each command and inject events, and can hang up.
//
// It serves one client at a time, as QEMU does. Commands before
// qmp_capabilities and commands without a handler fail with
// CommandNotFound, as they do in QEMU.
package qmptest

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"testing"
	"time"
)

// Greeting is the first line the server sends, the one QEMU 7.2 sends.
const Greeting = `{"QMP": {"version": {"qemu": {"micro": 0, "minor": 2, "major": 7}, "package": "qmptest"}, "capabilities": ["oob"]}}`

// ErrNoClient is returned by the methods that write to the client while none
// is connected.
var ErrNoClient = errors.New("qmptest: no client connected")

// Handler answers one command. It runs on the server's read loop, so until
// it returns the server reads no further requests (which is how a test makes
// QEMU stop reading). It may answer at once, or keep the Request and answer
// later from any goroutine, in any order, or never.
type Handler func(r *Request)

// Server is a fake QMP peer listening on a unix socket.
type Server struct {
	t        testing.TB
	path     string
	listener *net.UnixListener
	wg       sync.WaitGroup

	mu       sync.Mutex
	handlers map[string]Handler
	client   *clientConn // nil between clients
	closed   bool
	received []string
}

// clientConn is the connected client; wmu keeps its lines whole when a
// reply and an event are written at once.
type clientConn struct {
	conn net.Conn
	wmu  sync.Mutex
}

// Start listens on socketPath, replacing a stale socket file there as QEMU
// does, and serves clients until the test ends.
func Start(t testing.TB, socketPath string) *Server {
	t.Helper()
	if err := os.Remove(socketPath); err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("qmptest: remove stale socket: %v", err)
	}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: socketPath, Net: "unix"})
	if err != nil {
		t.Fatalf("qmptest: %v", err)
	}
	s := &Server{t: t, path: socketPath, listener: ln, handlers: make(map[string]Handler)}
	s.wg.Add(1)
	go s.acceptLoop()
	t.Cleanup(s.Close)
	return s
}

// Path returns the socket's path, for qmp.Dial.
func (s *Server) Path() string { return s.path }

// Handle makes h answer the command name, replacing any earlier handler.
func (s *Server) Handle(name string, h Handler) {
	s.mu.Lock()
	s.handlers[name] = h
	s.mu.Unlock()
}

// Reply makes the command name succeed with ret as its "return" member.
func (s *Server) Reply(name string, ret any) {
	s.Handle(name, func(r *Request) { r.Reply(ret) })
}

// Fail makes the command name fail with the given error class and
// description.
func (s *Server) Fail(name, class, desc string) {
	s.Handle(name, func(r *Request) { r.Fail(class, desc) })
}

// Received returns the names of the commands received so far, in order,
// qmp_capabilities included.
func (s *Server) Received() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.received...)
}

// Event sends an event with the given data (nil for none), stamped now.
func (s *Server) Event(name string, data any) error {
	now := time.Now()
	ev := map[string]any{
		"event":     name,
		"timestamp": map[string]int64{"seconds": now.Unix(), "microseconds": int64(now.Nanosecond() / 1000)},
	}
	if data != nil {
		ev["data"] = data
	}
	line, err := json.Marshal(ev)
	if err != nil {
		return fmt.Errorf("qmptest: encode event %s: %w", name, err)
	}
	return s.SendRaw(string(line))
}

// SendRaw sends line, and a line ending, as it is: for tests of what a real
// QEMU never sends.
func (s *Server) SendRaw(line string) error {
	s.mu.Lock()
	c := s.client
	s.mu.Unlock()
	if c == nil {
		return ErrNoClient
	}
	return c.writeLine([]byte(line))
}

// HangUp closes the connection to the current client, as QEMU does when it
// exits; the server then waits for the next client.
func (s *Server) HangUp() {
	s.mu.Lock()
	c := s.client
	s.mu.Unlock()
	if c != nil {
		c.conn.Close()
	}
}

// Close stops listening, hangs up on the client and waits for the server's
// goroutines to end. Start arranges for it to run when the test ends.
func (s *Server) Close() {
	s.mu.Lock()
	s.closed = true
	c := s.client
	s.mu.Unlock()
	s.listener.Close()
	if c != nil {
		c.conn.Close()
	}
	s.wg.Wait()
}

func (s *Server) acceptLoop() {
	defer s.wg.Done()
	for {
		conn, err := s.listener.Accept()
		if err != nil {
			return // Close stopped the listener
		}
		c := &clientConn{conn: conn}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			conn.Close()
			return
		}
		s.client = c
		s.mu.Unlock()
		s.serve(c)
		s.mu.Lock()
		s.client = nil
		s.mu.Unlock()
		conn.Close()
	}
}

// serve greets one client and answers its requests until it goes away.
func (s *Server) serve(c *clientConn) {
	if c.writeLine([]byte(Greeting)) != nil {
		return
	}
	negotiated := false
	lines := bufio.NewScanner(c.conn)
	lines.Buffer(nil, 64<<20)
	lines.Split(completeLines)
	for lines.Scan() {
		var req struct {
			Execute   string          `json:"execute"`
			Arguments json.RawMessage `json:"arguments"`
			ID        json.RawMessage `json:"id"`
		}
		if err := json.Unmarshal(lines.Bytes(), &req); err != nil || req.Execute == "" {
			s.t.Errorf("qmptest: request is not a QMP command: %.200q", lines.Bytes())
			return
		}
		r := &Request{Name: req.Execute, Args: req.Arguments, id: req.ID, client: c}
		s.mu.Lock()
		s.received = append(s.received, req.Execute)
		h := s.handlers[req.Execute]
		s.mu.Unlock()
		switch {
		case req.Execute == "qmp_capabilities" && !negotiated:
			negotiated = true
			r.Reply(struct{}{})
		case !negotiated:
			r.Fail("CommandNotFound", "Expecting capabilities negotiation with 'qmp_capabilities'")
		case h == nil:
			r.Fail("CommandNotFound", fmt.Sprintf("The command %s has not been found", req.Execute))
		default:
			h(r)
		}
	}
}

// completeLines splits at newlines like bufio.ScanLines but drops an
// unterminated last line: that is a client that gave up halfway through a
// request and hung up, not a request.
func completeLines(data []byte, atEOF bool) (advance int, token []byte, err error) {
	if i := bytes.IndexByte(data, '\n'); i >= 0 {
		return i + 1, bytes.TrimSuffix(data[:i], []byte{'\r'}), nil
	}
	if atEOF {
		return len(data), nil, nil
	}
	return 0, nil, nil
}

func (c *clientConn) writeLine(line []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_, err := c.conn.Write(append(line, '\r', '\n'))
	return err
}

// Request is one command received from the client.
type Request struct {
	// Name is the command's wire name, such as "query-status".
	Name string
	// Args is the command's "arguments" member; nil when it had none.
	Args json.RawMessage

	id     json.RawMessage
	client *clientConn
}

// Reply answers the request with ret as its "return" member.
func (r *Request) Reply(ret any) error {
	return r.send(map[string]any{"return": ret})
}

// Fail answers the request with a QMP error.
func (r *Request) Fail(class, desc string) error {
	return r.send(map[string]any{"error": map[string]string{"class": class, "desc": desc}})
}

func (r *Request) send(msg map[string]any) error {
	if r.id != nil {
		msg["id"] = r.id
	}
	line, err := json.Marshal(msg)
	if err != nil {
		return fmt.Errorf("qmptest: encode reply to %s: %w", r.Name, err)
	}
	return r.client.writeLine(line)
}
