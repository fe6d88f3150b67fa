package vmimage

import "time"

// rdtsc reads the CPU's time-stamp counter.
func rdtsc() uint64

// hostTSCkHz measures the host's TSC frequency against the monotonic clock over 100 ms. Each
// end of the interval is read as a (clock, counter) pair bracketed by two counter reads; of
// several tries the tightest bracket is kept, so a preemption between the reads does not
// skew the result. Modern x86 CPUs have an invariant TSC, the same on every core.
func hostTSCkHz() (uint64, bool) {
	start, startTSC := clockAndTSC()
	time.Sleep(100 * time.Millisecond)
	end, endTSC := clockAndTSC()
	ns := end.Sub(start).Nanoseconds()
	if ns <= 0 || endTSC <= startTSC {
		return 0, false
	}
	khz := (endTSC - startTSC) * 1_000_000 / uint64(ns)
	return khz, khz > 0
}

// clockAndTSC returns the monotonic clock and the TSC read as close together as it can.
func clockAndTSC() (time.Time, uint64) {
	var best time.Time
	var bestTSC, bestWidth uint64 = 0, ^uint64(0)
	for range 16 {
		before := rdtsc()
		now := time.Now()
		after := rdtsc()
		if width := after - before; width < bestWidth {
			best, bestTSC, bestWidth = now, before+width/2, width
		}
	}
	return best, bestTSC
}
