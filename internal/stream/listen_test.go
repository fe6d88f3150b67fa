package stream

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestListenAcceptAndReuseAfterCancel(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.sock")
	l, err := Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("socket mode: %v %v", fi.Mode(), err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := l.Accept(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("accept with a done context: %v", err)
	}

	client, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	conn, err := l.Accept(context.Background())
	if err != nil {
		t.Fatalf("accept after a cancelled one: %v", err)
	}
	defer conn.Close()
	if err := WriteFrame(client, Stdin, []byte("hi")); err != nil {
		t.Fatal(err)
	}
	f, err := ReadFrame(conn)
	if err != nil || f.Type != Stdin || string(f.Data) != "hi" {
		t.Fatalf("frame over accepted conn: %+v %v", f, err)
	}
}

func TestListenerCloseWakesAccept(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.sock")
	l, err := Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() {
		_, err := l.Accept(context.Background())
		errc <- err
	}()
	time.Sleep(20 * time.Millisecond)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-errc:
		if !errors.Is(err, os.ErrClosed) {
			t.Fatalf("accept after close: %v, want os.ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not wake Accept")
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("socket file left: %v", err)
	}
}

func TestListenReplacesStaleSocket(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.sock")
	first, err := Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	first.sock.Close() // a dead process's socket: the file stays
	second, err := Listen(path)
	if err != nil {
		t.Fatalf("listen over a stale socket: %v", err)
	}
	second.Close()
	if _, err := Listen(filepath.Join(t.TempDir(), string(make([]byte, 120)))); err == nil {
		t.Fatal("an over-long path was accepted")
	}
}
