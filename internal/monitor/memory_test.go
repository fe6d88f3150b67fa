package monitor

import (
	"runtime"
	"testing"
)

// TestTrimMemoryReturnsHeap checks that a trim gives freed heap back.
func TestTrimMemoryReturnsHeap(t *testing.T) {
	garbage := make([][]byte, 64)
	for i := range garbage {
		garbage[i] = make([]byte, 64<<10)
	}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	trimMemory()
	runtime.ReadMemStats(&after)
	if after.HeapReleased <= before.HeapReleased {
		t.Errorf("heap released %d -> %d bytes: nothing went back to the host", before.HeapReleased, after.HeapReleased)
	}
}
