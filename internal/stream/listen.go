package stream

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// maxSocketPath is the room for a path in sockaddr_un, less its final NUL.
const maxSocketPath = len(unix.RawSockaddrUnix{}.Path) - 1

// Listener is a unix stream socket that accepts stream sessions (and runc's
// console connections). Connections come back as pollable *os.File values.
//
// It is built on raw syscalls rather than package net so that
// polyvisor-monitor, which runs once per guest, stays small and statically
// linked however it is built.
type Listener struct {
	sock   *os.File
	path   string
	closed atomic.Bool
}

// Listen creates a unix stream socket at path with mode 0600 and listens on
// it. A socket file left at path by a dead process is replaced; any other
// kind of file there is an error.
func Listen(path string) (*Listener, error) {
	if len(path) > maxSocketPath {
		return nil, fmt.Errorf("listen on %s: path is %d bytes, the limit is %d", path, len(path), maxSocketPath)
	}
	if err := removeStaleSocket(path); err != nil {
		return nil, fmt.Errorf("listen on %s: %w", path, err)
	}
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: socket: %w", path, err)
	}
	if err := bindAndListen(fd, path); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("listen on %s: %w", path, err)
	}
	return &Listener{sock: os.NewFile(uintptr(fd), path), path: path}, nil
}

func bindAndListen(fd int, path string) error {
	if err := unix.Bind(fd, &unix.SockaddrUnix{Name: path}); err != nil {
		return fmt.Errorf("bind: %w", err)
	}
	// Bind made the file under the umask. Narrow it before listen, so no
	// one else can ever connect.
	if err := os.Chmod(path, 0o600); err != nil {
		os.Remove(path)
		return fmt.Errorf("chmod: %w", err)
	}
	if err := unix.Listen(fd, 16); err != nil {
		os.Remove(path)
		return fmt.Errorf("listen: %w", err)
	}
	return nil
}

// removeStaleSocket removes a socket file at path, and refuses to remove
// anything that is not a socket.
func removeStaleSocket(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if fi.Mode()&os.ModeSocket == 0 {
		return fmt.Errorf("%s exists and is not a socket", path)
	}
	return os.Remove(path)
}

// Path is the socket's file name.
func (l *Listener) Path() string { return l.path }

// Accept waits for one connection and returns it as a non-blocking file
// registered with Go's poller: Read, Write and Close work as on a net.Conn,
// deadlines included. It returns when ctx is done or the Listener is closed.
// Call it from one goroutine at a time: a done ctx wakes every Accept.
func (l *Listener) Accept(ctx context.Context) (*os.File, error) {
	// Undo the wake-up deadline an earlier, cancelled Accept left.
	if err := l.sock.SetReadDeadline(time.Time{}); err != nil {
		return nil, fmt.Errorf("accept on %s: %w", l.path, err)
	}
	stop := context.AfterFunc(ctx, func() {
		// A deadline in the past fails the wait below at once.
		_ = l.sock.SetReadDeadline(time.Unix(1, 0))
	})
	defer stop()

	raw, err := l.sock.SyscallConn()
	if err != nil {
		return nil, fmt.Errorf("accept on %s: %w", l.path, err)
	}
	var nfd int
	var acceptErr error
	err = raw.Read(func(fd uintptr) bool {
		nfd, _, acceptErr = unix.Accept4(int(fd), unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC)
		return acceptErr != unix.EAGAIN
	})
	if err == nil {
		err = acceptErr
	}
	if err != nil {
		switch {
		case l.closed.Load():
			err = os.ErrClosed // rather than the poller's internal error
		case ctx.Err() != nil:
			err = ctx.Err()
		}
		return nil, fmt.Errorf("accept on %s: %w", l.path, err)
	}
	return os.NewFile(uintptr(nfd), l.path+" (conn)"), nil
}

// Close stops listening, unblocks Accept (which then fails with
// os.ErrClosed) and removes the socket file.
func (l *Listener) Close() error {
	l.closed.Store(true)
	err := l.sock.Close()
	if rmErr := os.Remove(l.path); rmErr != nil && !errors.Is(rmErr, os.ErrNotExist) && err == nil {
		err = rmErr
	}
	if err != nil {
		return fmt.Errorf("close listener %s: %w", l.path, err)
	}
	return nil
}
