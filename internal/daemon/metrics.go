package daemon

import (
	"context"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/polyvisor/polyvisor/internal/driver"
	"github.com/polyvisor/polyvisor/internal/guest"
	"github.com/polyvisor/polyvisor/pkg/api"
)

// metrics is what GET /metrics serves, in Prometheus's exposition format:
// the daemon's own figures, and each guest's, read when scraped.
type metrics struct {
	registry *prometheus.Registry
	requests *prometheus.HistogramVec
}

// Descriptions of the series read at each scrape.
var (
	guestInfoDesc = prometheus.NewDesc("polyvisor_guest_info",
		"A guest, with its type, class, arch and state as labels (always 1).",
		[]string{"guest", "type", "class", "arch", "state"}, nil)
	guestRunningDesc = prometheus.NewDesc("polyvisor_guest_running",
		"Whether the guest runs (1) or not (0).", []string{"guest"}, nil)
	guestCPUsDesc = prometheus.NewDesc("polyvisor_guest_cpus",
		"The guest's CPU limit, in CPUs.", []string{"guest"}, nil)
	guestMemoryLimitDesc = prometheus.NewDesc("polyvisor_guest_memory_limit_bytes",
		"The guest's memory limit.", []string{"guest"}, nil)
	guestCPUDesc = prometheus.NewDesc("polyvisor_guest_cpu_seconds_total",
		"CPU time a running guest has used since it started.", []string{"guest"}, nil)
	guestMemoryDesc = prometheus.NewDesc("polyvisor_guest_memory_bytes",
		"Memory a running guest holds (its working set: inactive page cache left out).", []string{"guest"}, nil)
	guestDiskReadDesc = prometheus.NewDesc("polyvisor_guest_disk_read_bytes_total",
		"Bytes a running guest has read from its own disks since it started.", []string{"guest"}, nil)
	guestDiskWrittenDesc = prometheus.NewDesc("polyvisor_guest_disk_written_bytes_total",
		"Bytes a running guest has written to its own disks since it started.", []string{"guest"}, nil)
	guestNetReceiveDesc = prometheus.NewDesc("polyvisor_guest_network_receive_bytes_total",
		"Bytes a running guest has received on its NICs.", []string{"guest"}, nil)
	guestNetTransmitDesc = prometheus.NewDesc("polyvisor_guest_network_transmit_bytes_total",
		"Bytes a running guest has sent on its NICs.", []string{"guest"}, nil)
	guestsDesc = prometheus.NewDesc("polyvisor_guests",
		"How many guests each class has, by state.", []string{"class", "state"}, nil)
	operationsDesc = prometheus.NewDesc("polyvisor_operations_in_flight",
		"Operations (launches, stops, imports...) running now.", nil, nil)
	subscribersDesc = prometheus.NewDesc("polyvisor_event_subscribers",
		"Event streams open.", nil, nil)
)

// newMetrics makes the daemon's registry: its collector, the request
// histogram and Go's and the process's own figures.
func (d *Daemon) newMetrics() *metrics {
	m := &metrics{
		registry: prometheus.NewRegistry(),
		requests: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "polyvisor_api_request_duration_seconds",
			Help:    "How long the API took to answer, by route and status (streams left out).",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 10},
		}, []string{"route", "code"}),
	}
	m.registry.MustRegister(m.requests, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), daemonCollector{d})
	return m
}

// handler serves the registry.
func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.registry, promhttp.HandlerOpts{Registry: m.registry})
}

// instrument times every request by the route the mux matched it to
// (r.Pattern, set on this very request), except streams, which last as
// long as their client wants.
func (m *metrics) instrument(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Upgrade") != "" {
			next.ServeHTTP(w, r)
			return
		}
		began := time.Now()
		rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
		next.ServeHTTP(rec, r)
		route := r.Pattern
		if route == "" {
			route = "unmatched"
		}
		m.requests.WithLabelValues(route, strconv.Itoa(rec.status)).Observe(time.Since(began).Seconds())
	})
}

// statusRecorder remembers the status a handler answered.
type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (s *statusRecorder) WriteHeader(code int) {
	s.status = code
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// daemonCollector reads the guests and the daemon's figures at each
// scrape.
type daemonCollector struct{ d *Daemon }

func (c daemonCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, desc := range []*prometheus.Desc{
		guestInfoDesc, guestRunningDesc, guestCPUsDesc, guestMemoryLimitDesc, guestCPUDesc, guestMemoryDesc,
		guestDiskReadDesc, guestDiskWrittenDesc, guestNetReceiveDesc, guestNetTransmitDesc,
		guestsDesc, operationsDesc, subscribersDesc,
	} {
		ch <- desc
	}
}

func (c daemonCollector) Collect(ch chan<- prometheus.Metric) {
	d := c.d
	gauge := func(desc *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(desc, prometheus.GaugeValue, v, labels...)
	}
	counter := func(desc *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(desc, prometheus.CounterValue, v, labels...)
	}
	type classState struct{ class, state string }
	counts := map[classState]int{}
	// A scrape waits for no guest's lock: it reads each definition as it
	// stands, and a usage the driver cannot read is left out.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, def := range d.guests.all() {
		state := api.StateStopped
		if running(def) {
			state = api.StateRunning
		}
		counts[classState{def.Class, state}]++
		gauge(guestInfoDesc, 1, def.Name, def.Type, def.Class, def.Arch, state)
		gauge(guestRunningDesc, boolFloat(state == api.StateRunning), def.Name)
		gauge(guestCPUsDesc, float64(def.CPUs), def.Name)
		gauge(guestMemoryLimitDesc, float64(def.Memory), def.Name)
		if state != api.StateRunning {
			continue
		}
		u, ok := d.usage(ctx, def)
		if !ok {
			continue
		}
		counter(guestCPUDesc, u.CPUSeconds, def.Name)
		gauge(guestMemoryDesc, float64(u.MemoryBytes), def.Name)
		counter(guestDiskReadDesc, float64(u.DiskReadBytes), def.Name)
		counter(guestDiskWrittenDesc, float64(u.DiskWriteBytes), def.Name)
		counter(guestNetReceiveDesc, float64(u.NetworkReceiveBytes), def.Name)
		counter(guestNetTransmitDesc, float64(u.NetworkTransmitBytes), def.Name)
	}
	for range d.guests.brokenViews() {
		// A broken guest's definition does not load: its class is unknown.
		counts[classState{"unknown", api.StateBroken}]++
	}
	for k, n := range counts {
		gauge(guestsDesc, float64(n), k.class, k.state)
	}
	gauge(operationsDesc, float64(d.ops.inFlight()))
	gauge(subscribersDesc, float64(d.events.Subscribers()))
}

// usage asks a running guest's driver what it uses; ok is false where the
// class cannot say or the reading failed (logged at debug: a guest
// stopping as it is read is no fault).
func (d *Daemon) usage(ctx context.Context, def *guest.Definition) (api.GuestUsage, bool) {
	drv, err := d.driverFor(def)
	if err != nil {
		return api.GuestUsage{}, false
	}
	reporter, ok := drv.(driver.UsageReporter)
	if !ok {
		return api.GuestUsage{}, false
	}
	u, err := reporter.Usage(ctx, def)
	if err != nil {
		d.log.Debug("read a guest's usage", "guest", def.Name, "err", err)
		return api.GuestUsage{}, false
	}
	return u, true
}

func boolFloat(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
