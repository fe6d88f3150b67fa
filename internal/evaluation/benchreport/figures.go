package benchreport

import (
	"fmt"
	"math"
	"slices"
	"strings"
)

// Row groups: where a row's figures come from.
const (
	GroupWorkload  = "workload"  // the probe's workloads (probe.Output.Results)
	GroupLifecycle = "lifecycle" // Class.Lifecycle
	GroupDensity   = "density"   // Class.Density
)

// DensityFigure names the density row: host memory per idle guest.
const DensityFigure = "density.per_guest"

// MinIntervalRuns is the fewest runs (or paired rounds) an interval must
// stand on to be shown and to decide a claim: with fewer, the bootstrap
// interval of a median is only the range of one or two values.
const MinIntervalRuns = 3

// notInReport is the reason of a cell of a class the report lacks.
const notInReport = "not in this report"

// notAGuest is why native has no lifecycle or density figures.
const notAGuest = "not a guest"

// Cell states.
const (
	StateOK     = "ok"     // measured: Median (and Ratio when native has the figure)
	StateFailed = "failed" // measuring failed: Detail is the error
	StateNA     = "n/a"    // not applicable or not measured: Detail says why
)

// Row is one figure side by side across the classes of a report: what the
// table, the charts and the claims read.
type Row struct {
	Figure         string `json:"figure"` // cpu.int, lifecycle.boot, density.per_guest
	Group          string `json:"group"`  // GroupWorkload, GroupLifecycle, GroupDensity
	Unit           string `json:"unit"`
	HigherIsBetter bool   `json:"higherIsBetter"`
	// Cells are one per Report.Classes, in the same order.
	Cells []Cell `json:"cells"`
}

// Cell is one class's value of one figure.
type Cell struct {
	Class  string  `json:"class"`
	State  string  `json:"state"` // StateOK, StateFailed, StateNA
	Median float64 `json:"median"`
	Min    float64 `json:"min,omitempty"`
	Max    float64 `json:"max,omitempty"`
	// Ratio is the value "x of native" (see XOfNative); HasRatio is false
	// when there is nothing to compare with (native failed, or has no such
	// figure, as for lifecycle and density).
	Ratio    float64 `json:"ratio,omitempty"`
	HasRatio bool    `json:"hasRatio"`
	// CI is the 95 % interval: of Ratio over paired rounds for a workload
	// (RatioInterval), of Median for a lifecycle figure.
	CI *Interval `json:"ci,omitempty"`
	// Noise is set when the cell cannot be a result: a class that cannot
	// outrun its host (a container, a TCG guest) measured faster than
	// native beyond its interval. It says why; views show it instead of
	// the ratio, and claims do not count the cell.
	Noise string `json:"noise,omitempty"`
	// Detail is the error of a failed cell, the reason of an n/a one, or
	// the probe's note on how an OK one was measured.
	Detail string `json:"detail,omitempty"`
	// Text is the cell as every view shows it (CellText).
	Text string `json:"text"`
	// Fit is, for the density row, how many such guests fit in the host's
	// memory (see Fit).
	Fit int64 `json:"fit,omitempty"`
}

// XOfNative is how a class compares with the host itself, the one
// direction every ratio in polyvisor is shown in: 1 means as good as
// native, below 1 worse, above 1 better. For figures where higher is
// better (MiB/s, Mops/s, IOPS) it is class/native; for figures where lower
// is better (ns, µs, ms) it is native/class. It is false when either value
// is not a positive number, so a failure never becomes a ratio of zero.
func XOfNative(class, native float64, higherIsBetter bool) (float64, bool) {
	if !(class > 0) || !(native > 0) || math.IsInf(class, 0) || math.IsInf(native, 0) {
		return 0, false
	}
	if higherIsBetter {
		return class / native, true
	}
	return native / class, true
}

// HostReserveBytes is the memory kept for the host when counting how many
// guests fit: 1 GiB left to the host, the rest of its memory for guests,
// the rule the density claim is stated with.
const HostReserveBytes = 1 << 30

// Fit is how many guests taking perGuest bytes each fit in the host's
// memory, HostReserveBytes kept aside; false when either is unknown.
func Fit(h Host, perGuest int64) (int64, bool) {
	if perGuest <= 0 || h.MemoryBytes <= 0 {
		return 0, false
	}
	return max(h.MemoryBytes-HostReserveBytes, 0) / perGuest, true
}

// Rows sets every figure of the report side by side: the probe's
// workloads in the order they first appear (native first), then the
// lifecycle figures, then density.
func Rows(r *Report) []Row {
	var rows []Row
	for _, name := range workloadNames(r) {
		rows = append(rows, workloadRow(r, name))
	}
	for _, name := range lifecycleNames(r) {
		rows = append(rows, lifecycleRow(r, name))
	}
	if hasDensity(r) {
		rows = append(rows, densityRow(r))
	}
	for _, row := range rows {
		for i := range row.Cells {
			row.Cells[i].Text = CellText(row, row.Cells[i])
		}
	}
	return rows
}

// FindRow returns the row of the named figure.
func FindRow(rows []Row, figure string) (Row, bool) {
	for _, row := range rows {
		if row.Figure == figure {
			return row, true
		}
	}
	return Row{}, false
}

// Cell returns the named class's cell of the row; an n/a cell when the
// report has no such class.
func (row Row) Cell(class string) Cell {
	for _, c := range row.Cells {
		if c.Class == class {
			return c
		}
	}
	return Cell{Class: class, State: StateNA, Detail: notInReport}
}

// FindClass returns the named class of the report, or nil.
func (r *Report) FindClass(name string) *Class {
	for i := range r.Classes {
		if r.Classes[i].Name == name {
			return &r.Classes[i]
		}
	}
	return nil
}

func workloadNames(r *Report) []string {
	var names []string
	seen := map[string]bool{}
	for _, c := range r.Classes {
		if c.Probe == nil {
			continue
		}
		for _, res := range c.Probe.Results {
			if !seen[res.Name] {
				seen[res.Name] = true
				names = append(names, res.Name)
			}
		}
	}
	return names
}

// lifecycleOrder is the order lifecycle rows are shown in; names the
// report has beyond these follow them.
var lifecycleOrder = []string{Provision, Boot, Stop, Delete}

func lifecycleNames(r *Report) []string {
	seen := map[string]bool{}
	var extra []string
	for _, c := range r.Classes {
		for _, f := range c.Lifecycle {
			if !seen[f.Name] {
				seen[f.Name] = true
				extra = append(extra, f.Name)
			}
		}
	}
	var names []string
	for _, n := range lifecycleOrder {
		if seen[n] {
			names = append(names, n)
		}
	}
	for _, n := range extra {
		if !slices.Contains(lifecycleOrder, n) {
			names = append(names, n)
		}
	}
	return names
}

func hasDensity(r *Report) bool {
	for _, c := range r.Classes {
		if c.Density != nil {
			return true
		}
	}
	return false
}

// LifecycleFigure is the row name of a lifecycle figure: lifecycle.boot.
func LifecycleFigure(name string) string { return "lifecycle." + name }

func workloadRow(r *Report, name string) Row {
	row := Row{Figure: name, Group: GroupWorkload}
	nativeAt := -1
	for i, c := range r.Classes {
		row.Cells = append(row.Cells, workloadCell(c, name, &row))
		if c.Name == Native {
			nativeAt = i
		}
	}
	if nativeAt < 0 || row.Cells[nativeAt].State != StateOK {
		return row
	}
	native := r.Classes[nativeAt]
	nativeRounds := roundValues(native, name)
	for i := range row.Cells {
		cell, class := &row.Cells[i], r.Classes[i]
		switch {
		case cell.State != StateOK:
		case i == nativeAt:
			cell.Ratio, cell.HasRatio = 1, true
		case len(native.Rounds) == 0 || len(class.Rounds) == 0:
			// A report from before paired rounds (version 1): the ratio of
			// the medians, with no interval to judge it by.
			cell.Ratio, cell.HasRatio = XOfNative(cell.Median, row.Cells[nativeAt].Median, row.HigherIsBetter)
		default:
			if ratio, ci, ok := RatioInterval(nativeRounds, roundValues(class, name), row.HigherIsBetter); ok {
				cell.Ratio, cell.HasRatio, cell.CI = ratio, true, &ci
				cell.Noise = noise(r, class, name, ci)
			}
		}
	}
	return row
}

// roundValues are a class's medians of the named workload in each of its
// rounds, index-aligned with the rounds; NaN where that round failed or
// lacks the workload.
func roundValues(c Class, name string) []float64 {
	values := make([]float64, len(c.Rounds))
	for i, round := range c.Rounds {
		values[i] = math.NaN()
		if round.Probe == nil {
			continue
		}
		for _, res := range round.Probe.Results {
			if res.Name == name && res.Error == "" {
				values[i] = res.Median
			}
		}
	}
	return values
}

// measured keeps the positive, finite values: the rounds that measured.
func measured(values []float64) []float64 {
	var out []float64
	for _, v := range values {
		if v > 0 && !math.IsInf(v, 0) {
			out = append(out, v)
		}
	}
	return out
}

// workloadCell is a class's cell of a workload; it fills the row's unit
// and direction from the first result that names them.
func workloadCell(c Class, name string, row *Row) Cell {
	cell := Cell{Class: c.Name, State: StateNA}
	switch {
	case !c.Works:
		cell.Detail = orDefault(c.Reason, "does not work on this host")
		return cell
	case c.Probe == nil:
		cell.State = StateFailed
		cell.Detail = orDefault(c.ProbeError, "the probe did not run")
		return cell
	}
	for _, res := range c.Probe.Results {
		if res.Name != name {
			continue
		}
		if row.Unit == "" {
			row.Unit, row.HigherIsBetter = res.Unit, res.HigherIsBetter
		}
		if res.Error != "" {
			cell.State = StateFailed
			cell.Detail = res.Error
			return cell
		}
		cell.State = StateOK
		cell.Median, cell.Min, cell.Max, cell.Detail = res.Median, res.Min, res.Max, res.Note
		if rounds := measured(roundValues(c, name)); len(rounds) > 0 {
			cell.Median, cell.Min, cell.Max = Median(rounds), slices.Min(rounds), slices.Max(rounds)
		}
		return cell
	}
	cell.Detail = "not measured in this class"
	return cell
}

// sharedKernel are the classes whose guests are processes of the host's
// own kernel: polyvisor's containers and the container peers.
var sharedKernel = []string{Container, PeerPrefix + "runc", PeerPrefix + "crun", PeerPrefix + "lxc", PeerPrefix + "podman", PeerPrefix + "incus"}

// translated says whether the class's guest code is translated by TCG:
// emulation always, a vm (or a VM peer) when it ran without KVM.
func translated(r *Report, c Class) bool {
	if c.Name == Emulation {
		return true
	}
	accel := c.Accel
	if accel == "" && (c.Name == VM || c.Name == PeerPrefix+"qemu" || c.Name == PeerPrefix+"virsh") {
		accel = r.Host.Accel
	}
	return isTCG(accel)
}

// noiseChecked says whether a class measured faster than its host on the
// workload can only be noise. CPU and memory workloads (cpu.*, mem.*) run
// the same instructions on the same cores and memory in every class: a
// container adds nothing to them and TCG slows them, so neither can be
// faster. System calls and process creation (syscall.*, proc.*) are not
// checked: a container's go through a differently configured kernel
// (another seccomp filter, pid namespace, a smaller root to exec from),
// and a translated guest's never reach the host's kernel at all, which on
// a host that is itself a guest (where each of its own system calls may
// trap to its hypervisor) is legitimately quicker. Disk (and network)
// figures are not checked either: a guest's storage stack (overlayfs, a
// qcow2 behind the host's page cache) differs from the host's, and a
// faster one is a finding.
func noiseChecked(figure string) bool {
	return strings.HasPrefix(figure, cpuPrefix) || strings.HasPrefix(figure, memPrefix)
}

// noise says why a cell cannot be a result: the class cannot outrun its
// host on the workload, yet its whole ratio interval lies above 1.
func noise(r *Report, c Class, figure string, ci Interval) string {
	tr := translated(r, c)
	if ci.Low <= 1 || !(tr || slices.Contains(sharedKernel, c.Name)) || !noiseChecked(figure) {
		return ""
	}
	return fmt.Sprintf("faster than its host beyond its interval %s: noise, not a result", FormatRatioInterval(ci))
}

// guestCell starts a cell of a figure only guests have: n/a for native and
// for a class that does not work here, with the reason; measured says the
// class's own figure decides.
func guestCell(c Class) (cell Cell, measured bool) {
	cell = Cell{Class: c.Name, State: StateNA, Detail: "not measured in this class"}
	switch {
	case c.Name == Native:
		cell.Detail = notAGuest
	case !c.Works:
		cell.Detail = orDefault(c.Reason, "does not work on this host")
	default:
		measured = true
	}
	return cell, measured
}

func lifecycleRow(r *Report, name string) Row {
	row := Row{Figure: LifecycleFigure(name), Group: GroupLifecycle}
	for _, c := range r.Classes {
		cell, isGuest := guestCell(c)
		if isGuest {
			for _, f := range c.Lifecycle {
				if f.Name != name {
					continue
				}
				if row.Unit == "" {
					row.Unit, row.HigherIsBetter = f.Unit, f.HigherIsBetter
				}
				if f.Error != "" {
					cell.State, cell.Detail = StateFailed, f.Error
					continue
				}
				cell.State, cell.Detail = StateOK, ""
				cell.Median, cell.Min, cell.Max = f.Median, f.Min, f.Max
				cell.CI = f.CI
				if cell.CI == nil {
					if ci, ok := MedianInterval(measured(f.Runs)); ok {
						cell.CI = &ci
					}
				}
			}
		}
		row.Cells = append(row.Cells, cell)
	}
	return row
}

func densityRow(r *Report) Row {
	row := Row{Figure: DensityFigure, Group: GroupDensity, Unit: "MiB"}
	for _, c := range r.Classes {
		cell, measured := guestCell(c)
		switch {
		case !measured, c.Density == nil:
		case c.Density.Error != "":
			cell.State, cell.Detail = StateFailed, c.Density.Error
		case c.Density.PerGuestBytes <= 0:
			cell.State = StateFailed
			cell.Detail = fmt.Sprintf("no memory measured for %d guests", c.Density.Guests)
		default:
			cell.State = StateOK
			cell.Median = float64(c.Density.PerGuestBytes) / (1 << 20)
			cell.Detail = fmt.Sprintf("%d guests launched", c.Density.Guests)
			cell.Fit, _ = Fit(r.Host, c.Density.PerGuestBytes)
		}
		row.Cells = append(row.Cells, cell)
	}
	return row
}

// CellText is a cell as the table and the ratios table show it:
// "median unit (ratio× [low, high])", "median unit [low, high]" for a
// lifecycle figure, "noise: ...", "failed: error" or "n/a: reason".
func CellText(row Row, c Cell) string {
	head, interval := cellParts(row, c)
	switch {
	case interval == "":
		return head
	case c.Noise != "":
		return "noise: " + interval + ", faster than its host"
	case c.HasRatio:
		return strings.TrimSuffix(head, ")") + " " + interval + ")"
	}
	return head + " " + interval
}

// cellParts splits a cell's text in two, for the table to show on two
// lines: the value (with its ratio) and its interval; the interval is ""
// when it has none, "n=2" when it stands on too few runs to be shown.
func cellParts(row Row, c Cell) (head, interval string) {
	switch c.State {
	case StateFailed:
		return "failed: " + oneLine(c.Detail), ""
	case StateNA:
		return "n/a: " + oneLine(c.Detail), ""
	}
	if c.Noise != "" {
		return "noise, not a result", FormatRatio(c.Ratio) + " " + FormatRatioInterval(*c.CI)
	}
	head = FormatNumber(c.Median) + " " + row.Unit
	switch {
	case c.HasRatio:
		head += " (" + FormatRatio(c.Ratio) + ")"
	case row.Group == GroupDensity && c.Fit > 0:
		head += " (" + FormatCount(c.Fit) + " fit)"
	}
	switch {
	case c.CI == nil:
	case c.CI.N < MinIntervalRuns:
		interval = fmt.Sprintf("n=%d", c.CI.N)
	case c.HasRatio:
		interval = FormatRatioInterval(*c.CI)
	default:
		interval = c.CI.String()
	}
	return head, interval
}

// FormatRatioInterval shows a ratio interval as ratios are shown:
// [0.95, 1.01].
func FormatRatioInterval(ci Interval) string {
	return "[" + strings.TrimSuffix(FormatRatio(ci.Low), "×") + ", " + strings.TrimSuffix(FormatRatio(ci.High), "×") + "]"
}

// FormatNumber shows a measured value with about three significant digits.
func FormatNumber(v float64) string {
	a := math.Abs(v)
	switch {
	case a >= 100 || a == 0:
		return fmt.Sprintf("%.0f", v)
	case a >= 10:
		return fmt.Sprintf("%.1f", v)
	case a >= 1:
		return fmt.Sprintf("%.2f", v)
	}
	return fmt.Sprintf("%.3g", v)
}

// FormatRatio shows an "x of native" ratio: 0.98×, 0.043×.
func FormatRatio(v float64) string {
	if v >= 0.1 {
		return fmt.Sprintf("%.2f×", v)
	}
	return fmt.Sprintf("%.2g×", v)
}

// FormatCount shows a guest count: 950, 12k, 3.4M.
func FormatCount(n int64) string {
	switch {
	case n >= 10_000_000:
		return fmt.Sprintf("%dM", n/1_000_000)
	case n >= 1_000_000:
		return fmt.Sprintf("%.1fM", float64(n)/1e6)
	case n >= 10_000:
		return fmt.Sprintf("%dk", n/1000)
	}
	return fmt.Sprint(n)
}

// FormatBytes shows a size in binary units: 230 MiB, 23.5 GiB.
func FormatBytes(b int64) string {
	switch {
	case b >= 1<<30:
		return FormatNumber(float64(b)/(1<<30)) + " GiB"
	case b >= 1<<20:
		return FormatNumber(float64(b)/(1<<20)) + " MiB"
	case b >= 1<<10:
		return FormatNumber(float64(b)/(1<<10)) + " KiB"
	}
	return fmt.Sprintf("%d B", b)
}

// oneLine folds an error or reason onto one line.
func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

func orDefault(s, def string) string {
	if strings.TrimSpace(s) == "" {
		return def
	}
	return s
}
