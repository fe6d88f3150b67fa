package benchreport

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
)

// Interval is a 95 % confidence interval of a median: of a class's ratio
// to native over paired rounds (RatioInterval), or of a figure's own runs
// (MedianInterval).
type Interval struct {
	Low  float64 `json:"low"`
	High float64 `json:"high"`
	// N is how many runs (or paired rounds) it stands on.
	N int `json:"n"`
}

// Confidence is the level of every Interval.
const Confidence = 0.95

// resamples is how many bootstrap resamples an interval is drawn from.
const resamples = 2000

// Median is the middle of values (the mean of the two middle ones for an
// even count); NaN for none.
func Median(values []float64) float64 {
	n := len(values)
	if n == 0 {
		return math.NaN()
	}
	return sortedMedian(slices.Clone(values))
}

// sortedMedian is the median of values, which it sorts in place: the
// bootstrap's many medians need no copy each.
func sortedMedian(values []float64) float64 {
	slices.Sort(values)
	n := len(values)
	if n%2 == 1 {
		return values[n/2]
	}
	return (values[n/2-1] + values[n/2]) / 2
}

// MedianInterval is the percentile bootstrap interval of the median of
// runs. The resampling is seeded by the data, so a report read twice gives
// the same interval. With one run the interval is that run.
func MedianInterval(runs []float64) (Interval, bool) {
	if len(runs) == 0 {
		return Interval{}, false
	}
	if len(runs) == 1 {
		return Interval{Low: runs[0], High: runs[0], N: 1}, true
	}
	rng := rand.New(rand.NewPCG(seedOf(runs), uint64(len(runs))))
	medians := make([]float64, resamples)
	sample := make([]float64, len(runs))
	for i := range medians {
		for j := range sample {
			sample[j] = runs[rng.IntN(len(runs))]
		}
		medians[i] = sortedMedian(sample)
	}
	slices.Sort(medians)
	lo := medians[int(math.Floor((1-Confidence)/2*float64(resamples)))]
	hi := medians[int(math.Ceil((1+Confidence)/2*float64(resamples)))-1]
	return Interval{Low: lo, High: hi, N: len(runs)}, true
}

// PairedRatios are the x-of-native ratios (XOfNative) of the rounds in
// which both native and the class measured the figure: class[i] was taken
// beside native[i], in the same round, so that a change of the host's load
// between rounds moves both. Rounds where either failed (NaN or not
// positive) are left out.
func PairedRatios(native, class []float64, higherIsBetter bool) []float64 {
	var ratios []float64
	for i := range min(len(native), len(class)) {
		if x, ok := XOfNative(class[i], native[i], higherIsBetter); ok {
			ratios = append(ratios, x)
		}
	}
	return ratios
}

// RatioInterval is a class's ratio to native over paired rounds: the
// median of PairedRatios and its bootstrap interval.
func RatioInterval(native, class []float64, higherIsBetter bool) (ratio float64, ci Interval, ok bool) {
	ratios := PairedRatios(native, class, higherIsBetter)
	ci, ok = MedianInterval(ratios)
	if !ok {
		return 0, Interval{}, false
	}
	return Median(ratios), ci, true
}

// HalfWidth is the interval's half width relative to center: 0.03 for
// ±3 %.
func (ci Interval) HalfWidth(center float64) float64 {
	if center == 0 {
		return math.Inf(1)
	}
	return (ci.High - ci.Low) / 2 / math.Abs(center)
}

// Contains says whether v lies inside the interval.
func (ci Interval) Contains(v float64) bool { return ci.Low <= v && v <= ci.High }

// Spread is how far values range around their median, relative to it:
// (max-min)/median; 0 for fewer than two.
func Spread(values []float64) float64 {
	if len(values) < 2 {
		return 0
	}
	m := Median(values)
	if m == 0 {
		return 0
	}
	return (slices.Max(values) - slices.Min(values)) / math.Abs(m)
}

// String shows the interval as "[0.95, 1.02]" (ratios) or with FormatNumber.
func (ci Interval) String() string {
	return fmt.Sprintf("[%s, %s]", FormatNumber(ci.Low), FormatNumber(ci.High))
}

// seedOf makes a seed from values, so that the same data resamples the
// same way.
func seedOf(values []float64) uint64 {
	var h uint64 = 14695981039346656037
	for _, v := range values {
		h ^= math.Float64bits(v)
		h *= 1099511628211
	}
	return h
}
