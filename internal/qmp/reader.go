package qmp

import (
	"bufio"
	"errors"
	"fmt"
	"syscall"
)

// readLoop is the Monitor's one reader goroutine: it routes replies to
// their Runs and events to Events until the connection ends, then fails
// the Runs still waiting and closes Events and Done.
func (m *Monitor) readLoop() {
	err := m.readMessages()
	m.closeSocket()

	m.mu.Lock()
	if m.cause == nil {
		// Nobody aborted the connection, so the stream ended by itself:
		// QEMU hung up, or what it sent broke the protocol.
		m.cause = fmt.Errorf("%w: %w", ErrClosed, err)
		m.hungUp = !errors.Is(err, errBadMessage)
	}
	for id, replies := range m.pending {
		replies <- reply{err: m.cause}
		delete(m.pending, id)
	}
	m.mu.Unlock()

	close(m.events)
	close(m.done)
}

// readMessages reads until the connection ends and says why it did.
func (m *Monitor) readMessages() error {
	for m.lines.Scan() {
		msg, err := decodeMessage(m.lines.Bytes())
		if err != nil {
			return err
		}
		switch msg.kind {
		case kindReply:
			m.deliverReply(msg)
		case kindEvent:
			m.deliverEvent(msg.event)
		}
		// A greeting after the first, or a kind of message QMP may grow
		// later, carries nothing a Run or an event consumer waits for.
	}
	if err := m.lines.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return fmt.Errorf("%w: line longer than %d bytes", errBadMessage, maxLineSize)
		}
		if errors.Is(err, syscall.ECONNRESET) {
			// QEMU often exits with bytes of ours unread, which turns its
			// close into a reset: a hang-up all the same.
			return fmt.Errorf("%w: %w", errPeerEOF, err)
		}
		return fmt.Errorf("read: %w", err)
	}
	return errPeerEOF
}

// errPeerEOF is the cause of a connection QEMU closed cleanly.
var errPeerEOF = errors.New("peer hung up")

// deliverReply hands a reply to the Run waiting for its id. A reply nobody
// waits for is dropped: its Run gave up when its ctx ended, or QEMU could
// not read the request's id (the reply then has none).
func (m *Monitor) deliverReply(msg message) {
	if !msg.idOK {
		return
	}
	m.mu.Lock()
	replies, ok := m.pending[msg.id]
	delete(m.pending, msg.id)
	m.mu.Unlock()
	if !ok {
		return
	}
	if msg.failed != nil {
		replies <- reply{err: msg.failed}
		return
	}
	replies <- reply{result: msg.result}
}

// deliverEvent queues an event for Events without ever blocking: when the
// buffer is full it drops the oldest event to make room. Only this
// goroutine sends on m.events, so once one event is taken out there is
// room for this one.
func (m *Monitor) deliverEvent(ev Event) {
	select {
	case m.events <- ev:
		return
	default:
	}
	select {
	case <-m.events:
		m.dropped.Add(1)
	default: // the consumer made room meanwhile
	}
	m.events <- ev
}
