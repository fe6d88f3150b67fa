package qmp

import (
	"bufio"
	"errors"
	"fmt"
	"syscall"
)

// readLoop is the Client's one reader goroutine: it routes replies to
// their Runs until the connection ends, then fails the Runs still waiting
// and closes Done.
func (c *Client) readLoop() {
	err := c.readMessages()
	c.closeSocket()

	c.mu.Lock()
	if c.cause == nil {
		// Nobody aborted the connection, so the stream ended by itself:
		// QEMU hung up, or what it sent broke the protocol.
		c.cause = fmt.Errorf("%w: %w", ErrClosed, err)
		c.hungUp = !errors.Is(err, errBadMessage)
	}
	for id, replies := range c.pending {
		replies <- reply{err: c.cause}
		delete(c.pending, id)
	}
	c.mu.Unlock()

	close(c.done)
}

// readMessages reads until the connection ends and says why it did.
func (c *Client) readMessages() error {
	for c.lines.Scan() {
		msg, err := decodeMessage(c.lines.Bytes())
		if err != nil {
			return err
		}
		if msg.kind == kindReply {
			c.deliverReply(msg)
		}
		// An event, a greeting after the first, or a kind of message QMP
		// may grow later carries nothing a Run waits for.
	}
	if err := c.lines.Err(); err != nil {
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
func (c *Client) deliverReply(msg message) {
	if !msg.idOK {
		return
	}
	c.mu.Lock()
	replies, ok := c.pending[msg.id]
	delete(c.pending, msg.id)
	c.mu.Unlock()
	if !ok {
		return
	}
	if msg.failed != nil {
		replies <- reply{err: msg.failed}
		return
	}
	replies <- reply{result: msg.result}
}
