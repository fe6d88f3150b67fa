// Package stream is the framed protocol spoken over one byte stream (a unix
// socket) by polyvisor's console and exec sessions: the daemon, the CLI and
// polyvisor-monitor all read and write it.
//
// A frame is a 1-byte type, a 4-byte big-endian payload length and the
// payload. Frames of several types (stdout, stderr, exit) share one stream, so
// they must never interleave: write them through one FrameWriter per stream.
package stream

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// Frame types. The direction in each comment is the usual one; the protocol
// itself does not enforce it.
const (
	Stdin      byte = 0 // client to guest: bytes for the guest's input
	Stdout     byte = 1 // guest to client: output (a console's pty output is all Stdout)
	Stderr     byte = 2 // guest to client: error output of a non-tty exec
	Resize     byte = 3 // client to guest: terminal size, see EncodeResize
	CloseStdin byte = 4 // client to guest: no more input (EOF), empty payload
	Exit       byte = 5 // guest to client: the process exited, see EncodeExit
	Error      byte = 6 // either way: a UTF-8 message, the session ends
)

// HeaderSize is the size of a frame's type and length fields.
const HeaderSize = 5

// MaxPayload bounds a frame's payload, so a corrupt or hostile length field
// cannot make a reader allocate without limit.
const MaxPayload = 1 << 20

// ErrFrameTooLarge is returned for a payload longer than MaxPayload.
var ErrFrameTooLarge = errors.New("stream frame too large")

// Frame is one decoded frame.
type Frame struct {
	Type byte
	Data []byte
}

// WriteFrame writes one frame to w in a single Write call, so that a writer
// shared under a lock, or a datagram-like peer, sees whole frames.
func WriteFrame(w io.Writer, t byte, data []byte) error {
	if len(data) > MaxPayload {
		return fmt.Errorf("write frame type %d of %d bytes: %w", t, len(data), ErrFrameTooLarge)
	}
	buf := make([]byte, HeaderSize+len(data))
	buf[0] = t
	binary.BigEndian.PutUint32(buf[1:HeaderSize], uint32(len(data)))
	copy(buf[HeaderSize:], data)
	if _, err := w.Write(buf); err != nil {
		return fmt.Errorf("write frame type %d: %w", t, err)
	}
	return nil
}

// ReadFrame reads one frame from r. It returns io.EOF only when r ends
// cleanly between frames; a stream that ends inside a frame gives
// io.ErrUnexpectedEOF.
func ReadFrame(r io.Reader) (Frame, error) {
	var hdr [HeaderSize]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		if err == io.EOF {
			return Frame{}, io.EOF
		}
		return Frame{}, fmt.Errorf("read frame header: %w", err)
	}
	size := binary.BigEndian.Uint32(hdr[1:])
	if size > MaxPayload {
		return Frame{}, fmt.Errorf("read frame type %d of %d bytes: %w", hdr[0], size, ErrFrameTooLarge)
	}
	f := Frame{Type: hdr[0], Data: make([]byte, size)}
	if _, err := io.ReadFull(r, f.Data); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return Frame{}, fmt.Errorf("read frame type %d payload: %w", f.Type, err)
	}
	return f, nil
}
