package benchreport

import (
	"math"
	"strings"
	"testing"

	"github.com/polyvisor/polyvisor/internal/evaluation/probe"
)

func near(a, b float64) bool { return math.Abs(a-b) < 1e-9 }

func TestXOfNative(t *testing.T) {
	cases := []struct {
		class, native float64
		higher        bool
		want          float64
		ok            bool
	}{
		{900, 1000, true, 0.9, true}, // throughput: class/native
		{120, 60, false, 0.5, true},  // latency: native/class, twice as slow is 0.5
		{30, 60, false, 2, true},     // faster than native is above 1
		{0, 1000, true, 0, false},    // a missing value is no ratio, not a zero
		{900, 0, true, 0, false},     // nor is a missing native
		{math.NaN(), 10, true, 0, false},
	}
	for _, c := range cases {
		got, ok := XOfNative(c.class, c.native, c.higher)
		if ok != c.ok || !near(got, c.want) {
			t.Errorf("XOfNative(%v, %v, %v) = %v, %v; want %v, %v", c.class, c.native, c.higher, got, ok, c.want, c.ok)
		}
	}
}

func TestRowsRatiosAndDirections(t *testing.T) {
	r := fullReport()
	rows := Rows(r)
	var figures []string
	for _, row := range rows {
		figures = append(figures, row.Figure)
	}
	want := append(append([]string{}, workloadOrder...),
		"lifecycle.provision", "lifecycle.boot", "lifecycle.stop", "lifecycle.delete", DensityFigure)
	if len(figures) != len(want) {
		t.Fatalf("rows %v, want %v", figures, want)
	}
	for i := range want {
		if figures[i] != want[i] {
			t.Fatalf("rows %v, want %v", figures, want)
		}
	}

	check := func(figure, class string, ratio float64) {
		t.Helper()
		row, ok := FindRow(rows, figure)
		if !ok {
			t.Fatalf("no row %s", figure)
		}
		c := row.Cell(class)
		if c.State != StateOK || !c.HasRatio || math.Abs(c.Ratio-ratio) > 1e-9 {
			t.Errorf("%s %s: %+v, want ratio %v", figure, class, c, ratio)
		}
	}
	check(probe.CPUInt, Native, 1)
	check(probe.CPUInt, Container, 0.98)
	check(probe.CPUInt, VM, 0.06)
	check(probe.Syscall, Container, 60.0/62) // lower is better: native/class
	check(probe.DiskFsync, VM, 200.0/900)    // below 1: worse than native
	check(probe.DiskRandRead, Emulation, 0.16)

	row, _ := FindRow(rows, probe.Syscall)
	if row.HigherIsBetter || row.Unit != "ns" {
		t.Errorf("syscall row: unit %q higherIsBetter %v, want ns and false", row.Unit, row.HigherIsBetter)
	}

	boot, _ := FindRow(rows, LifecycleFigure(Boot))
	if c := boot.Cell(Native); c.State != StateNA || c.Detail == "" {
		t.Errorf("native boot: %+v, want n/a with a reason", c)
	}
	if c := boot.Cell(VM); c.State != StateOK || c.Median != 1430 || c.HasRatio {
		t.Errorf("vm boot: %+v, want 1430 ms and no ratio (native has no boot)", c)
	}

	density, _ := FindRow(rows, DensityFigure)
	c := density.Cell(Container)
	if c.State != StateOK || c.Median != 3 || c.Fit != (23<<30)/(3*mib) {
		t.Errorf("container density: %+v, want 3 MiB and %d fit", c, (23<<30)/(3*mib))
	}
}

func TestRowsFailuresAreNeverZero(t *testing.T) {
	r := brokenReport()
	rows := Rows(r)

	fsync, _ := FindRow(rows, probe.DiskFsync)
	c := fsync.Cell(Container)
	if c.State != StateFailed || c.HasRatio || c.Detail != "fsync /var/tmp/probe: input/output error" {
		t.Errorf("failed fsync: %+v, want failed with its error and no ratio", c)
	}
	if got := CellText(fsync, c); got != "failed: fsync /var/tmp/probe: input/output error" {
		t.Errorf("failed cell text %q", got)
	}
	for _, row := range rows {
		vm := row.Cell(VM)
		if vm.State != StateNA || vm.Detail != "qemu-system-x86_64 not found: run make deps" {
			t.Errorf("%s of a vm that does not work: %+v, want n/a with the host's reason", row.Figure, vm)
		}
	}
	density, _ := FindRow(rows, DensityFigure)
	if c := density.Cell(Container); c.State != StateFailed || c.Fit != 0 {
		t.Errorf("failed density: %+v", c)
	}

	// A native failure leaves the classes their values but no ratio.
	r = fullReport()
	r.Classes[0].Probe.Results[0] = probe.Result{Name: probe.CPUInt, Unit: "Mops/s", HigherIsBetter: true, Error: "killed"}
	row, _ := FindRow(Rows(r), probe.CPUInt)
	if c := row.Cell(Container); c.State != StateOK || c.HasRatio {
		t.Errorf("container cpu.int without native: %+v, want a value and no ratio", c)
	}
	if got := CellText(row, row.Cell(Container)); got != "980 Mops/s" {
		t.Errorf("cell without ratio %q", got)
	}

	// A class whose probe did not run fails every workload, with the error.
	r = fullReport()
	r.Classes[1].Probe, r.Classes[1].ProbeError = nil, "exec polyvisor-probe: no such file"
	row, _ = FindRow(Rows(r), probe.MemCopy)
	if c := row.Cell(Container); c.State != StateFailed || c.Detail != "exec polyvisor-probe: no such file" {
		t.Errorf("probe error: %+v", c)
	}
}

func TestCellText(t *testing.T) {
	rows := Rows(fullReport())
	cases := map[string]string{
		probe.CPUInt:            "980 Mops/s (0.98× [0.97, 0.99])",
		probe.Syscall:           "62.0 ns (0.97× [0.96, 0.98])",
		LifecycleFigure(Boot):   "18.0 ms [16.2, 21.6]",
		DensityFigure:           "3.00 MiB (7850 fit)",
		LifecycleFigure(Delete): "8.00 ms [7.20, 9.60]",
	}
	for figure, want := range cases {
		row, _ := FindRow(rows, figure)
		if got := CellText(row, row.Cell(Container)); got != want {
			t.Errorf("%s: %q, want %q", figure, got, want)
		}
	}
	row, _ := FindRow(rows, probe.CPUFloat)
	if got := CellText(row, row.Cell(Emulation)); got != "20.0 Mflops/s (0.025× [0.025, 0.025])" {
		t.Errorf("emulation cpu.float: %q", got)
	}
	if got := CellText(row, row.Cell(Native)); got != "800 Mflops/s (1.00×)" {
		t.Errorf("native cpu.float: %q, want its value and 1.00× with no interval", got)
	}

	// A report from before paired rounds has ratios but no intervals.
	row, _ = FindRow(Rows(oldReport()), probe.CPUInt)
	if got := CellText(row, row.Cell(Container)); got != "980 Mops/s (0.98×)" {
		t.Errorf("version 1 container cpu.int: %q", got)
	}
	// Too few paired rounds: the count instead of an interval.
	r := fullReport()
	nan := math.NaN()
	setRounds(r, Container, probe.CPUInt, 980, 940.8, nan, nan, nan)
	row, _ = FindRow(Rows(r), probe.CPUInt)
	if head, interval := cellParts(row, row.Cell(Container)); head != "960 Mops/s (0.98×)" || interval != "n=2" {
		t.Errorf("two paired rounds: %q, %q", head, interval)
	}
}

func TestRowsPairedRounds(t *testing.T) {
	// Native and the container both ran at half speed in rounds 2 and 4:
	// each round's ratio is 0.98, whatever the host did between rounds.
	r := fullReport()
	setRounds(r, Native, probe.CPUInt, 1000, 500, 1000, 500, 1000)
	setRounds(r, Container, probe.CPUInt, 980, 490, 980, 490, 980)
	row, _ := FindRow(Rows(r), probe.CPUInt)
	c := row.Cell(Container)
	if !near(c.Ratio, 0.98) || c.CI == nil || !near(c.CI.Low, 0.98) || !near(c.CI.High, 0.98) || c.CI.N != 5 {
		t.Errorf("paired ratio: %v %+v, want 0.98 [0.98, 0.98] over 5 rounds", c.Ratio, c.CI)
	}
	if c.Median != 980 || c.Min != 490 || c.Max != 980 {
		t.Errorf("median %v min %v max %v, want the rounds' 980, 490, 980", c.Median, c.Min, c.Max)
	}

	// A round the container failed, and one native failed, are left out.
	nan := math.NaN()
	setRounds(r, Container, probe.CPUInt, 980, nan, 980, 490, 980)
	setRounds(r, Native, probe.CPUInt, 1000, 500, 1000, 500, nan)
	row, _ = FindRow(Rows(r), probe.CPUInt)
	if c := row.Cell(Container); c.CI == nil || c.CI.N != 3 || !near(c.Ratio, 0.98) {
		t.Errorf("with two failed rounds: %v %+v, want 0.98 over 3 paired rounds", c.Ratio, c.CI)
	}
	if c := row.Cell(Native); !c.HasRatio || c.Ratio != 1 || c.CI != nil {
		t.Errorf("native: %+v, want 1.00× and no interval", c)
	}

	// A version 1 report: ratios of the medians, no interval, no noise.
	old := oldReport()
	setFigure(old, Container, probe.CPUInt, 1200)
	row, _ = FindRow(Rows(old), probe.CPUInt)
	if c := row.Cell(Container); !near(c.Ratio, 1.2) || c.CI != nil || c.Noise != "" {
		t.Errorf("version 1 cell: %+v, want 1.2 with no interval", c)
	}

	// A lifecycle figure's own interval is kept; one without is computed
	// from its runs.
	r = fullReport()
	r.FindClass(VM).Lifecycle[1].CI = &Interval{Low: 1400, High: 1500, N: 7}
	boot, _ := FindRow(Rows(r), LifecycleFigure(Boot))
	if c := boot.Cell(VM); c.CI == nil || *c.CI != (Interval{Low: 1400, High: 1500, N: 7}) {
		t.Errorf("vm boot interval %+v, want the figure's own", c.CI)
	}
	if c := boot.Cell(Container); c.CI == nil || c.CI.N != 3 || !c.CI.Contains(18) {
		t.Errorf("container boot interval %+v, want one over its 3 runs around 18 ms", c.CI)
	}
}

func TestNoise(t *testing.T) {
	kvm := kvmReport()
	cases := []struct {
		name   string
		r      *Report
		class  string
		figure string
		ratio  float64
		noise  bool
	}{
		{"container cpu", fullReport(), Container, probe.CPUInt, 1.15, true},
		{"container memory", fullReport(), Container, probe.MemCopy, 1.2, true},
		{"container within its interval", fullReport(), Container, probe.CPUFloat, 1.005, false},
		{"container system call", fullReport(), Container, probe.Syscall, 1.2, false},
		{"container process creation", fullReport(), Container, probe.ProcSpawn, 1.3, false},
		{"container disk", fullReport(), Container, probe.DiskSeqRead, 1.5, false},
		{"TCG vm cpu", fullReport(), VM, probe.CPUHash, 1.1, true},
		{"TCG vm system call (never reaches the host kernel)", fullReport(), VM, probe.Syscall, 1.1, false},
		{"TCG vm disk", fullReport(), VM, probe.DiskFsync, 2, false},
		{"KVM vm cpu", kvm, VM, probe.CPUInt, 1.1, false},
		{"emulation memory", fullReport(), Emulation, probe.MemCopy, 1.2, true},
		{"emulation process creation", fullReport(), Emulation, probe.ProcSpawn, 1.2, false},
		{"native", fullReport(), Native, probe.CPUInt, 1, false},
	}
	for _, c := range cases {
		if c.class != Native {
			pairedRounds(c.r, c.class, c.figure, c.ratio*0.99, c.ratio, c.ratio*1.01, c.ratio, c.ratio)
		}
		row, _ := FindRow(Rows(c.r), c.figure)
		cell := row.Cell(c.class)
		if math.Abs(cell.Ratio-c.ratio) > 0.02 {
			t.Errorf("%s: ratio %v, want %v", c.name, cell.Ratio, c.ratio)
		}
		if got := cell.Noise != ""; got != c.noise {
			t.Errorf("%s: noise %q (ratio %v %+v), want noise %v", c.name, cell.Noise, cell.Ratio, cell.CI, c.noise)
		}
		if c.noise {
			want := "noise: " + FormatRatio(cell.Ratio) + " " + FormatRatioInterval(*cell.CI) + ", faster than its host"
			if got := CellText(row, cell); got != want || !strings.HasPrefix(cell.Noise, "faster than its host beyond its interval [") {
				t.Errorf("%s: text %q noise %q, want %q", c.name, got, cell.Noise, want)
			}
		}
	}

	// Peers: the container peers always, VM peers under TCG (their own
	// accel or, when they do not say, the host's).
	for _, p := range []struct {
		name, accel string
		noise       bool
	}{
		{"runc", "", true}, {"crun", "", true}, {"lxc", "", true}, {"podman", "", true}, {"incus", "", true},
		{"qemu", "", true}, {"virsh", "tcg", true}, {"virsh", "kvm", false},
	} {
		r := fullReport()
		r.Classes = append(r.Classes, measuredClass(Class{Name: PeerPrefix + p.name, Accel: p.accel, Arch: "x86_64", Works: true}, nativeFigures))
		pairedRounds(r, PeerPrefix+p.name, probe.CPUInt, 1.1, 1.12, 1.09, 1.1, 1.11)
		row, _ := FindRow(Rows(r), probe.CPUInt)
		if got := row.Cell(PeerPrefix+p.name).Noise != ""; got != p.noise {
			t.Errorf("peer %s (accel %q): noise %v, want %v", p.name, p.accel, got, p.noise)
		}
	}
}
