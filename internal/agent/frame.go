package agent

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// Frame types. The direction is part of each type's meaning; a side that
// receives a type meant for the other direction ignores it.
const (
	typeHello      byte = 1  // host to guest, session 0: magic and nonce
	typeHelloAck   byte = 2  // guest to host, session 0: magic, nonce, GuestInfo as JSON
	typeExecStart  byte = 3  // host to guest: ExecRequest as JSON, opens the session
	typeStdin      byte = 4  // host to guest: bytes for the command's input
	typeCloseStdin byte = 5  // host to guest: end of input, empty
	typeResize     byte = 6  // host to guest: rows and cols, two big-endian uint16
	typeStdout     byte = 7  // guest to host: output (all of it, on a tty)
	typeStderr     byte = 8  // guest to host: error output of a non-tty command
	typeExit       byte = 9  // guest to host: big-endian int32 exit code, ends the session
	typeError      byte = 10 // either way: UTF-8 message, ends the session
	typePing       byte = 11 // host to guest, session 0: up to 64 bytes, echoed
	typePong       byte = 12 // guest to host, session 0: the ping's payload
	typeAck        byte = 13 // either way: big-endian uint32, bytes consumed (flow control)
	typeLinkAck    byte = 14 // session 0: host to guest, empty: send LinkAcks; guest to host: big-endian uint64, bytes read from the port (see LinkWindow)
	lastType            = typeLinkAck
)

// headerSize is the size of a frame's type, session id and length fields.
const headerSize = 9

// MaxPayload bounds a frame's payload, so a corrupt length field costs at
// most this much memory, and a frame cut off by a reconnect is short enough
// for the next Hello to be found soon after.
const MaxPayload = 64 << 10

// maxPingPayload bounds a Ping's payload: the agent echoes it.
const maxPingPayload = 64

// errBadFrame is wrapped by every framing error: an unknown type or an
// oversized length, which means the stream is out of step.
var errBadFrame = errors.New("bad agent frame")

// frame is one decoded frame.
type frame struct {
	typ     byte
	session uint32
	payload []byte
}

// header is a frame's fixed-size prefix.
type header struct {
	typ     byte
	session uint32
	length  uint32
}

// parseHeader reads a header from the first headerSize bytes of b.
func parseHeader(b []byte) header {
	return header{
		typ:     b[0],
		session: binary.BigEndian.Uint32(b[1:5]),
		length:  binary.BigEndian.Uint32(b[5:9]),
	}
}

// valid reports whether h can start a frame: a known type and a length
// within MaxPayload.
func (h header) valid() bool {
	return h.typ >= typeHello && h.typ <= lastType && h.length <= MaxPayload
}

// encodeFrame returns one frame as a single buffer, so that it reaches the
// stream in one Write and frames from several writers never interleave.
func encodeFrame(typ byte, session uint32, payload []byte) []byte {
	if len(payload) > MaxPayload {
		// Every caller chunks its data; a longer payload is a bug.
		panic(fmt.Sprintf("agent frame type %d of %d bytes", typ, len(payload)))
	}
	b := make([]byte, headerSize+len(payload))
	b[0] = typ
	binary.BigEndian.PutUint32(b[1:5], session)
	binary.BigEndian.PutUint32(b[5:9], uint32(len(payload)))
	copy(b[headerSize:], payload)
	return b
}

// readFrame reads one frame from r and trusts the stream to be in step:
// the host uses it once the handshake has found the guest's HelloAck. A
// stream that ends between frames gives io.EOF.
func readFrame(r io.Reader) (frame, error) {
	var hdr [headerSize]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		if errors.Is(err, io.EOF) {
			return frame{}, io.EOF
		}
		return frame{}, fmt.Errorf("read agent frame header: %w", err)
	}
	h := parseHeader(hdr[:])
	if !h.valid() {
		return frame{}, fmt.Errorf("frame type %d of %d bytes: %w", h.typ, h.length, errBadFrame)
	}
	f := frame{typ: h.typ, session: h.session, payload: make([]byte, h.length)}
	if _, err := io.ReadFull(r, f.payload); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return frame{}, fmt.Errorf("read agent frame type %d payload: %w", h.typ, err)
	}
	return f, nil
}
