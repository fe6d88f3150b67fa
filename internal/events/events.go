// Package events fans the daemon's lifecycle and operation events out to
// subscribers (the event stream of the API). Publishing never waits: a
// subscriber that falls a whole buffer behind is cut off, told why, and
// may subscribe again.
package events

import (
	"errors"
	"slices"
	"sync"

	"github.com/polyvisor/polyvisor/pkg/api"
)

// Buffer is how many events a subscriber may fall behind before it is
// cut off.
const Buffer = 256

// ErrTooSlow ends a subscription that fell Buffer events behind.
var ErrTooSlow = errors.New("event subscriber fell too far behind; subscribe again")

// Bus delivers published events to the subscriptions that asked for
// their type. The zero value is ready.
type Bus struct {
	mu   sync.Mutex
	subs map[*Subscription]struct{}
}

// Subscription receives events of its types until Close, or until it
// falls too far behind (Err then says so).
type Subscription struct {
	bus   *Bus
	types []string // nil: every type
	c     chan api.Event
	done  chan struct{}
	once  sync.Once
	err   error // set before done is closed
}

// Subscribe returns a subscription to events of types (none: all).
func (b *Bus) Subscribe(types []string) *Subscription {
	s := &Subscription{bus: b, types: slices.Clone(types), c: make(chan api.Event, Buffer), done: make(chan struct{})}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.subs == nil {
		b.subs = map[*Subscription]struct{}{}
	}
	b.subs[s] = struct{}{}
	return s
}

// Publish hands e to every subscription of its type, without waiting.
func (b *Bus) Publish(e api.Event) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for s := range b.subs {
		if s.types != nil && !slices.Contains(s.types, e.Type) {
			continue
		}
		select {
		case s.c <- e:
		default:
			s.end(ErrTooSlow) // b.mu is held: remove it here
			delete(b.subs, s)
		}
	}
}

// Subscribers is how many subscriptions are open.
func (b *Bus) Subscribers() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.subs)
}

// Events is the subscription's channel of events.
func (s *Subscription) Events() <-chan api.Event { return s.c }

// Done is closed when the subscription ends.
func (s *Subscription) Done() <-chan struct{} { return s.done }

// Err says why a subscription ended: ErrTooSlow, or nil after Close.
func (s *Subscription) Err() error {
	<-s.done
	return s.err
}

// Close ends the subscription.
func (s *Subscription) Close() {
	s.bus.mu.Lock()
	delete(s.bus.subs, s)
	s.bus.mu.Unlock()
	s.end(nil)
}

func (s *Subscription) end(err error) {
	s.once.Do(func() {
		s.err = err
		close(s.done)
	})
}
