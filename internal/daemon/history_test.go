package daemon

import (
	"context"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/polyvisor/polyvisor/pkg/api"
)

// Each sample of a running guest's usage is kept, at most the last 15
// minutes of them; a guest that stops loses its history.
func TestUsageHistoryKeepsTheLastSamplesOfRunningGuests(t *testing.T) {
	h := newHarness(t)
	h.create("web", true)
	h.create("db", false)
	began := time.Now()
	for i := range historyLength + 10 {
		h.d.sampleOnce(context.Background(), began.Add(time.Duration(i)*historyEvery))
	}
	history := func(name string) []api.UsageSample {
		t.Helper()
		r := h.do(http.MethodGet, "/guests/"+name+"/usage/history", nil)
		if r.status != http.StatusOK {
			t.Fatalf("history of %s: %s", name, r)
		}
		var samples []api.UsageSample
		if err := json.Unmarshal(r.body, &samples); err != nil {
			t.Fatal(err)
		}
		return samples
	}
	samples := history("web")
	if len(samples) != historyLength {
		t.Fatalf("%d samples kept after %d, want %d", len(samples), historyLength+10, historyLength)
	}
	if first := samples[0].Time; !first.Equal(began.Add(10 * historyEvery).UTC()) {
		t.Fatalf("the oldest sample kept is of %s, want the 11th", first)
	}
	if mem := samples[len(samples)-1].Usage.MemoryBytes; mem != int64(h.definition("web").Memory)/2 {
		t.Fatalf("a sample's memory %d, want the fake's", mem)
	}
	// The listing shows the last two samples' CPU use and the last one's
	// memory: the fake's CPU seconds do not change, so 0 %.
	var rows []api.GuestSummary
	if r := h.do(http.MethodGet, "/guests?view=summary", nil); r.status != http.StatusOK || json.Unmarshal(r.body, &rows) != nil {
		t.Fatalf("summaries: %s", r)
	}
	for _, row := range rows {
		switch row.Name {
		case "web":
			if row.CPUPercent == nil || *row.CPUPercent != 0 || row.MemoryUsed != int64(h.definition("web").Memory)/2 {
				t.Errorf("web's summary: cpu %v memory %d", row.CPUPercent, row.MemoryUsed)
			}
		case "db":
			if row.CPUPercent != nil || row.MemoryUsed != 0 {
				t.Errorf("a stopped guest's summary shows use: %+v", row)
			}
		}
	}
	if got := history("db"); len(got) != 0 {
		t.Fatalf("a stopped guest has %d samples", len(got))
	}
	h.mustRun(http.MethodPut, "/guests/web/state", api.StateChange{Action: "stop", Force: true})
	h.d.sampleOnce(context.Background(), time.Now())
	if got := history("web"); len(got) != 0 {
		t.Fatalf("a guest that stopped keeps %d samples", len(got))
	}
	if r := h.do(http.MethodGet, "/guests/nosuch/usage/history", nil); r.status != http.StatusNotFound {
		t.Fatalf("history of a guest that does not exist: %s", r)
	}
}

// A guest's CPU use is the last two samples' difference over their
// interval, in percent of one CPU.
func TestRecentUsageIsTheLastInterval(t *testing.T) {
	h := &usageHistory{byGuest: map[string][]api.UsageSample{}}
	if cpu, mem := h.recent("web"); cpu != nil || mem != 0 {
		t.Fatalf("no samples: %v %d", cpu, mem)
	}
	t0 := time.Now()
	h.add("web", api.UsageSample{Time: t0, Usage: api.GuestUsage{CPUSeconds: 10, MemoryBytes: 100}})
	if cpu, mem := h.recent("web"); cpu != nil || mem != 100 {
		t.Fatalf("one sample: %v %d", cpu, mem)
	}
	h.add("web", api.UsageSample{Time: t0.Add(10 * time.Second), Usage: api.GuestUsage{CPUSeconds: 15, MemoryBytes: 200}})
	if cpu, mem := h.recent("web"); cpu == nil || *cpu != 50 || mem != 200 {
		t.Fatalf("5 CPU seconds in 10 s: %v %d, want 50 %% and 200", cpu, mem)
	}
}
