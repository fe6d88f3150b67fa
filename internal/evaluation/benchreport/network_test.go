package benchreport

import (
	"bytes"
	"encoding/json"
	"math"
	"regexp"
	"strings"
	"testing"
)

// netFigure is a throughput figure over runs, as bench makes it.
func netFigure(runs ...float64) Figure {
	f := Figure{Name: "net.tcp", Unit: "MiB/s", HigherIsBetter: true, Runs: runs, Median: Median(runs)}
	if ci, ok := MedianInterval(runs); ok {
		f.CI = &ci
	}
	return f
}

func netReport() *Report {
	paths := []NetPath{
		{Name: NetBaseline, Figure: netFigure(2000, 2100, 1900, 2050, 1950)},
		{Name: GuestToGuest(Container), Class: Container, Figure: netFigure(1500, 1600, 1550, 1450, 1525)},
		{Name: HostToGuest(Container), Class: Container, Figure: netFigure(1800, 1700, 1750, 1850, 1775)},
		{Name: GuestToGuest(VM), Class: VM, Error: "launch pv-bench-vm-net-0: no agent\nwithin 2m"},
		{Name: HostToGuest(Emulation), Class: Emulation, Reason: "qemu-system-aarch64 is not installed"},
	}
	SetNetRatios(paths)
	return &Report{Network: paths}
}

func TestNetRatiosCompareEachPathWithTheVethBaseline(t *testing.T) {
	r := netReport()
	if got := r.Network[0].Ratio; got != 1 {
		t.Errorf("baseline ratio %v, want 1", got)
	}
	c := r.Network[1]
	if want := 1525.0 / 2000; math.Abs(c.Ratio-want) > 1e-9 {
		t.Errorf("container ↔ container ratio %v, want %v", c.Ratio, want)
	}
	if c.RatioCI == nil || !c.RatioCI.Contains(c.Ratio) || c.RatioCI.Low >= c.RatioCI.High {
		t.Errorf("container ↔ container ratio interval %+v does not hold its ratio %v", c.RatioCI, c.Ratio)
	}
	for _, p := range r.Network[3:] {
		if p.Ratio != 0 || p.RatioCI != nil {
			t.Errorf("%s has no throughput but a ratio %v %+v", p.Name, p.Ratio, p.RatioCI)
		}
	}
	// A path with the baseline measured beside it is compared with that:
	// the host got twice as slow between the two baseline measurements.
	slow := netFigure(1000, 1050, 950)
	beside := []NetPath{r.Network[0], {Name: GuestToGuest(VM), Class: VM, Figure: netFigure(10, 11, 9), Baseline: &slow}}
	SetNetRatios(beside)
	if want := 10.0 / 1000; math.Abs(beside[1].Ratio-want) > 1e-12 || beside[0].Ratio != 1 {
		t.Errorf("ratio over the baseline beside it %v, want %v (baseline's own %v)", beside[1].Ratio, want, beside[0].Ratio)
	}
	var table bytes.Buffer
	if err := WriteNetworkTable(&table, &Report{Network: beside}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(table.String(), "veth beside") || !regexp.MustCompile(`vm ↔ vm +10\.0 .* 1000 +0\.01×`).MatchString(table.String()) {
		t.Errorf("the table does not show the baseline a ratio is over:\n%s", table.String())
	}
	// A failed baseline leaves every path without a ratio rather than
	// comparing with zero.
	paths := []NetPath{{Name: NetBaseline, Error: "ip netns add: permission denied"}, r.Network[1]}
	SetNetRatios(paths)
	if paths[1].Ratio != 0 || paths[1].RatioCI != nil {
		t.Errorf("ratio %v %+v against a failed baseline", paths[1].Ratio, paths[1].RatioCI)
	}
}

func TestNetworkTableShowsEveryPathWithItsIntervalOrWhyNot(t *testing.T) {
	var b bytes.Buffer
	if err := WriteNetworkTable(&b, netReport()); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	lines := strings.Split(out, "\n")
	for _, want := range []string{
		"Network throughput:",
		"veth (baseline)", "2000", "1.00×",
		"container ↔ container", "1525", "0.76×",
		"host ↔ container", "1775", "0.89×",
		"vm ↔ vm", "failed: launch pv-bench-vm-net-0: no agent within 2m",
		"host ↔ emulation", "n/a: qemu-system-aarch64 is not installed",
		"x of veth",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("the network table lacks %q:\n%s", want, out)
		}
	}
	for _, l := range lines {
		if strings.HasPrefix(l, "container ↔ container") && !strings.Contains(l, "[") {
			t.Errorf("the container row shows no interval: %q", l)
		}
	}
	// Columns line up: each OK row's MiB/s starts where the header's does.
	col := strings.Index(lines[2], "MiB/s")
	for _, l := range lines {
		if strings.HasPrefix(l, "host ↔ container") {
			if got := strings.Index(l, "1775"); len([]rune(l[:got])) != col {
				t.Errorf("MiB/s column at rune %d, header at %d:\n%s", len([]rune(l[:got])), col, out)
			}
		}
	}
	b.Reset()
	if err := WriteNetworkTable(&b, &Report{}); err != nil || b.Len() != 0 {
		t.Errorf("a report without network paths printed %q (%v)", b.String(), err)
	}
}

func TestNetworkHTMLEscapesAndMarksFailures(t *testing.T) {
	r := netReport()
	r.Network[3].Error = `<script>alert("x")</script>`
	html, err := NetworkHTML(r)
	if err != nil {
		t.Fatal(err)
	}
	s := string(html)
	for _, want := range []string{`<section id="network">`, "veth (baseline)", "host ↔ container", "0.89×", `class="failed"`, `class="na"`, "width:100px", "&lt;script&gt;"} {
		if !strings.Contains(s, want) {
			t.Errorf("the network section lacks %q:\n%s", want, s)
		}
	}
	if strings.Contains(s, "<script>") {
		t.Errorf("an error's text reached the page unescaped:\n%s", s)
	}
	if html, err := NetworkHTML(&Report{}); err != nil || html != "" {
		t.Errorf("a report without network paths gave %q (%v)", html, err)
	}
}

func TestNetworkPathsRoundTripThroughJSON(t *testing.T) {
	r := netReport()
	data, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	var back Report
	if err := json.Unmarshal(data, &back); err != nil {
		t.Fatal(err)
	}
	if len(back.Network) != len(r.Network) || back.Network[2].Ratio != r.Network[2].Ratio || back.Network[4].Reason == "" {
		t.Errorf("network paths after JSON: %+v", back.Network)
	}
	if data, _ := json.Marshal(&Report{}); strings.Contains(string(data), `"network"`) {
		t.Errorf("a report without network paths writes the key: %s", data)
	}
}
