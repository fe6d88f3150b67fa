package monitor

import (
	"math"
	"runtime"
	"runtime/debug"
	"testing"
)

// quiet gives freed heap back to the host and turns the collector off
// under a memory limit; loud turns it back on and lifts the limit.
func TestQuietReturnsHeapAndStopsTheCollector(t *testing.T) {
	allocateGarbage()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	percent := quiet()
	defer loud(percent)
	runtime.ReadMemStats(&after)
	if after.HeapReleased <= before.HeapReleased {
		t.Errorf("heap released %d -> %d bytes: nothing went back to the host", before.HeapReleased, after.HeapReleased)
	}
	if got := debug.SetGCPercent(-1); got != -1 {
		t.Errorf("after quiet the GC percent is %d, want -1 (off)", got)
	}
	if got := debug.SetMemoryLimit(-1); got != quietMemoryLimit {
		t.Errorf("after quiet the memory limit is %d, want %d", got, quietMemoryLimit)
	}
	loud(percent)
	if got := debug.SetGCPercent(percent); got != percent {
		t.Errorf("after loud the GC percent is %d, want %d", got, percent)
	}
	if got := debug.SetMemoryLimit(-1); got != math.MaxInt64 {
		t.Errorf("after loud the memory limit is %d, want none", got)
	}
}

// allocateGarbage allocates 4 MiB and drops it.
func allocateGarbage() {
	garbage := make([][]byte, 64)
	for i := range garbage {
		garbage[i] = make([]byte, 64<<10)
	}
	runtime.KeepAlive(garbage)
}
