package benchreport

import (
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
	"time"
)

// Comparison is two reports side by side, for `polyvisor bench compare A
// B`: how each figure of each class changed from A to B, and whether the
// change is beyond the intervals.
type Comparison struct {
	A ReportInfo `json:"a"`
	B ReportInfo `json:"b"`
	// Changes are one per figure and class present in both reports, in
	// B's row order; a figure the class has in neither (native's boot) is
	// left out.
	Changes []Change `json:"changes"`
	// Beyond and Within count the changes beyond their intervals and
	// within each other's, of Compared: the changes that have intervals on
	// both sides to judge by.
	Beyond   int `json:"beyond"`
	Within   int `json:"within"`
	Compared int `json:"compared"`
	// OnlyInA and OnlyInB name what one report has and the other lacks:
	// "class peer-lxc", "figure disk.fsync".
	OnlyInA []string `json:"onlyInA,omitempty"`
	OnlyInB []string `json:"onlyInB,omitempty"`
}

// ReportInfo says which report a side of a comparison is.
type ReportInfo struct {
	Source     string    `json:"source,omitempty"` // the file it was read from
	Version    int       `json:"version"`
	CreatedAt  time.Time `json:"createdAt"`
	Hostname   string    `json:"hostname"`
	Command    string    `json:"command"`
	Size       string    `json:"size"`
	Rounds     int       `json:"rounds"`
	StopReason string    `json:"stopReason,omitempty"`
	// Quiet is false when the host was busy or its load not recorded.
	Quiet bool `json:"quiet"`
}

// What a Change compares.
const (
	CompareRatio  = "ratio"  // a workload's x of native, with its paired-round interval
	CompareMedian = "median" // a value: lifecycle, density, native's own workloads
)

// Change is one figure of one class in both reports.
type Change struct {
	Figure   string `json:"figure"`
	Class    string `json:"class"`
	Compared string `json:"compared"` // CompareRatio or CompareMedian
	Unit     string `json:"unit"`     // of the medians
	// HigherIsBetter is the direction of what is compared (always true
	// for a ratio).
	HigherIsBetter bool `json:"higherIsBetter"`
	A              Side `json:"a"`
	B              Side `json:"b"`
	// ChangePct is B/A − 1 in % of what is compared; nil when either side
	// has no value.
	ChangePct *float64 `json:"changePct,omitempty"`
	// Beyond is true when the two 95 % intervals do not overlap: the
	// change is more than either run's own scatter.
	Beyond bool `json:"beyond"`
	// Better says, when Beyond, whether B is the better of the two.
	Better bool `json:"better,omitempty"`
	// Within is true when each side's value lies inside the other's
	// interval: the two runs agree (a stricter test than not Beyond).
	Within bool `json:"within"`
	// Note says, in a few words, why a change cannot be beyond: "not in
	// both" (a side failed or is n/a), "noise", "no interval", "one
	// launch" (density), "fewer than 3 runs".
	Note string `json:"note,omitempty"`
}

// Side is one report's value of a Change.
type Side struct {
	State string    `json:"state"` // StateOK, StateFailed, StateNA
	Value float64   `json:"value,omitempty"`
	CI    *Interval `json:"ci,omitempty"`
	Noise string    `json:"noise,omitempty"`
	Text  string    `json:"text"` // the value as the compare table shows it
}

// Info sums up which report r is; source is where it was read from.
func Info(r *Report, source string) ReportInfo {
	return ReportInfo{
		Source: source, Version: r.Version, CreatedAt: r.CreatedAt, Hostname: r.Host.Hostname, Command: r.Command,
		Size: r.Size, Rounds: r.Rounds, StopReason: r.StopReason, Quiet: r.Load != nil && r.Load.Quiet,
	}
}

// Compare sets b beside a: every figure of every class in both.
func Compare(a, b *Report) Comparison {
	c := Comparison{A: Info(a, ""), B: Info(b, "")}
	rowsA, rowsB := Rows(a), Rows(b)
	classesA, classesB := classNames(a), classNames(b)
	c.OnlyInA = onlyIn(classesA, classesB, "class ")
	c.OnlyInB = onlyIn(classesB, classesA, "class ")
	c.OnlyInA = append(c.OnlyInA, onlyIn(figureNames(rowsA), figureNames(rowsB), "figure ")...)
	c.OnlyInB = append(c.OnlyInB, onlyIn(figureNames(rowsB), figureNames(rowsA), "figure ")...)
	for _, rb := range rowsB {
		ra, ok := FindRow(rowsA, rb.Figure)
		if !ok {
			continue
		}
		for _, class := range classesB {
			// A figure the class has in neither (native's boot) is no change.
			if slices.Contains(classesA, class) && (ra.Cell(class).State != StateNA || rb.Cell(class).State != StateNA) {
				ch := change(a, b, ra, rb, class)
				if ch.Note == "" {
					c.Compared++
				}
				if ch.Beyond {
					c.Beyond++
				}
				if ch.Within {
					c.Within++
				}
				c.Changes = append(c.Changes, ch)
			}
		}
	}
	return c
}

func classNames(r *Report) []string {
	names := make([]string, len(r.Classes))
	for i, c := range r.Classes {
		names[i] = c.Name
	}
	return names
}

func figureNames(rows []Row) []string {
	names := make([]string, len(rows))
	for i, row := range rows {
		names[i] = row.Figure
	}
	return names
}

// onlyIn lists, each prefixed, the names of mine that others lacks.
func onlyIn(mine, others []string, prefix string) []string {
	var out []string
	for _, n := range mine {
		if !slices.Contains(others, n) {
			out = append(out, prefix+n)
		}
	}
	return out
}

// change compares one class's cell of a figure in both reports: the
// ratio of a workload, or the median of anything else and of native's
// own workloads (whose ratio is 1 by definition).
func change(a, b *Report, ra, rb Row, class string) Change {
	ch := Change{Figure: rb.Figure, Class: class, Unit: orDefault(rb.Unit, ra.Unit), Compared: CompareMedian, HigherIsBetter: rb.HigherIsBetter}
	ca, cb := ra.Cell(class), rb.Cell(class)
	if rb.Group == GroupWorkload && class != Native {
		ch.Compared, ch.HigherIsBetter = CompareRatio, true
	}
	ch.A, ch.B = side(a, ra, ca, ch.Compared), side(b, rb, cb, ch.Compared)
	switch {
	case ch.A.State != StateOK || ch.B.State != StateOK:
		ch.Note = "not in both"
		return ch
	case !(ch.A.Value > 0) || !(ch.B.Value > 0):
		ch.Note = "no " + ch.Compared + " in both"
		return ch
	}
	pct := (ch.B.Value/ch.A.Value - 1) * 100
	ch.ChangePct = &pct
	switch {
	case ch.A.Noise != "" || ch.B.Noise != "":
		ch.Note = "noise"
	case ch.A.CI == nil || ch.B.CI == nil:
		ch.Note = "no interval"
		if rb.Group == GroupDensity {
			ch.Note = "one launch"
		}
	case ch.A.CI.N < MinIntervalRuns || ch.B.CI.N < MinIntervalRuns:
		ch.Note = fmt.Sprintf("fewer than %d runs", MinIntervalRuns)
	default:
		ch.Beyond = ch.A.CI.High < ch.B.CI.Low || ch.B.CI.High < ch.A.CI.Low
		ch.Better = ch.Beyond && (ch.B.Value > ch.A.Value) == ch.HigherIsBetter
		ch.Within = ch.A.CI.Contains(ch.B.Value) && ch.B.CI.Contains(ch.A.Value)
	}
	return ch
}

// side is a cell as a comparison reads it.
func side(r *Report, row Row, c Cell, compared string) Side {
	s := Side{State: c.State, Noise: c.Noise}
	if c.State != StateOK {
		s.Text = CellText(row, c)
		return s
	}
	switch {
	case compared == CompareRatio && c.HasRatio:
		s.Value, s.CI = c.Ratio, c.CI
		s.Text = FormatRatio(c.Ratio)
		if c.CI != nil && c.CI.N >= MinIntervalRuns {
			s.Text += " " + FormatRatioInterval(*c.CI)
		}
		if c.Noise != "" {
			s.Text = "noise: " + s.Text
		}
		return s
	case compared == CompareRatio:
		s.Text = "no ratio"
		return s
	}
	s.Value, s.CI = c.Median, c.CI
	if row.Group == GroupWorkload && c.Class == Native {
		// Native's own value, with the interval of its rounds' medians.
		s.CI = nil
		if n := r.FindClass(Native); n != nil {
			if ci, ok := MedianInterval(measured(roundValues(*n, row.Figure))); ok {
				s.CI = &ci
			}
		}
	}
	s.Text = FormatNumber(c.Median) + " " + row.Unit
	if s.CI != nil && s.CI.N >= MinIntervalRuns {
		s.Text += " " + s.CI.String()
	}
	return s
}

// FormatChange shows a change in %: +4.1 %, -12 %.
func FormatChange(pct float64) string {
	if math.Abs(pct) >= 10 {
		return fmt.Sprintf("%+.0f %%", pct)
	}
	return fmt.Sprintf("%+.1f %%", pct)
}

// WriteComparison prints a comparison for a terminal: which reports,
// then a line per figure and class, then what only one of them has.
func WriteComparison(w io.Writer, c Comparison) error {
	var b strings.Builder
	b.WriteString("polyvisor bench compare: B against A\n")
	for _, s := range []struct {
		name string
		info ReportInfo
	}{{"A", c.A}, {"B", c.B}} {
		desc := fmt.Sprintf("%s, %s, size %s, ", orDefault(s.info.Hostname, "an unnamed host"), s.info.CreatedAt.UTC().Format("2006-01-02 15:04 MST"), orDefault(s.info.Size, "unknown"))
		switch s.info.Rounds {
		case 0:
			desc += "no paired rounds (schema version " + fmt.Sprint(s.info.Version) + "): no intervals"
		default:
			desc += fmt.Sprintf("%d rounds", s.info.Rounds)
			if !s.info.Quiet {
				desc += ", host not quiet"
			}
		}
		b.WriteString(wrap(orDefault(s.info.Source, "(not read from a file)")+" ("+desc+")", tableWidth, s.name+": ", "   "))
	}
	b.WriteString("\n")
	const figW, classW, valueW, changeW, beyondW = 19, 12, 27, 8, 17
	line := func(cells ...string) {
		widths := []int{figW, classW, valueW, valueW, changeW, beyondW}
		var l string
		for i, cell := range cells {
			l += pad(truncate(cell, widths[i]), widths[i]) + "  "
		}
		b.WriteString(strings.TrimRight(l, " ") + "\n")
	}
	line("figure", "class", "A", "B", "change", "beyond")
	b.WriteString(strings.Repeat("─", figW+classW+2*valueW+changeW+beyondW+5*2) + "\n")
	for _, ch := range c.Changes {
		pct, beyond := "", "no"
		if ch.ChangePct != nil {
			pct = FormatChange(*ch.ChangePct)
		}
		switch {
		case ch.Beyond && ch.Better:
			beyond = "yes (better)"
		case ch.Beyond:
			beyond = "yes (worse)"
		case ch.Note != "":
			beyond = "- " + ch.Note // short: the column is narrow; JSON has the same words
		}
		line(ch.Figure, ch.Class, ch.A.Text, ch.B.Text, pct, beyond)
	}
	b.WriteString("\n")
	fmt.Fprintf(&b, "%d of %d changes with intervals on both sides are beyond them; in %d, each value lies inside the other's interval.\n",
		c.Beyond, c.Compared, c.Within)
	b.WriteString(wrap(`change is B/A - 1 of the ratio to native (workloads) or of the median (lifecycle, density, native itself); `+
		`beyond: the two 95 % intervals do not overlap, so the change is more than the rounds' own scatter`, tableWidth, "", ""))
	if len(c.OnlyInA) > 0 {
		b.WriteString(wrap(strings.Join(c.OnlyInA, ", "), tableWidth, "Only in A: ", "           "))
	}
	if len(c.OnlyInB) > 0 {
		b.WriteString(wrap(strings.Join(c.OnlyInB, ", "), tableWidth, "Only in B: ", "           "))
	}
	_, err := io.WriteString(w, b.String())
	return err
}
