package agent

import (
	"bytes"
	"context"
	"crypto/md5"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// fakeLinkAgent answers one client's Hello on a socket of its own, saying
// whether it sends LinkAcks, and hands the test the connection: the test
// plays the agent's reads.
func fakeLinkAgent(t *testing.T, linkAcks bool) (socket string, conns <-chan net.Conn) {
	t.Helper()
	dir, err := os.MkdirTemp("", "link")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	socket = filepath.Join(dir, "agent.sock")
	ln, err := net.Listen("unix", socket)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	out := make(chan net.Conn, 1)
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		f, err := readFrame(conn)
		if err != nil || f.typ != typeHello || len(f.payload) != helloSize {
			t.Errorf("first frame %+v, %v: want the Hello", f, err)
			conn.Close()
			return
		}
		n, _ := decodeHello(f.payload)
		ack, _ := encodeHelloAck(n, GuestInfo{Version: "test", LinkAcks: linkAcks})
		conn.Write(encodeFrame(typeHelloAck, 0, ack))
		out <- conn
	}()
	return socket, out
}

// readFor reads conn for d and returns how many bytes came.
func readFor(t *testing.T, conn net.Conn, d time.Duration) int {
	t.Helper()
	conn.SetReadDeadline(time.Now().Add(d))
	n, err := io.Copy(io.Discard, conn)
	var ne net.Error
	if err != nil && !(errors.As(err, &ne) && ne.Timeout()) {
		t.Fatalf("read from the client: %v", err)
	}
	return int(n)
}

// TestLinkWindowPacesTheClient checks that a client dialled with
// LinkWindow never has more than the window unread by an agent that sends
// LinkAcks, and goes on as the agent reports its reads; and that it does
// not wait for LinkAcks from an agent that does not send them.
func TestLinkWindowPacesTheClient(t *testing.T) {
	const win = 1000
	for _, linkAcks := range []bool{true, false} {
		t.Run(fmt.Sprintf("linkAcks=%v", linkAcks), func(t *testing.T) {
			socket, conns := fakeLinkAgent(t, linkAcks)
			ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
			defer cancel()
			c, err := Dial(ctx, socket, LinkWindow(win))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			conn := <-conns
			defer conn.Close()
			asked := 0 // bytes of the request for LinkAcks, counted too
			if linkAcks {
				conn.SetReadDeadline(time.Now().Add(testTimeout))
				f, err := readFrame(conn)
				if err != nil || f.typ != typeLinkAck || f.session != 0 || len(f.payload) != 0 {
					t.Fatalf("first frame after the handshake %+v, %v: want an empty LinkAck", f, err)
				}
				asked = headerSize
			}
			// Input far larger than the window, which the fake agent
			// never acknowledges at the session's level.
			input := strings.NewReader(strings.Repeat("x", 64<<10))
			execDone := make(chan struct{})
			execCtx, stopExec := context.WithCancel(ctx)
			go func() {
				defer close(execDone)
				c.Exec(execCtx, ExecRequest{Command: []string{"cat"}}, input, io.Discard, io.Discard, nil)
			}()
			defer func() { stopExec(); <-execDone }()

			read := readFor(t, conn, 300*time.Millisecond)
			if !linkAcks {
				if read <= win {
					t.Fatalf("an agent without LinkAcks got %d bytes, want more than the window of %d", read, win)
				}
				return
			}
			if read == 0 || asked+read > win {
				t.Fatalf("the agent got %d bytes (and the request) before any LinkAck, want 1 to %d in all", read, win)
			}
			// Each LinkAck lets up to one more window through.
			total := asked + read
			for i := 0; i < 5; i++ {
				conn.Write(encodeFrame(typeLinkAck, 0, encodeLinkAck(uint64(total))))
				got := readFor(t, conn, 300*time.Millisecond)
				if got == 0 || got > win {
					t.Fatalf("after LinkAck %d of %d bytes the agent got %d more, want 1 to %d", i, total, got, win)
				}
				total += got
			}
			// A stale (smaller) LinkAck grants nothing.
			conn.Write(encodeFrame(typeLinkAck, 0, encodeLinkAck(uint64(total-win))))
			if got := readFor(t, conn, 300*time.Millisecond); got != 0 {
				t.Fatalf("a stale LinkAck let %d bytes through", got)
			}
		})
	}
}

// TestLinkWindowWithARealAgent runs a paced client against the agent on a
// terminal (the stand-in port is a pty): the agent says it sends LinkAcks,
// and its totals must match the client's count exactly, or a small window
// would stall (totals too low) or let too much through (too high). Input
// many windows long crosses intact, and the connection answers after it.
func TestLinkWindowWithARealAgent(t *testing.T) {
	port := newGuest(t)
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	c, err := Dial(ctx, port.Socket, LinkWindow(700))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if !c.Info().LinkAcks {
		t.Fatal("the agent on a terminal does not say it sends LinkAcks")
	}
	input := make([]byte, 300<<10)
	rand.Read(input)
	want := fmt.Sprintf("%x", md5.Sum(input))
	var stdout, stderr bytes.Buffer
	code, err := c.Exec(ctx, ExecRequest{Command: []string{"md5sum"}}, bytes.NewReader(input), &stdout, &stderr, nil)
	if err != nil || code != 0 {
		t.Fatalf("md5sum: exit %d, %v: %s", code, err, stderr.String())
	}
	if got := strings.Fields(stdout.String()); len(got) == 0 || got[0] != want {
		t.Fatalf("md5sum of the input in the guest %q, want %s", stdout.String(), want)
	}
	for i := 0; i < 3; i++ {
		if r := execute(t, c, ExecRequest{Command: []string{"echo", "alive"}}, ""); r.stdout != "alive\n" {
			t.Fatalf("after the input: %+v", r)
		}
	}
	c.link.mu.Lock()
	paced, read := c.link.paced, c.link.read
	c.link.mu.Unlock()
	if !paced || read < uint64(len(input)) {
		t.Fatalf("client paced %v, agent's last LinkAck %d, want paced and at least the input's %d bytes", paced, read, len(input))
	}
}
