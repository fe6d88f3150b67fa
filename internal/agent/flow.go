package agent

import "sync"

// window is the number of data bytes a session may have in flight in one
// direction before the receiver acknowledges them with Ack frames.
//
// Flow control is per session because all sessions share one stream: a
// command that does not read its input, or a host caller that does not read
// a command's output, must hold up only its own session. Without it, one
// stalled session would fill the buffers in between and stop every other
// session, and the guest's reader would stop seeing Hellos.
const window = 256 << 10

// credit counts the bytes a sender may still send on one session. It is
// safe for concurrent use.
type credit struct {
	mu    sync.Mutex
	avail int
	more  chan struct{} // signalled when avail grows
}

// newCredit returns a credit of n bytes.
func newCredit(n int) *credit {
	return &credit{avail: n, more: make(chan struct{}, 1)}
}

// take waits until some credit is available and takes up to want bytes of
// it. It returns false, taking nothing, once done is closed.
func (c *credit) take(done <-chan struct{}, want int) (int, bool) {
	for {
		c.mu.Lock()
		if c.avail > 0 {
			n := min(c.avail, want)
			c.avail -= n
			if c.avail > 0 {
				c.signal() // another taker may be waiting
			}
			c.mu.Unlock()
			return n, true
		}
		c.mu.Unlock()
		select {
		case <-c.more:
		case <-done:
			return 0, false
		}
	}
}

// give returns n bytes of credit, as an Ack from the receiver does.
func (c *credit) give(n int) {
	c.mu.Lock()
	c.avail += n
	c.signal()
	c.mu.Unlock()
}

func (c *credit) signal() {
	select {
	case c.more <- struct{}{}:
	default:
	}
}

// queue is an unbounded FIFO between one goroutine that must never block
// (a stream's reader) and one that consumes at its own pace. Flow control
// bounds what is queued in practice. It is safe for concurrent use.
type queue[T any] struct {
	mu     sync.Mutex
	items  []T
	closed bool
	ready  chan struct{} // signalled when items arrive or the queue closes
}

// newQueue returns an empty queue.
func newQueue[T any]() *queue[T] {
	return &queue[T]{ready: make(chan struct{}, 1)}
}

// push appends v; it returns false, dropping v, once the queue is closed.
func (q *queue[T]) push(v T) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return false
	}
	q.items = append(q.items, v)
	q.signal()
	return true
}

// close marks the end of the queue; what is queued can still be taken.
func (q *queue[T]) close() {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.closed = true
	q.signal()
}

// take removes and returns everything queued, and whether the queue is
// closed. When it returns nothing and false, wait on wait() and call again.
func (q *queue[T]) take() (items []T, closed bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	items, q.items = q.items, nil
	return items, q.closed
}

// wait returns a channel that receives after items arrive or the queue
// closes.
func (q *queue[T]) wait() <-chan struct{} {
	return q.ready
}

func (q *queue[T]) signal() {
	select {
	case q.ready <- struct{}{}:
	default:
	}
}
