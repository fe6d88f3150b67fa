package daemon

import (
	"context"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/polyvisor/polyvisor/pkg/api"
)

// Sizes of the event delivery benchmark.
const (
	benchSubscribers = 50
	benchBurst       = 200 // events published at once: within a subscriber's buffer
	benchBursts      = 5   // bursts per iteration
)

// BenchmarkEventsTo50Subscribers measures how many events a second the
// daemon delivers over its event stream (websockets on a unix socket,
// served as the daemon serves its API; one JSON message each) to 50
// subscribers at once. Each iteration publishes bursts of 200 lifecycle
// events and waits until every subscriber has read the whole burst;
// deliveries/s counts events × subscribers.
func BenchmarkEventsTo50Subscribers(b *testing.B) {
	h := newHarness(b)
	c := h.serveUnix(readTimeout)
	ctx, cancel := context.WithTimeout(b.Context(), 10*time.Minute)
	defer cancel()
	var wg sync.WaitGroup
	bursts := make([]chan int, benchSubscribers) // burst numbers, to each reader
	errs := make(chan error, benchSubscribers)
	done := make(chan struct{}, benchSubscribers*benchBursts)
	for i := range bursts {
		s, err := c.Events(ctx, api.EventLifecycle)
		if err != nil {
			b.Fatal(err)
		}
		defer s.Close()
		bursts[i] = make(chan int)
		wg.Go(func() {
			for range bursts[i] {
				for range benchBurst {
					if _, err := s.Next(ctx); err != nil {
						errs <- err
						return
					}
				}
				done <- struct{}{}
			}
		})
	}
	defer func() {
		for _, ch := range bursts {
			close(ch)
		}
		wg.Wait()
	}()
	b.ResetTimer()
	began := time.Now()
	for n := range b.N {
		for k := range benchBursts {
			burst := n*benchBursts + k
			for _, ch := range bursts {
				ch <- burst
			}
			for i := range benchBurst {
				h.d.lifecycle(api.GuestStarted, "g"+strconv.Itoa(i))
			}
			for range benchSubscribers {
				select {
				case <-done:
				case err := <-errs:
					b.Fatal(err)
				}
			}
		}
	}
	took := time.Since(began)
	b.StopTimer()
	deliveries := float64(b.N * benchBursts * benchBurst * benchSubscribers)
	b.ReportMetric(deliveries/took.Seconds(), "deliveries/s")
	b.ReportMetric(0, "ns/op")
}
