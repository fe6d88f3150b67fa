package bench

import (
	"math"
	"slices"
	"testing"
	"time"
)

// samples are per-iteration durations; benchmarks report their medians
// and percentiles rather than means, which one slow outlier on a noisy
// machine would drag.
type samples []time.Duration

// percentile returns the p-th percentile (0..100) in milliseconds,
// interpolating between the two nearest ranks; NaN when there are none.
func (s samples) percentile(p float64) float64 {
	if len(s) == 0 {
		return math.NaN()
	}
	sorted := slices.Clone(s)
	slices.Sort(sorted)
	rank := p / 100 * float64(len(sorted)-1)
	lo := int(math.Floor(rank))
	hi := int(math.Ceil(rank))
	frac := rank - float64(lo)
	return ms(sorted[lo]) + frac*(ms(sorted[hi])-ms(sorted[lo]))
}

func (s samples) median() float64 { return s.percentile(50) }

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// inTurns runs ours and the peer's round, ours first on even rounds, so
// that neither always runs on the caches the other warmed.
func inTurns(round int, ours, peer func()) {
	if round%2 == 0 {
		ours()
		peer()
		return
	}
	peer()
	ours()
}

// reportRatio reports the medians of ours and the peer's samples under
// their units and ours ÷ the peer's as "ratio", which it returns.
func reportRatio(b *testing.B, ours samples, oursUnit string, peer samples, peerUnit string) float64 {
	ratio := ours.median() / peer.median()
	b.ReportMetric(ours.median(), oursUnit)
	b.ReportMetric(peer.median(), peerUnit)
	b.ReportMetric(ratio, "ratio")
	return ratio
}
