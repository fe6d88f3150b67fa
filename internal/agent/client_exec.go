package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/polyvisor/polyvisor/internal/stream"
)

// Exec runs a command in the guest and returns its exit code: 128+N when
// signal N killed it, 127 or 126 when it could not be started (the agent
// then writes why to stderr, as a shell would). err is not nil, and
// exitCode is -1, only when the command's end is not known: ctx ended (the
// agent then kills the command's process group), the connection was lost,
// stdout or stderr failed, or the agent refused the request (ErrAgent).
//
// stdin is copied to the command until it ends, then the command's input
// is closed (on a tty, an EOF character is typed when the terminal is in
// line mode); a nil stdin is an empty one. As with os/exec, Exec does not
// wait for a stdin that blocks: the copy ends at its next Read once Exec
// has returned, so close a pipe you pass. Nil stdout or stderr discard.
// Each value received from resize, {rows, cols}, resizes a tty's terminal.
func (c *Client) Exec(ctx context.Context, req ExecRequest, stdin io.Reader, stdout, stderr io.Writer, resize <-chan [2]uint16) (exitCode int, err error) {
	if len(req.Command) == 0 || req.Command[0] == "" {
		return -1, errors.New("exec in guest: empty command")
	}
	name := req.Command[0]
	payload, err := json.Marshal(req)
	if err != nil {
		return -1, fmt.Errorf("exec %s: %w", name, err)
	}
	if len(payload) > MaxPayload {
		return -1, fmt.Errorf("exec %s: request of %d bytes, the most is %d", name, len(payload), MaxPayload)
	}
	s, err := c.openSession()
	if err != nil {
		return -1, fmt.Errorf("exec %s: %w", name, err)
	}
	defer c.closeSession(s)
	if err := c.send(typeExecStart, s.id, payload); err != nil {
		return -1, fmt.Errorf("exec %s: %w", name, err)
	}
	if stdin == nil {
		c.send(typeCloseStdin, s.id, nil)
	} else {
		go c.feedStdin(s, stdin) // ends with stdin, or when s.done closes
	}
	if stdout == nil {
		stdout = io.Discard
	}
	if stderr == nil {
		stderr = io.Discard
	}
	for {
		select {
		case <-s.events.wait():
			events, closed := s.events.take()
			for _, f := range events {
				switch f.typ {
				case typeStdout, typeStderr:
					w := stdout
					if f.typ == typeStderr {
						w = stderr
					}
					if _, err := w.Write(f.payload); err != nil {
						c.send(typeError, s.id, []byte("the host could not deliver the output"))
						return -1, fmt.Errorf("exec %s: write output: %w", name, err)
					}
					c.send(typeAck, s.id, encodeAck(uint32(len(f.payload))))
				case typeExit:
					code, err := stream.DecodeExit(f.payload)
					if err != nil {
						return -1, fmt.Errorf("exec %s: %w", name, err)
					}
					return int(code), nil
				case typeError:
					return -1, fmt.Errorf("exec %s: %w: %s", name, ErrAgent, f.payload)
				}
			}
			if closed {
				return -1, fmt.Errorf("exec %s: %w", name, c.reason())
			}
		case size, ok := <-resize:
			if !ok {
				resize = nil // a closed channel would be ready for ever
				continue
			}
			c.send(typeResize, s.id, stream.EncodeResize(size[0], size[1]))
		case <-ctx.Done():
			c.send(typeError, s.id, []byte("the host cancelled the command"))
			return -1, fmt.Errorf("exec %s: %w", name, ctx.Err())
		}
	}
}

// openSession registers a new session under a fresh id.
func (c *Client) openSession() (*clientSession, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return nil, c.err
	}
	c.lastID++
	if c.lastID == 0 {
		c.lastID = 1 // session 0 is the connection's own
	}
	s := &clientSession{
		id:     c.lastID,
		events: newQueue[frame](),
		credit: newCredit(window),
		done:   make(chan struct{}),
	}
	c.sessions[s.id] = s
	return s, nil
}

// closeSession forgets s: frames still arriving for it are dropped.
func (c *Client) closeSession(s *clientSession) {
	c.mu.Lock()
	if c.sessions[s.id] == s {
		delete(c.sessions, s.id)
	}
	c.mu.Unlock()
	close(s.done)
}

// feedStdin sends stdin to the agent as Stdin frames, within the credit
// the agent grants, then CloseStdin.
func (c *Client) feedStdin(s *clientSession, stdin io.Reader) {
	buf := make([]byte, 32<<10)
	sig := helloSignature()
	for {
		n, err := stdin.Read(buf)
		for sent := 0; sent < n; {
			k, ok := s.credit.take(s.done, n-sent)
			if !ok {
				return
			}
			part := buf[sent : sent+k]
			if i := bytes.Index(part, sig); i >= 0 {
				// End the frame in the middle of what the agent would
				// take for a new host's Hello: the next frame's header
				// then splits it in the stream.
				part = part[:i+len(sig)/2]
				s.credit.give(k - len(part))
			}
			if c.send(typeStdin, s.id, part) != nil {
				return
			}
			sent += len(part)
		}
		select {
		case <-s.done:
			return
		default:
		}
		if err != nil {
			c.send(typeCloseStdin, s.id, nil)
			return
		}
	}
}

// reason returns why the connection ended, or nil.
func (c *Client) reason() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}
