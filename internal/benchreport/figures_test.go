package benchreport

import (
	"math"
	"testing"

	"github.com/polyvisor/polyvisor/internal/probe"
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
		probe.CPUInt:            "980 Mops/s (0.98×)",
		probe.Syscall:           "62.0 ns (0.97×)",
		LifecycleFigure(Boot):   "18.0 ms",
		DensityFigure:           "3.00 MiB (7850 fit)",
		LifecycleFigure(Delete): "8.00 ms",
	}
	for figure, want := range cases {
		row, _ := FindRow(rows, figure)
		if got := CellText(row, row.Cell(Container)); got != want {
			t.Errorf("%s: %q, want %q", figure, got, want)
		}
	}
	row, _ := FindRow(rows, probe.CPUFloat)
	if got := CellText(row, row.Cell(Emulation)); got != "20.0 Mflops/s (0.025×)" {
		t.Errorf("emulation cpu.float: %q", got)
	}
}
