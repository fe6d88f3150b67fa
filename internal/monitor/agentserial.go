package monitor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/creack/pty"
	"golang.org/x/term"

	"github.com/polyvisor/polyvisor/internal/fsutil"
	"github.com/polyvisor/polyvisor/internal/stream"
)

// AgentPtyArg is replaced, inside every argument of Config.Command, by the
// path of the agent serial's pty slave (/dev/pts/N), for a guest whose
// emulator attaches a serial line to an existing terminal (UML's
// ssl1=tty:PATH, Bochs's com2 mode=term).
const AgentPtyArg = "{agent-pty}"

// clientWriteTimeout bounds a write to the agent serial's client: one that
// reads nothing for that long is dropped rather than stalling the guest.
const clientWriteTimeout = 10 * time.Second

// agentSerial carries the guest agent's serial line: a second pty, in raw
// mode, whose slave the guest's emulator opens by path, relayed to one
// client at a time on a unix socket; a new client replaces the old one.
// The host side dials the socket as it dials QEMU's virtio-serial chardev
// socket: what the guest writes while no client is connected is dropped,
// and the agent's protocol resynchronises on the next client's Hello.
type agentSerial struct {
	master *os.File         // pollable: closing it ends the relay's reads
	slave  *os.File         // held for the guest's life, so the master never reads EIO
	ln     *stream.Listener // no package net: the monitor stays small (see doc.go)
	log    *slog.Logger
	stop   context.CancelFunc // ends the accept loop

	mu   sync.Mutex
	conn *os.File // the current client, if any

	wg sync.WaitGroup // the accept loop, the guest-to-client loop, each client's loop
}

// openAgentSerial makes the pty pair and listens on socket (mode 0600).
func openAgentSerial(socket string, log *slog.Logger) (_ *agentSerial, err error) {
	m, slave, err := pty.Open()
	if err != nil {
		return nil, fmt.Errorf("open agent pty: %w", err)
	}
	defer func() {
		if err != nil {
			slave.Close()
		}
	}()
	// Raw: the line carries the agent's binary frames, and a cooked one
	// would turn \n into \r\n and eat ^C, ^D and ^S. The pair shares one
	// line discipline, set through the slave.
	if _, err := term.MakeRaw(int(slave.Fd())); err != nil {
		m.Close()
		return nil, fmt.Errorf("agent pty: set raw mode: %w", err)
	}
	master, err := fsutil.Pollable(m)
	if err != nil {
		return nil, fmt.Errorf("agent pty: %w", err)
	}
	ln, err := stream.Listen(socket) // mode 0600: the agent runs as the guest's root
	if err != nil {
		master.Close()
		return nil, fmt.Errorf("agent socket: %w", err)
	}
	return &agentSerial{master: master, slave: slave, ln: ln, log: log}, nil
}

// slavePath is the pty slave the guest opens.
func (a *agentSerial) slavePath() string { return a.slave.Name() }

// serve starts relaying; close stops it.
func (a *agentSerial) serve() {
	ctx, stop := context.WithCancel(context.Background())
	a.stop = stop
	a.wg.Add(2)
	go a.accept(ctx)
	go a.guestToClient()
}

// close stops the relay, drops the client and releases the pty and the
// socket, and waits for the relay's goroutines.
func (a *agentSerial) close() {
	if a.stop != nil {
		a.stop()
	}
	a.ln.Close() // removes the socket file too
	a.mu.Lock()
	if a.conn != nil {
		a.conn.Close()
		a.conn = nil
	}
	a.mu.Unlock()
	a.master.Close()
	a.slave.Close()
	a.wg.Wait()
}

// accept takes clients: each replaces the one before.
func (a *agentSerial) accept(ctx context.Context) {
	defer a.wg.Done()
	for {
		conn, err := a.ln.Accept(ctx)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, os.ErrClosed) {
				return
			}
			// Out of descriptors, most likely: wait rather than spin.
			a.log.Warn("agent serial: accept", "err", err)
			time.Sleep(100 * time.Millisecond)
			continue
		}
		a.mu.Lock()
		if a.conn != nil {
			a.conn.Close()
		}
		a.conn = conn
		a.mu.Unlock()
		a.wg.Add(1)
		go a.clientToGuest(conn)
	}
}

// clientToGuest copies what conn sends to the guest until conn ends or
// another client replaces it.
func (a *agentSerial) clientToGuest(conn *os.File) {
	defer a.wg.Done()
	defer func() {
		a.mu.Lock()
		if a.conn == conn {
			a.conn = nil
		}
		a.mu.Unlock()
		conn.Close()
	}()
	buf := make([]byte, 32<<10)
	for {
		n, err := conn.Read(buf)
		if n > 0 {
			a.mu.Lock()
			current := a.conn == conn
			a.mu.Unlock()
			if !current {
				return
			}
			if _, werr := a.master.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// guestToClient copies what the guest writes to the current client, or
// drops it when there is none.
func (a *agentSerial) guestToClient() {
	defer a.wg.Done()
	buf := make([]byte, 32<<10)
	for {
		n, err := a.master.Read(buf)
		if n > 0 {
			a.mu.Lock()
			conn := a.conn
			a.mu.Unlock()
			if conn != nil {
				// A client that stops reading is dropped, not waited for.
				conn.SetWriteDeadline(time.Now().Add(clientWriteTimeout))
				if _, werr := conn.Write(buf[:n]); werr != nil {
					conn.Close()
				}
			}
		}
		if err != nil {
			return
		}
	}
}

// substituteAgentPty returns args with AgentPtyArg replaced by path.
func substituteAgentPty(args []string, path string) []string {
	out := make([]string, len(args))
	for i, arg := range args {
		out[i] = strings.ReplaceAll(arg, AgentPtyArg, path)
	}
	return out
}
