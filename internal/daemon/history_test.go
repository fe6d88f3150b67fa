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
