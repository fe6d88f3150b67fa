package qmp

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
)

// QMP is one JSON object per line in each direction. QEMU ends its lines
// with "\r\n" and, unless started with the monitor's pretty=on (which this
// package does not support), never breaks a message across lines.

// maxLineSize bounds one message from QEMU, so a broken peer cannot make the
// reader grow its buffer without limit. The largest real replies
// (query-qmp-schema, a long human-monitor-command output) are well under a
// megabyte.
const maxLineSize = 16 << 20

// newLineScanner returns a scanner that yields QEMU's messages one line at a
// time, without the line ending.
func newLineScanner(r io.Reader) *bufio.Scanner {
	s := bufio.NewScanner(r)
	s.Buffer(make([]byte, 0, 64<<10), maxLineSize)
	return s
}

// request is one command as it goes on the wire.
type request struct {
	Execute   string `json:"execute"`
	Arguments any    `json:"arguments,omitempty"`
	ID        uint64 `json:"id"`
}

// encodeRequest returns the wire line, newline included, for the command
// name with its arguments (nil for none) and the id its reply will carry.
func encodeRequest(name string, args any, id uint64) ([]byte, error) {
	line, err := json.Marshal(request{Execute: name, Arguments: args, ID: id})
	if err != nil {
		return nil, fmt.Errorf("encode arguments: %w", err)
	}
	return append(line, '\n'), nil
}

// messageKind tells what a line from QEMU is.
type messageKind int

const (
	kindUnknown  messageKind = iota // a well-formed object of no kind we know; skipped
	kindGreeting                    // {"QMP": {...}}, sent once on connect
	kindReply                       // {"return": ...} or {"error": {...}}, with the request's id
	kindEvent                       // {"event": ..., "data": ..., "timestamp": ...}; skipped
)

// message is one decoded line from QEMU.
type message struct {
	kind messageKind

	// For kindReply. idOK is false when the reply has no id (QEMU could not
	// parse the request) or one this package never sends (not an unsigned
	// integer): such a reply belongs to no Run.
	id     uint64
	idOK   bool
	result json.RawMessage // the "return" member; nil when failed is set
	failed *Error          // the "error" member
}

// wireMessage has every member of a server message that tells its kind or
// that a Run needs.
type wireMessage struct {
	QMP    json.RawMessage `json:"QMP"`
	Return json.RawMessage `json:"return"`
	Error  *Error          `json:"error"`
	ID     json.RawMessage `json:"id"`
	Event  *string         `json:"event"` // a name, or the message is not QMP
}

// errBadMessage is wrapped by decodeMessage's errors: the peer sent
// something that is not QMP, so the stream can no longer be trusted.
var errBadMessage = errors.New("bad message from peer")

// decodeMessage parses one line from QEMU. It does not keep line, so the
// caller may reuse its buffer.
func decodeMessage(line []byte) (message, error) {
	var w wireMessage
	if err := json.Unmarshal(line, &w); err != nil {
		return message{}, fmt.Errorf("%w: %w", errBadMessage, err)
	}
	// A RawMessage member is non-empty exactly when the member was present,
	// even as null, which is how "return" can be told from no "return".
	switch {
	case w.Return != nil || w.Error != nil:
		if w.Return != nil && w.Error != nil {
			return message{}, fmt.Errorf("%w: reply has both return and error", errBadMessage)
		}
		m := message{kind: kindReply, result: w.Return, failed: w.Error}
		m.id, m.idOK = parseID(w.ID)
		return m, nil
	case w.Event != nil:
		return message{kind: kindEvent}, nil
	case w.QMP != nil:
		return message{kind: kindGreeting}, nil
	case w.ID != nil:
		// An id promises a reply; one without a result would leave its Run
		// waiting, so it is not a message to skip.
		return message{}, fmt.Errorf("%w: reply has an id but neither return nor error", errBadMessage)
	}
	return message{kind: kindUnknown}, nil
}

// parseID reads a reply's id back as the integer Run sent.
func parseID(raw json.RawMessage) (uint64, bool) {
	if raw == nil {
		return 0, false
	}
	id, err := strconv.ParseUint(string(raw), 10, 64)
	return id, err == nil
}
