package daemon

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/polyvisor/polyvisor/internal/stream"
	"github.com/polyvisor/polyvisor/pkg/api"
)

// scrape reads the daemon's /metrics as a scraper would, and parses it.
func (h *harness) scrape() map[string]*dto.MetricFamily {
	h.t.Helper()
	rec := httptest.NewRecorder()
	h.d.routes().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if rec.Code != http.StatusOK {
		h.t.Fatalf("GET /metrics: %d %s", rec.Code, rec.Body)
	}
	return parseMetrics(h.t, rec.Body.String())
}

func parseMetrics(t testing.TB, text string) map[string]*dto.MetricFamily {
	t.Helper()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(strings.NewReader(text))
	if err != nil {
		t.Fatalf("parse the exposition: %v\n%s", err, text)
	}
	return families
}

// value finds the sample of family whose labels include want; ok is
// false when there is none.
func value(families map[string]*dto.MetricFamily, family string, want map[string]string) (v float64, ok bool) {
	f := families[family]
	if f == nil {
		return 0, false
	}
	for _, m := range f.GetMetric() {
		labels := map[string]string{}
		for _, l := range m.GetLabel() {
			labels[l.GetName()] = l.GetValue()
		}
		match := true
		for k, v := range want {
			match = match && labels[k] == v
		}
		if !match {
			continue
		}
		switch {
		case m.Gauge != nil:
			return m.GetGauge().GetValue(), true
		case m.Counter != nil:
			return m.GetCounter().GetValue(), true
		case m.Histogram != nil:
			return float64(m.GetHistogram().GetSampleCount()), true
		}
	}
	return 0, false
}

// The exposition holds each guest's state and limits, a running guest's
// usage as its driver reads it (and none for a stopped one), the count by
// class and state, the requests timed by route, operations in flight and
// event subscribers; info shows the same usage.
func TestMetricsShowEveryGuestAndTheDaemon(t *testing.T) {
	h := newHarness(t)
	c := h.serveUnix(readTimeout)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	h.create("web", true)
	h.create("db", false)
	session, err := c.Exec(ctx, "web", api.ExecRequest{Command: []string{"write", "/greeting", "hello"}})
	if err != nil {
		t.Fatal(err)
	}
	if code, err := stream.CopySession(session, io.Discard, io.Discard); err != nil || code != 0 {
		t.Fatalf("write a file in web: exit %d, %v", code, err)
	}
	session.Close()
	events, err := c.Events(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer events.Close()
	if _, err := c.Guests(ctx); err != nil {
		t.Fatal(err)
	}

	m := h.scrape()
	web, db := map[string]string{"guest": "web"}, map[string]string{"guest": "db"}
	limit := float64(h.definition("web").Memory)
	for _, c := range []struct {
		family string
		labels map[string]string
		want   float64
	}{
		{"polyvisor_guest_info", map[string]string{"guest": "web", "state": "running", "class": "fake", "type": "container"}, 1},
		{"polyvisor_guest_info", map[string]string{"guest": "db", "state": "stopped"}, 1},
		{"polyvisor_guest_running", web, 1},
		{"polyvisor_guest_running", db, 0},
		{"polyvisor_guest_memory_limit_bytes", db, limit},
		{"polyvisor_guest_cpu_seconds_total", web, 0.1},
		{"polyvisor_guest_memory_bytes", web, limit / 2},
		{"polyvisor_guest_disk_written_bytes_total", web, float64(len("hello"))},
		{"polyvisor_guests", map[string]string{"class": "fake", "state": "running"}, 1},
		{"polyvisor_guests", map[string]string{"class": "fake", "state": "stopped"}, 1},
		{"polyvisor_operations_in_flight", nil, 0},
		{"polyvisor_event_subscribers", nil, 1},
	} {
		if got, ok := value(m, c.family, c.labels); !ok || got != c.want {
			t.Errorf("%s%v = %v (found %v), want %v", c.family, c.labels, got, ok, c.want)
		}
	}
	if _, ok := value(m, "polyvisor_guest_cpu_seconds_total", db); ok {
		t.Error("a stopped guest has a CPU series")
	}
	if n, ok := value(m, "polyvisor_api_request_duration_seconds", map[string]string{"route": "GET /1.0/guests", "code": "200"}); !ok || n < 1 {
		t.Errorf("the list request is not timed: %v, %v", n, ok)
	}
	if _, ok := value(m, "polyvisor_api_request_duration_seconds", map[string]string{"route": "GET /1.0/events"}); ok {
		t.Error("an event stream was timed as a request")
	}
	if _, ok := m["go_goroutines"]; !ok {
		t.Error("no Go runtime figures")
	}

	g, err := c.Guest(ctx, "web")
	if err != nil {
		t.Fatal(err)
	}
	if g.Usage == nil || g.Usage.CPUSeconds != 0.1 || g.Usage.DiskWriteBytes != 5 {
		t.Fatalf("info's usage of web: %+v", g.Usage)
	}
	if g, _ := c.Guest(ctx, "db"); g.Usage != nil {
		t.Fatalf("info of a stopped guest shows usage: %+v", g.Usage)
	}
}

// Over HTTPS, a trusted client scrapes as it calls the API; anyone else
// is refused (as on every route: TestEveryRouteButHealthRefusesStrangers).
func TestMetricsOverHTTPSNeedTrust(t *testing.T) {
	h := newHarness(t)
	addr := h.serveTLS()
	c, _ := h.trusted(addr, "prometheus")
	h.create("web", true)
	text, err := c.Metrics(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if v, ok := value(parseMetrics(t, text), "polyvisor_guest_running", map[string]string{"guest": "web"}); !ok || v != 1 {
		t.Fatalf("web's running series over HTTPS: %v, %v", v, ok)
	}
	if status, _ := rawTLS(t, addr, nil, http.MethodGet, "/metrics", nil); status != http.StatusUnauthorized {
		t.Fatalf("an anonymous scrape: %d, want 401", status)
	}
}
