package events

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/polyvisor/polyvisor/pkg/api"
)

func TestSubscribersGetTheirTypesInOrder(t *testing.T) {
	var b Bus
	all := b.Subscribe(nil)
	defer all.Close()
	life := b.Subscribe([]string{api.EventLifecycle})
	defer life.Close()
	b.Publish(api.Event{Type: api.EventOperation, Action: api.OpRunning})
	b.Publish(api.Event{Type: api.EventLifecycle, Action: api.GuestCreated, Guest: "a"})
	b.Publish(api.Event{Type: api.EventLifecycle, Action: api.GuestStarted, Guest: "a"})
	var got []string
	for range 3 {
		got = append(got, (<-all.Events()).Action)
	}
	if want := []string{api.OpRunning, api.GuestCreated, api.GuestStarted}; !slices.Equal(got, want) {
		t.Errorf("all types: %v, want %v", got, want)
	}
	got = nil
	for range 2 {
		got = append(got, (<-life.Events()).Action)
	}
	if want := []string{api.GuestCreated, api.GuestStarted}; !slices.Equal(got, want) {
		t.Errorf("lifecycle only: %v, want %v", got, want)
	}
	select {
	case e := <-life.Events():
		t.Errorf("lifecycle subscriber got %+v as well", e)
	default:
	}
}

// A subscriber that reads nothing never holds a publisher up: it is cut
// off with ErrTooSlow once its buffer is full, and one that keeps up goes
// on receiving.
func TestASlowSubscriberIsCutOffNotWaitedFor(t *testing.T) {
	var b Bus
	slow := b.Subscribe(nil)
	fast := b.Subscribe(nil)
	defer fast.Close()
	published := make(chan error, 1)
	go func() {
		for i := range 2 * Buffer {
			b.Publish(api.Event{Type: api.EventLifecycle, Guest: strconv.Itoa(i)})
			select {
			case e := <-fast.Events():
				if e.Guest != strconv.Itoa(i) {
					published <- fmt.Errorf("the reading subscriber got event %s, want %d", e.Guest, i)
					return
				}
			case <-fast.Done():
				published <- fmt.Errorf("the reading subscriber was cut off at event %d: %v", i, fast.Err())
				return
			}
		}
		published <- nil
	}()
	select {
	case err := <-published:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("publishing waited on a subscriber that reads nothing")
	}
	if err := slow.Err(); !errors.Is(err, ErrTooSlow) {
		t.Errorf("slow subscription ended with %v, want ErrTooSlow", err)
	}
	if n := len(slow.Events()); n != Buffer {
		t.Errorf("the slow subscriber holds %d events, want its buffer's %d", n, Buffer)
	}
	if n := b.Subscribers(); n != 1 {
		t.Errorf("%d subscriptions open, want 1", n)
	}
	slow.Close() // closing a cut-off subscription is harmless
}

func TestCloseEndsTheSubscription(t *testing.T) {
	var b Bus
	s := b.Subscribe(nil)
	s.Close()
	if err := s.Err(); err != nil {
		t.Errorf("closed subscription: %v", err)
	}
	b.Publish(api.Event{Type: api.EventLifecycle})
	if n := b.Subscribers(); n != 0 {
		t.Errorf("%d subscriptions open after Close", n)
	}
}
