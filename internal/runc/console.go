// Package runc runs the OCI runtime (runc, or crun) for every part of
// polyvisor: each command logs in JSON to a file of its own, read for the
// error message, which is mapped to the api sentinels here and nowhere
// else; runs in its own process group; and cannot outlive its context or
// hold its caller past a WaitDelay. It also receives the console runc
// sends over --console-socket.
package runc

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/polyvisor/polyvisor/internal/stream"
)

// ConsoleListener is the unix socket named by runc's --console-socket. runc
// connects to it once and sends the pty master of the container (or of an
// `exec -t` process) in an SCM_RIGHTS message whose payload is the pty's
// name.
type ConsoleListener struct {
	ln *stream.Listener
}

// ListenConsole creates the console socket at path (mode 0600) and listens
// on it. A stale socket file at path is replaced.
func ListenConsole(path string) (*ConsoleListener, error) {
	ln, err := stream.Listen(path)
	if err != nil {
		return nil, fmt.Errorf("listen for console: %w", err)
	}
	return &ConsoleListener{ln: ln}, nil
}

// Path is the value for runc's --console-socket.
func (l *ConsoleListener) Path() string { return l.ln.Path() }

// Receive waits until runc connects and returns the pty master it sends,
// named after the pty. The file is non-blocking and registered with Go's
// poller, so a Read blocked on it returns when it is closed or its deadline
// passes (never call Fd on it: that makes it blocking again). Receive takes
// one connection: call it once per runc command.
func (l *ConsoleListener) Receive(ctx context.Context) (*os.File, error) {
	conn, err := l.ln.Accept(ctx)
	if err != nil {
		return nil, fmt.Errorf("receive console: %w", err)
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { _ = conn.SetReadDeadline(time.Unix(1, 0)) })
	defer stop()

	master, err := receiveFile(conn)
	if err != nil {
		if ctx.Err() != nil && errors.Is(err, os.ErrDeadlineExceeded) {
			err = ctx.Err()
		}
		return nil, fmt.Errorf("receive console on %s: %w", l.Path(), err)
	}
	return master, nil
}

// Close stops listening and removes the socket file.
func (l *ConsoleListener) Close() error {
	return l.ln.Close()
}

// receiveFile reads one message from conn and returns the first file
// descriptor it carries, named by the message's payload. Any further
// descriptors are closed.
func receiveFile(conn *os.File) (*os.File, error) {
	raw, err := conn.SyscallConn()
	if err != nil {
		return nil, err
	}
	name := make([]byte, 4096)
	oob := make([]byte, unix.CmsgSpace(4*4)) // room for a few fds; runc sends one
	var n, oobn int
	var recvErr error
	err = raw.Read(func(fd uintptr) bool {
		n, oobn, _, _, recvErr = unix.Recvmsg(int(fd), name, oob, unix.MSG_CMSG_CLOEXEC)
		return recvErr != unix.EAGAIN
	})
	if err == nil {
		err = recvErr
	}
	if err != nil {
		return nil, fmt.Errorf("recvmsg: %w", err)
	}
	fds, err := parseRights(oob[:oobn])
	if err != nil {
		return nil, err
	}
	if len(fds) == 0 {
		return nil, fmt.Errorf("message of %d bytes carries no file descriptor", n)
	}
	for _, extra := range fds[1:] {
		unix.Close(extra)
	}
	// Non-blocking makes os.NewFile register the fd with the poller, so
	// reading it parks a goroutine instead of a thread.
	if err := unix.SetNonblock(fds[0], true); err != nil {
		unix.Close(fds[0])
		return nil, fmt.Errorf("make console non-blocking: %w", err)
	}
	// A sender with nothing to say sends one NUL byte with the descriptor.
	fileName := strings.TrimRight(string(name[:n]), "\x00")
	if fileName == "" {
		fileName = "console"
	}
	return os.NewFile(uintptr(fds[0]), fileName), nil
}

// parseRights returns the file descriptors carried by the SCM_RIGHTS
// messages in oob.
func parseRights(oob []byte) ([]int, error) {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return nil, fmt.Errorf("parse control message: %w", err)
	}
	var fds []int
	for _, m := range msgs {
		got, err := unix.ParseUnixRights(&m)
		if err != nil {
			continue // another kind of control message
		}
		fds = append(fds, got...)
	}
	return fds, nil
}
