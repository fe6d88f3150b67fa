package stream

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// The fixed-size payloads below are also those of the guest agent's Resize
// and Exit frames (package agent): one codec for both protocols.

// ErrBadPayload is returned when a frame's payload has the wrong size for
// its type.
var ErrBadPayload = errors.New("bad stream frame payload")

// EncodeResize returns the payload of a Resize frame.
func EncodeResize(rows, cols uint16) []byte {
	p := make([]byte, 4)
	binary.BigEndian.PutUint16(p[0:2], rows)
	binary.BigEndian.PutUint16(p[2:4], cols)
	return p
}

// DecodeResize reads the terminal size from a Resize frame's payload.
func DecodeResize(p []byte) (rows, cols uint16, err error) {
	if len(p) != 4 {
		return 0, 0, fmt.Errorf("resize payload of %d bytes, want 4: %w", len(p), ErrBadPayload)
	}
	return binary.BigEndian.Uint16(p[0:2]), binary.BigEndian.Uint16(p[2:4]), nil
}

// EncodeExit returns the payload of an Exit frame.
func EncodeExit(code int32) []byte {
	p := make([]byte, 4)
	binary.BigEndian.PutUint32(p, uint32(code))
	return p
}

// DecodeExit reads the exit code from an Exit frame's payload.
func DecodeExit(p []byte) (int32, error) {
	if len(p) != 4 {
		return 0, fmt.Errorf("exit payload of %d bytes, want 4: %w", len(p), ErrBadPayload)
	}
	return int32(binary.BigEndian.Uint32(p)), nil
}
