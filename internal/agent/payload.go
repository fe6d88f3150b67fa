package agent

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
)

// magic opens the payload of Hello and HelloAck. With the header before it
// it makes a signature that ordinary data does not contain, which is how
// either side finds the start of a new host connection in a stream that may
// hold the remains of an old one. The final "1" is the protocol version.
const magic = "polyvisor/agent1"

// nonceSize is the size of a host connection's random nonce.
const nonceSize = 16

// helloSize is the payload size of a Hello: magic and nonce.
const helloSize = len(magic) + nonceSize

// nonce identifies one host connection (one Dial).
type nonce [nonceSize]byte

// newNonce returns a random nonce.
func newNonce() (nonce, error) {
	var n nonce
	if _, err := rand.Read(n[:]); err != nil {
		return n, fmt.Errorf("make hello nonce: %w", err)
	}
	return n, nil
}

// errBadPayload is wrapped when a frame's payload does not fit its type.
var errBadPayload = errors.New("bad agent frame payload")

// helloSignature returns the bytes every Hello frame starts with: its
// header (whose length is always helloSize) and the magic.
func helloSignature() []byte {
	return encodeFrame(typeHello, 0, encodeHello(nonce{}))[:headerSize+len(magic)]
}

// encodeHello returns a Hello frame's payload.
func encodeHello(n nonce) []byte {
	return append([]byte(magic), n[:]...)
}

// decodeHello reads the nonce from a Hello frame's payload.
func decodeHello(p []byte) (nonce, error) {
	var n nonce
	if len(p) != helloSize || !bytes.HasPrefix(p, []byte(magic)) {
		return n, fmt.Errorf("hello of %d bytes: %w", len(p), errBadPayload)
	}
	copy(n[:], p[len(magic):])
	return n, nil
}

// GuestInfo is what the agent reports about its guest in the handshake.
type GuestInfo struct {
	// Version is the agent's version (Version in the agent's build).
	Version string `json:"version"`
	// Arch is the guest kernel's machine name, as `uname -m` prints it
	// (x86_64, aarch64, riscv64).
	Arch string `json:"arch"`
	// Hostname is the guest's host name.
	Hostname string `json:"hostname"`
	// LinkAcks says that the agent sends LinkAck frames, which a client
	// dialled with LinkWindow paces its writes by. An agent whose port is
	// a terminal (a serial line) sends them.
	LinkAcks bool `json:"link_acks,omitempty"`
}

// encodeHelloAck returns a HelloAck frame's payload.
func encodeHelloAck(n nonce, info GuestInfo) ([]byte, error) {
	js, err := json.Marshal(info)
	if err != nil {
		return nil, fmt.Errorf("encode guest info: %w", err)
	}
	p := append(encodeHello(n), js...)
	if len(p) > MaxPayload {
		return nil, fmt.Errorf("guest info of %d bytes: %w", len(js), errBadPayload)
	}
	return p, nil
}

// decodeHelloAck reads a HelloAck frame's payload.
func decodeHelloAck(p []byte) (nonce, GuestInfo, error) {
	var info GuestInfo
	if len(p) < helloSize {
		return nonce{}, info, fmt.Errorf("hello ack of %d bytes: %w", len(p), errBadPayload)
	}
	n, err := decodeHello(p[:helloSize])
	if err != nil {
		return n, info, err
	}
	if err := json.Unmarshal(p[helloSize:], &info); err != nil {
		return n, info, fmt.Errorf("decode guest info: %w", err)
	}
	return n, info, nil
}

// ExecRequest is a command to run in the guest: the payload of ExecStart,
// as JSON. It has the fields of api.ExecRequest, so the daemon can pass one
// on as it is.
type ExecRequest struct {
	// Command is the program and its arguments; a program without a slash
	// is looked up in the PATH the command gets.
	Command []string `json:"command"`
	// Env is added to the agent's default environment (PATH, HOME, and
	// TERM on a tty), as KEY=VALUE; a later value of a key wins.
	Env []string `json:"env,omitempty"`
	// Cwd is the working directory, "/" when empty.
	Cwd string `json:"cwd,omitempty"`
	// TTY runs the command on a new pseudo-terminal, whose output all
	// comes as stdout.
	TTY bool `json:"tty,omitempty"`
	// Rows and Cols are the terminal's initial size; it is left at the
	// kernel's default unless both are set.
	Rows uint16 `json:"rows,omitempty"`
	Cols uint16 `json:"cols,omitempty"`
}

// decodeExecRequest reads and checks an ExecStart frame's payload.
func decodeExecRequest(p []byte) (ExecRequest, error) {
	var req ExecRequest
	if err := json.Unmarshal(p, &req); err != nil {
		return req, fmt.Errorf("decode exec request: %w", err)
	}
	if len(req.Command) == 0 || req.Command[0] == "" {
		return req, fmt.Errorf("exec request without a command: %w", errBadPayload)
	}
	return req, nil
}

// encodeAck returns an Ack frame's payload: n, the bytes consumed, as a
// 4-byte big-endian number.
func encodeAck(n uint32) []byte {
	return binary.BigEndian.AppendUint32(nil, n)
}

// decodeAck reads an Ack frame's payload.
func decodeAck(p []byte) (uint32, error) {
	if len(p) != 4 {
		return 0, fmt.Errorf("ack payload of %d bytes, want 4: %w", len(p), errBadPayload)
	}
	return binary.BigEndian.Uint32(p), nil
}

// encodeLinkAck returns a LinkAck frame's payload: the bytes the agent has
// read from its port since the end of the current host's first Hello, as
// an 8-byte big-endian number. It is a running total, so a lost or
// skipped LinkAck is made good by the next.
func encodeLinkAck(total uint64) []byte {
	return binary.BigEndian.AppendUint64(nil, total)
}

// decodeLinkAck reads a LinkAck frame's payload.
func decodeLinkAck(p []byte) (uint64, error) {
	if len(p) != 8 {
		return 0, fmt.Errorf("link ack payload of %d bytes, want 8: %w", len(p), errBadPayload)
	}
	return binary.BigEndian.Uint64(p), nil
}
