package bench

import (
	"testing"
	"time"
)

func TestPercentile(t *testing.T) {
	s := samples{4 * time.Millisecond, 1 * time.Millisecond, 3 * time.Millisecond, 2 * time.Millisecond}
	if got := s.median(); got != 2.5 {
		t.Errorf("median = %v, want 2.5", got)
	}
	if got := s.percentile(100); got != 4 {
		t.Errorf("p100 = %v, want 4", got)
	}
	if got := (samples{7 * time.Millisecond}).percentile(95); got != 7 {
		t.Errorf("p95 of one = %v, want 7", got)
	}
}
