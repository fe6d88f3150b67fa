package benchreport

import (
	"math"
	"testing"
)

func TestMedianAndSpread(t *testing.T) {
	if !math.IsNaN(Median(nil)) {
		t.Error("median of nothing is a number")
	}
	values := []float64{5, 1, 3}
	if m := Median(values); m != 3 || values[0] != 5 {
		t.Errorf("Median = %v, values %v: want 3 and the values left unsorted", m, values)
	}
	if m := Median([]float64{4, 1, 3, 2}); m != 2.5 {
		t.Errorf("even median %v", m)
	}
	if s := Spread([]float64{90, 100, 110}); !near(s, 0.2) {
		t.Errorf("Spread %v, want 0.2", s)
	}
	if s := Spread([]float64{7}); s != 0 {
		t.Errorf("Spread of one %v", s)
	}
}

func TestIntervals(t *testing.T) {
	runs := []float64{10, 11, 9, 10.5, 9.5, 10.2, 30}
	ci, ok := MedianInterval(runs)
	if !ok || ci.N != 7 || !ci.Contains(Median(runs)) || ci.High >= 30 || ci.Low < 9 {
		t.Errorf("MedianInterval %+v, want one around the median, not reaching the outlier", ci)
	}
	if again, _ := MedianInterval(runs); again != ci {
		t.Errorf("the same runs gave %+v then %+v: the interval must be reproducible", ci, again)
	}
	if one, ok := MedianInterval([]float64{4}); !ok || one != (Interval{Low: 4, High: 4, N: 1}) {
		t.Errorf("one run: %+v", one)
	}
	if _, ok := MedianInterval(nil); ok {
		t.Error("an interval of no runs")
	}

	// Paired: native halves in rounds 2 and 4, the class with it; a
	// failed round (NaN, 0) on either side is left out.
	native := []float64{100, 50, 100, 50, 100, 100}
	class := []float64{90, 45, 90, 45, math.NaN(), 0}
	if rs := PairedRatios(native, class, true); len(rs) != 4 || !near(rs[1], 0.9) {
		t.Errorf("PairedRatios %v", rs)
	}
	ratio, ci, ok := RatioInterval(native, class, true)
	if !ok || !near(ratio, 0.9) || !near(ci.Low, 0.9) || !near(ci.High, 0.9) || ci.N != 4 {
		t.Errorf("RatioInterval %v %+v", ratio, ci)
	}
	// Lower is better: native/class.
	if ratio, _, _ := RatioInterval([]float64{60, 30}, []float64{120, 60}, false); !near(ratio, 0.5) {
		t.Errorf("latency ratio %v, want 0.5", ratio)
	}
	if _, _, ok := RatioInterval([]float64{1}, []float64{math.NaN()}, true); ok {
		t.Error("an interval with no paired round")
	}
	if w := (Interval{Low: 0.97, High: 1.03}).HalfWidth(1); !near(w, 0.03) {
		t.Errorf("HalfWidth %v", w)
	}
	if got := FormatRatioInterval(Interval{Low: 0.951, High: 1.012}); got != "[0.95, 1.01]" {
		t.Errorf("FormatRatioInterval %q", got)
	}
}
