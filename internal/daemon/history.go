package daemon

import (
	"context"
	"net/http"
	"sync"
	"time"

	"github.com/polyvisor/polyvisor/pkg/api"
)

// A running guest's usage is sampled every historyEvery and the last
// historyLength samples kept, so that the web console charts the last
// 15 minutes as soon as it opens a guest.
const (
	historyEvery  = 10 * time.Second
	historyLength = 90
)

// usageHistory keeps each running guest's recent samples, oldest first.
type usageHistory struct {
	mu      sync.Mutex
	byGuest map[string][]api.UsageSample
}

// add appends a sample, dropping the oldest beyond historyLength.
func (h *usageHistory) add(name string, s api.UsageSample) {
	h.mu.Lock()
	defer h.mu.Unlock()
	samples := append(h.byGuest[name], s)
	if len(samples) > historyLength {
		samples = append(samples[:0:0], samples[len(samples)-historyLength:]...)
	}
	h.byGuest[name] = samples
}

// of returns a guest's samples.
func (h *usageHistory) of(name string) []api.UsageSample {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]api.UsageSample{}, h.byGuest[name]...)
}

// recent is what a guest's last samples say: its CPU use between the last
// two, in percent of one CPU (nil with fewer than two), and its memory at
// the last (0 with none).
func (h *usageHistory) recent(name string) (cpuPercent *float64, memory int64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	samples := h.byGuest[name]
	if len(samples) == 0 {
		return nil, 0
	}
	last := samples[len(samples)-1]
	if len(samples) > 1 {
		prev := samples[len(samples)-2]
		if secs := last.Time.Sub(prev.Time).Seconds(); secs > 0 {
			pct := max(last.Usage.CPUSeconds-prev.Usage.CPUSeconds, 0) / secs * 100
			cpuPercent = &pct
		}
	}
	return cpuPercent, last.Usage.MemoryBytes
}

// keep forgets the guests not in live (deleted or stopped).
func (h *usageHistory) keep(live map[string]bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for name := range h.byGuest {
		if !live[name] {
			delete(h.byGuest, name)
		}
	}
}

// sampleUsage samples every running guest until ctx ends.
func (d *Daemon) sampleUsage(ctx context.Context) {
	tick := time.NewTicker(historyEvery)
	defer tick.Stop()
	for {
		d.sampleOnce(ctx, time.Now())
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// sampleOnce takes one sample of each running guest. A guest that stops
// loses its history: its next run's counters start again from zero.
func (d *Daemon) sampleOnce(ctx context.Context, now time.Time) {
	live := map[string]bool{}
	for _, def := range d.guests.all() {
		if !running(def) {
			continue
		}
		live[def.Name] = true
		if u, ok := d.usage(ctx, def); ok {
			d.history.add(def.Name, api.UsageSample{Time: now.UTC(), Usage: u})
		}
	}
	d.history.keep(live)
}

// handleUsageHistory answers a guest's recent samples, oldest first.
func (d *Daemon) handleUsageHistory(r *http.Request) (any, error) {
	e, err := d.guests.get(r.PathValue("name"))
	if err != nil {
		return nil, err
	}
	return d.history.of(e.def.Load().Name), nil
}
