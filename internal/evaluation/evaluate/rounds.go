package evaluate

import (
	"context"
	"fmt"
	"math"
	"strconv"
	"time"

	"github.com/polyvisor/polyvisor/internal/evaluation/benchreport"
	"github.com/polyvisor/polyvisor/internal/evaluation/probe"
)

// roundPlan is how long the probe's rounds may go on for a size: at least
// min rounds (an interval needs a few), then until every ratio's interval
// is within TargetHalfWidth, max rounds are done or budget is spent.
type roundPlan struct {
	min, max int
	budget   time.Duration
}

var roundPlans = map[string]roundPlan{
	probe.SizeQuick:    {min: 3, max: 5, budget: 3 * time.Minute},
	probe.SizeDefault:  {min: 5, max: 15, budget: 12 * time.Minute},
	probe.SizeThorough: {min: 7, max: 31, budget: 40 * time.Minute},
}

// TargetHalfWidth is how narrow a ratio's interval must be for the rounds
// to stop before their budget: ±3 % of the ratio.
const TargetHalfWidth = 0.03

// member is a column of the report that takes part in the rounds: native,
// a class's probe guest, a peer's.
type member struct {
	class int // index into Report.Classes
	probe func(ctx context.Context) (*probe.Output, error)
}

// runRounds runs the probe in every member, round after round, each round
// in an order rotated by one from the last so that no member always runs
// first (after an idle spell) or last (after the others warmed the host).
// Between rounds it samples the host's load. It stops as roundPlans says
// and sums each class's rounds up into its Probe.
func (r *runner) runRounds(ctx context.Context, report *benchreport.Report, members []member, ours func() []int) error {
	plan := roundPlans[r.opts.Size]
	began := time.Now()
	for round := 0; ; round++ {
		r.opts.Progress(fmt.Sprintf("round %d: the probe in every class", round+1))
		for k := range members {
			m := members[(round+k)%len(members)]
			out, err := m.probe(ctx)
			if cerr := ctx.Err(); cerr != nil {
				return cerr
			}
			rd := benchreport.Round{Probe: out}
			if err != nil {
				rd = benchreport.Round{Error: err.Error()}
			}
			c := &report.Classes[m.class]
			c.Rounds = append(c.Rounds, rd)
		}
		report.Rounds = round + 1
		if s, err := sampleLoad(ctx, "after round "+strconv.Itoa(round+1), ours()); err == nil {
			report.Load.Samples = append(report.Load.Samples, s)
		} else if ctx.Err() != nil {
			return ctx.Err()
		}
		if report.Rounds < plan.min {
			continue
		}
		widest, where := widestInterval(report)
		switch {
		case widest <= TargetHalfWidth:
			report.StopReason = fmt.Sprintf("every ratio's interval within ±%.0f %%", TargetHalfWidth*100)
		case report.Rounds >= plan.max:
			report.StopReason = fmt.Sprintf("the size's limit of %d rounds; the widest interval ±%.0f %% (%s)", plan.max, widest*100, where)
		case time.Since(began) >= plan.budget:
			report.StopReason = fmt.Sprintf("the size's time budget (%s) spent; the widest interval ±%.0f %% (%s)", plan.budget, widest*100, where)
		default:
			continue
		}
		break
	}
	for i := range report.Classes {
		summarizeRounds(&report.Classes[i])
	}
	return nil
}

// widestInterval is the widest ratio interval of the report, relative to
// its ratio, and where it is; 0 when there is none yet.
func widestInterval(report *benchreport.Report) (float64, string) {
	native := report.FindClass(benchreport.Native)
	if native == nil {
		return 0, ""
	}
	nativeRuns := roundFigures(native)
	widest, where := 0.0, ""
	for i := range report.Classes {
		c := &report.Classes[i]
		if c.Name == benchreport.Native {
			continue
		}
		for name, runs := range roundFigures(c) {
			nr, ok := nativeRuns[name]
			if !ok {
				continue
			}
			ratio, ci, ok := benchreport.RatioInterval(nr.values, runs.values, runs.higher)
			if !ok || ci.N < 2 {
				continue
			}
			if w := ci.HalfWidth(ratio); w > widest || math.IsInf(w, 1) {
				widest, where = w, c.Name+" "+name
			}
		}
	}
	return widest, where
}

// series is one workload's figure in each round; NaN where that round
// failed, so that rounds stay aligned with other classes'.
type series struct {
	values []float64
	higher bool
}

// roundFigures returns each workload's figure per round.
func roundFigures(c *benchreport.Class) map[string]series {
	out := map[string]series{}
	for i, rd := range c.Rounds {
		if rd.Probe == nil {
			continue
		}
		for _, res := range rd.Probe.Results {
			s, ok := out[res.Name]
			if !ok {
				s = series{values: nanSlice(len(c.Rounds)), higher: res.HigherIsBetter}
			}
			if res.Error == "" {
				s.values[i] = res.Median
			}
			out[res.Name] = s
		}
	}
	return out
}

func nanSlice(n int) []float64 {
	s := make([]float64, n)
	for i := range s {
		s[i] = math.NaN()
	}
	return s
}

// summarizeRounds sets the class's Probe to its rounds summed up: each
// workload's Runs are its figures of the rounds that measured it, in
// round order; a workload no round measured keeps the last round's error.
// With no round that ran, ProbeError is the last round's error.
func summarizeRounds(c *benchreport.Class) {
	var summary *probe.Output
	var lastErr string
	for _, rd := range c.Rounds {
		if rd.Probe == nil {
			lastErr = rd.Error
			continue
		}
		if summary == nil {
			s := *rd.Probe
			s.Results = nil
			for _, res := range rd.Probe.Results {
				s.Results = append(s.Results, probe.Result{Name: res.Name, Unit: res.Unit, HigherIsBetter: res.HigherIsBetter})
			}
			summary = &s
		}
		for _, res := range rd.Probe.Results {
			for i := range summary.Results {
				sr := &summary.Results[i]
				if sr.Name != res.Name {
					continue
				}
				if res.Error != "" {
					sr.Error = res.Error
					continue
				}
				sr.Runs = append(sr.Runs, res.Median)
				if res.Note != "" {
					sr.Note = res.Note
				}
			}
		}
	}
	if summary == nil {
		if len(c.Rounds) > 0 {
			c.ProbeError = lastErr
		}
		return
	}
	for i := range summary.Results {
		sr := &summary.Results[i]
		if len(sr.Runs) == 0 {
			continue
		}
		sr.Error = "" // some round measured it
		f := figureOf(sr.Name, sr.Unit, sr.HigherIsBetter, sr.Runs)
		sr.Median, sr.Min, sr.Max = f.Median, f.Min, f.Max
	}
	c.Probe = summary
}
