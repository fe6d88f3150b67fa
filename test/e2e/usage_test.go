package e2e

import (
	"strings"
	"testing"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// A running container's usage, in info and in the Prometheus exposition,
// grows by what it does: CPU time for a busy loop, disk bytes for a file
// it writes through to its disk quota's device; a stopped guest has none.
func TestUsageAndMetricsOfAContainer(t *testing.T) {
	requireRoot(t)
	d := env.main
	g := launch(t, d, "busybox", "usage-c")
	before := info(t, d, g.Name).Usage
	if before == nil || before.MemoryBytes <= 0 {
		t.Fatalf("usage of a running container: %+v", before)
	}
	const mib = 1 << 20
	d.Must(t, "exec", g.Name, "--", "sh", "-c", "dd if=/dev/zero of=/big bs=1M count=16 conv=fsync 2>/dev/null; i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done")
	after := info(t, d, g.Name).Usage
	if written := after.DiskWriteBytes - before.DiskWriteBytes; written < 16*mib {
		t.Errorf("16 MiB written and synced, the disk counted %d bytes more (%+v then %+v)", written, before, after)
	}
	if cpu := after.CPUSeconds - before.CPUSeconds; cpu < 0.05 {
		t.Errorf("a busy loop of 200,000 rounds added %.3f CPU seconds (%+v then %+v)", cpu, before, after)
	}

	text, err := d.Client().Metrics(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(strings.NewReader(text))
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	sample := func(family string) float64 {
		for _, m := range families[family].GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "guest" && l.GetValue() == g.Name {
					if m.Counter != nil {
						return m.GetCounter().GetValue()
					}
					return m.GetGauge().GetValue()
				}
			}
		}
		t.Errorf("no %s series for %s", family, g.Name)
		return 0
	}
	if v := sample("polyvisor_guest_cpu_seconds_total"); v < after.CPUSeconds {
		t.Errorf("cpu seconds in /metrics %.3f, below info's %.3f read before", v, after.CPUSeconds)
	}
	if v := sample("polyvisor_guest_disk_written_bytes_total"); v < float64(after.DiskWriteBytes) {
		t.Errorf("disk written in /metrics %.0f, below info's %d read before", v, after.DiskWriteBytes)
	}
	if v := sample("polyvisor_guest_running"); v != 1 {
		t.Errorf("polyvisor_guest_running of a running guest: %v", v)
	}

	d.Must(t, "stop", "--force", g.Name)
	if u := info(t, d, g.Name).Usage; u != nil {
		t.Errorf("a stopped guest shows usage: %+v", u)
	}
}
