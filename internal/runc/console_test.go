package runc

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// openPty opens a pty pair the way runc does: /dev/ptmx, unlock, open the
// peer by number.
func openPty(t *testing.T) (master *os.File, peerName string, peer *os.File) {
	t.Helper()
	mfd, err := unix.Open("/dev/ptmx", unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Skipf("no pty available: %v", err)
	}
	master = os.NewFile(uintptr(mfd), "/dev/ptmx")
	t.Cleanup(func() { master.Close() })
	if err := unix.IoctlSetPointerInt(mfd, unix.TIOCSPTLCK, 0); err != nil {
		t.Fatalf("unlock pty: %v", err)
	}
	n, err := unix.IoctlGetUint32(mfd, unix.TIOCGPTN)
	if err != nil {
		t.Fatalf("pty number: %v", err)
	}
	peerName = "/dev/pts/" + strconv.Itoa(int(n))
	peer, err = os.OpenFile(peerName, os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatalf("open pty peer: %v", err)
	}
	t.Cleanup(func() { peer.Close() })
	return master, peerName, peer
}

// sendFd connects to path and sends fd with name as payload, as runc's
// utils.SendFds does.
func sendFd(t *testing.T, path, name string, fd int) {
	t.Helper()
	s, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(s)
	if err := unix.Connect(s, &unix.SockaddrUnix{Name: path}); err != nil {
		t.Fatalf("connect: %v", err)
	}
	if err := unix.Sendmsg(s, []byte(name), unix.UnixRights(fd), nil, 0); err != nil {
		t.Fatalf("sendmsg: %v", err)
	}
}

func TestReceiveConsole(t *testing.T) {
	path := filepath.Join(t.TempDir(), "console.sock")
	l, err := ListenConsole(path)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("socket file: %v, %v; want mode 0600", fi.Mode(), err)
	}

	master, peerName, peer := openPty(t)
	sendFd(t, path, peerName, int(master.Fd()))
	master.Close() // the received copy must stand alone, as runc exits after sending

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	got, err := l.Receive(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer got.Close()
	if got.Name() != peerName {
		t.Errorf("received file is named %q, want %q", got.Name(), peerName)
	}

	if _, err := peer.Write([]byte("from-guest\n")); err != nil {
		t.Fatal(err)
	}
	if err := got.SetReadDeadline(time.Now().Add(5 * time.Second)); err != nil {
		t.Fatalf("received console is not pollable: %v", err)
	}
	buf := make([]byte, 100)
	n, err := got.Read(buf)
	if err != nil || !bytes.Contains(buf[:n], []byte("from-guest")) {
		t.Fatalf("read from received master: %q %v", buf[:n], err)
	}

	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("socket file left after Close: %v", err)
	}
}

func TestReceiveConsolePipe(t *testing.T) {
	path := filepath.Join(t.TempDir(), "console.sock")
	l, err := ListenConsole(path)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	sendFd(t, path, "", int(r.Fd()))
	r.Close()

	got, err := l.Receive(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer got.Close()
	if got.Name() != "console" {
		t.Errorf("unnamed descriptor is named %q, want console", got.Name())
	}
	w.Write([]byte("x"))
	buf := make([]byte, 1)
	if _, err := got.Read(buf); err != nil || buf[0] != 'x' {
		t.Fatalf("read from received pipe: %q %v", buf, err)
	}
}

func TestReceiveConsoleCancelled(t *testing.T) {
	l, err := ListenConsole(filepath.Join(t.TempDir(), "console.sock"))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := l.Receive(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("got %v, want context.DeadlineExceeded", err)
	}
}

func TestReceiveConsoleWithoutFd(t *testing.T) {
	path := filepath.Join(t.TempDir(), "console.sock")
	l, err := ListenConsole(path)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	s, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(s)
	if err := unix.Connect(s, &unix.SockaddrUnix{Name: path}); err != nil {
		t.Fatal(err)
	}
	unix.Write(s, []byte("no fd here"))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := l.Receive(ctx); err == nil {
		t.Fatal("a message without a descriptor was accepted")
	}
}

func TestListenConsoleRefusesNonSocket(t *testing.T) {
	path := filepath.Join(t.TempDir(), "console.sock")
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := ListenConsole(path); err == nil {
		t.Fatal("ListenConsole replaced a regular file")
	}
}
