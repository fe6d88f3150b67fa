package stream

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"

	"golang.org/x/sys/unix"
)

// maxFilesPerMessage bounds the descriptors taken from one message; more
// are closed.
const maxFilesPerMessage = 4

// ReadLine reads one line (up to and with its newline, at most max bytes)
// from a unix socket, and the descriptors sent with it (SCM_RIGHTS), as
// non-blocking files registered with Go's poller. Bytes after the newline
// in the same read are dropped: a peer sends one line and waits for the
// answer.
func ReadLine(conn *os.File, max int) ([]byte, []*os.File, error) {
	raw, err := conn.SyscallConn()
	if err != nil {
		return nil, nil, err
	}
	var line []byte
	var files []*os.File
	buf := make([]byte, min(max, 64<<10))
	oob := make([]byte, unix.CmsgSpace(4*maxFilesPerMessage))
	for {
		var n, oobn int
		var recvErr error
		err := raw.Read(func(fd uintptr) bool {
			n, oobn, _, _, recvErr = unix.Recvmsg(int(fd), buf, oob, unix.MSG_CMSG_CLOEXEC)
			return recvErr != unix.EAGAIN
		})
		if err == nil {
			err = recvErr
		}
		if err == nil {
			var got []*os.File
			got, err = FilesOf(oob[:oobn])
			files = append(files, got...)
		}
		if err == nil && n == 0 {
			err = io.ErrUnexpectedEOF
		}
		if err != nil {
			closeFiles(files)
			return nil, nil, fmt.Errorf("read line: %w", err)
		}
		line = append(line, buf[:n]...)
		if i := bytes.IndexByte(line, '\n'); i >= 0 {
			return line[:i+1], files, nil
		}
		if len(line) >= max {
			closeFiles(files)
			return nil, nil, fmt.Errorf("read line: longer than %d bytes", max)
		}
	}
}

// WriteLine writes line to a unix socket in one message, with the
// descriptors of files attached.
func WriteLine(conn *os.File, line []byte, files ...*os.File) error {
	raw, err := conn.SyscallConn()
	if err != nil {
		return err
	}
	var oob []byte
	if len(files) > 0 {
		fds := make([]int, len(files))
		for i, f := range files {
			fdRaw, err := f.SyscallConn()
			if err != nil {
				return err
			}
			// Control, not Fd: Fd would make a pollable file blocking.
			if err := fdRaw.Control(func(fd uintptr) { fds[i] = int(fd) }); err != nil {
				return err
			}
		}
		oob = unix.UnixRights(fds...)
	}
	var sendErr error
	err = raw.Write(func(fd uintptr) bool {
		sendErr = unix.Sendmsg(int(fd), line, oob, nil, 0)
		return sendErr != unix.EAGAIN
	})
	if err == nil {
		err = sendErr
	}
	// The peer has its own copies once sendmsg returns: files stay the
	// caller's to close.
	if err != nil {
		return fmt.Errorf("write line: %w", err)
	}
	return nil
}

// FilesOf turns the descriptors an SCM_RIGHTS message carried (oob, the
// control part of a recvmsg) into non-blocking files registered with Go's
// poller, closing those past a few.
func FilesOf(oob []byte) ([]*os.File, error) {
	if len(oob) == 0 {
		return nil, nil
	}
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return nil, fmt.Errorf("parse control message: %w", err)
	}
	var files []*os.File
	var errs []error
	for _, m := range msgs {
		fds, err := unix.ParseUnixRights(&m)
		if err != nil {
			continue // another kind of control message
		}
		for _, fd := range fds {
			if len(files) == maxFilesPerMessage {
				unix.Close(fd)
				continue
			}
			// Non-blocking makes os.NewFile register it with the poller.
			if err := unix.SetNonblock(fd, true); err != nil {
				unix.Close(fd)
				errs = append(errs, err)
				continue
			}
			files = append(files, os.NewFile(uintptr(fd), "received"))
		}
	}
	return files, errors.Join(errs...)
}

func closeFiles(files []*os.File) {
	for _, f := range files {
		f.Close()
	}
}
