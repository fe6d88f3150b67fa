package e2e

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/polyvisor/polyvisor/internal/evaluation/benchreport"
	"github.com/polyvisor/polyvisor/internal/evaluation/peer"
	"github.com/polyvisor/polyvisor/internal/evaluation/probe"
	"github.com/polyvisor/polyvisor/internal/libvirtd"
)

// cpuRatio is a class's median of a CPU workload over native's in the
// same run.
func cpuRatio(t *testing.T, r *benchreport.Report, class, workload string) float64 {
	t.Helper()
	median := map[string]float64{}
	for _, c := range r.Classes {
		if c.Probe == nil {
			continue
		}
		for _, res := range c.Probe.Results {
			if res.Name == workload && res.Error == "" {
				median[c.Name] = res.Median
			}
		}
	}
	if median[benchreport.Native] == 0 || median[class] == 0 {
		t.Fatalf("%s of %s or native was not measured: %v", workload, class, median)
	}
	return median[class] / median[benchreport.Native]
}

func TestBenchQuickMeasuresEveryClassAndAdviseReadsIt(t *testing.T) {
	requireVMTemplates(t)
	// Minutes of guests and peers: it runs beside the other slow tests,
	// whose load makes its verdicts inconclusive at worst; what it asserts
	// holds beyond noise.
	t.Parallel()
	d := env.main
	out := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 25*time.Minute)
	defer cancel()
	// The libvirt peer's private libvirtd shares the host's machine
	// cgroup with the libvirt tests' (see libvirtd.Exclusive).
	release, err := libvirtd.Exclusive(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	if left := peerLeftovers(t); len(left) > 0 {
		t.Fatalf("peer leftovers before the run: %q", left)
	}
	began := time.Now()
	cmd := d.Command(ctx, "bench", "--quick", "--classes", "container,vm,emulation", "--peers", "all", "--out", out)
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("bench --quick --peers all: %v\n%s%s", err, stdout.String(), stderr.String())
	}
	t.Logf("bench --quick --peers all took %s", time.Since(began).Round(time.Second))
	table := stdout.String()
	for _, want := range []string{"native", "container", "vm (TCG)", "emulation (aarch64"} {
		if !strings.Contains(table, want) {
			t.Errorf("the table has no column %q:\n%s", want, table)
		}
	}
	r := readReport(t, out)
	var names []string
	for _, c := range r.Classes {
		names = append(names, c.Name)
	}
	want := "native,container,vm,emulation"
	for _, p := range peer.Names {
		want += "," + benchreport.PeerPrefix + p
	}
	if got := strings.Join(names, ","); got != want {
		t.Fatalf("classes %s, want %s", got, want)
	}
	for _, c := range r.Classes[:4] {
		if !c.Works || c.Probe == nil || c.ProbeError != "" {
			t.Errorf("%s: works %v, probe error %q, reason %q", c.Name, c.Works, c.ProbeError, c.Reason)
		}
		if c.Name != benchreport.Native && (len(c.Lifecycle) != 4 || c.Density == nil || c.Density.Guests == 0 || c.Density.PerGuestBytes <= 0) {
			t.Errorf("%s: lifecycle %+v density %+v", c.Name, c.Lifecycle, c.Density)
		}
	}
	checkVerdictsFollowIntervals(t, r)
	for _, class := range []string{benchreport.VM, benchreport.Emulation} {
		if ratio := cpuRatio(t, r, class, probe.CPUFloat); ratio > 0.5 {
			t.Errorf("%s (TCG) cpu.float ratio to native %.2f, want well below 1", class, ratio)
		}
	}
	checkPeers(t, d, r, table)
	if html, err := os.ReadFile(filepath.Join(out, "report.html")); err != nil || !strings.Contains(string(html), "report-data") {
		t.Errorf("report.html: %v", err)
	}
	advice := d.Must(t, "advise", "--guest-os", "windows", "--report", filepath.Join(out, "report.json"))
	lower := strings.ToLower(advice)
	if !strings.Contains(lower, "container") || !strings.Contains(lower, "kernel") {
		t.Errorf("advise for windows does not say why a container is out:\n%s", advice)
	}
	if first := strings.SplitN(advice, "\n", 2)[0]; strings.Contains(strings.ToLower(first), "container") {
		t.Errorf("advise recommends a container for windows:\n%s", advice)
	}
}
