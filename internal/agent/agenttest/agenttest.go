// Package agenttest stands in for a VM's agent port in tests: a pty pair
// whose slave the agent serves (polyvisor-agent --port), and a unix
// socket, like the one QEMU serves for the port's chardev, relayed to the
// pty's master. The host side dials the socket as it would QEMU's.
//
// Like QEMU, the relay serves one host connection at a time and keeps the
// guest's side open across them; unlike QEMU, it drops what the guest
// writes while no host is connected instead of holding the guest's writes
// back, and a guest reading the pty never sees end-of-file. Both make the
// channel harsher than the real one.
package agenttest

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/creack/pty"
	"golang.org/x/term"

	"github.com/polyvisor/polyvisor/internal/fsutil"
)

// Port is one stand-in port.
type Port struct {
	// Device is the path the agent serves: the pty's slave, in raw mode.
	Device string
	// Socket is the unix socket the host dials.
	Socket string

	master *os.File // pollable, so that closing it stops the relay
	slave  *os.File // held so that the master never reads EIO between agents
	ln     net.Listener

	mu   sync.Mutex
	conn net.Conn // the host connected now, if any

	wg sync.WaitGroup // the relay's goroutines
}

// NewPort makes a port whose socket lives in a temporary directory, and
// tears it down when the test ends.
func NewPort(t testing.TB) *Port {
	t.Helper()
	m, slave, err := pty.Open()
	if err != nil {
		t.Fatalf("open pty: %v", err)
	}
	master, err := fsutil.Pollable(m)
	if err != nil {
		m.Close()
		slave.Close()
		t.Fatalf("pty master: %v", err)
	}
	if err := makeRaw(slave); err != nil {
		master.Close()
		slave.Close()
		t.Fatalf("pty slave: %v", err)
	}
	// A short directory: a unix socket path must fit in 108 bytes.
	dir, err := os.MkdirTemp("", "agent")
	if err != nil {
		t.Fatal(err)
	}
	p := &Port{Device: slave.Name(), Socket: filepath.Join(dir, "agent.sock"), master: master, slave: slave}
	p.ln, err = net.Listen("unix", p.Socket)
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	p.wg.Add(2)
	go p.accept()
	go p.guestToHost()
	t.Cleanup(func() {
		p.ln.Close()
		p.Disconnect()
		p.master.Close()
		p.slave.Close()
		p.wg.Wait()
		os.RemoveAll(dir)
	})
	return p
}

// Disconnect drops the connected host, as when QEMU's client goes away,
// except that the guest is not told (QEMU makes its reads return
// end-of-file) and what was in flight is lost.
func (p *Port) Disconnect() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.conn != nil {
		p.conn.Close()
	}
}

// accept serves one host at a time, copying what it sends to the guest.
func (p *Port) accept() {
	defer p.wg.Done()
	for {
		conn, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		p.conn = conn
		p.mu.Unlock()
		buf := make([]byte, 32<<10)
		for {
			n, err := conn.Read(buf)
			if n > 0 {
				if _, werr := p.master.Write(buf[:n]); werr != nil {
					err = werr
				}
			}
			if err != nil {
				break
			}
		}
		p.mu.Lock()
		p.conn = nil
		p.mu.Unlock()
		conn.Close()
	}
}

// guestToHost copies what the guest writes to the connected host, or
// drops it when there is none.
func (p *Port) guestToHost() {
	defer p.wg.Done()
	buf := make([]byte, 32<<10)
	for {
		n, err := p.master.Read(buf)
		if n > 0 {
			p.mu.Lock()
			if p.conn != nil {
				p.conn.Write(buf[:n])
			}
			p.mu.Unlock()
		}
		if err != nil {
			return
		}
	}
}

// makeRaw puts the terminal f in raw mode, so that it carries bytes
// unchanged.
func makeRaw(f *os.File) error {
	if _, err := term.MakeRaw(int(f.Fd())); err != nil {
		return fmt.Errorf("set raw mode: %w", err)
	}
	return nil
}
