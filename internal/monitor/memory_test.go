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
	if got := debug.SetMemoryLimit(-1); got < quietHeadroom || got > inUse()+quietHeadroom {
		t.Errorf("after quiet the memory limit is %d, want what is in use (%d) and %d more", got, inUse(), quietHeadroom)
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

// The collector is off while no client is attached to any guest, on while
// one is, and a second guest's client does not turn it off under the
// first's.
func TestCollectorIsOnWhileAnyClientIsAttached(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	defer debug.SetMemoryLimit(math.MaxInt64)
	var c collector
	gcPercent := func() int { p := debug.SetGCPercent(-1); debug.SetGCPercent(p); return p }
	c.quietIfIdle()
	if got := gcPercent(); got != -1 {
		t.Fatalf("idle: GC percent %d, want -1 (off)", got)
	}
	c.attached()
	c.attached()
	if got := gcPercent(); got != 100 {
		t.Fatalf("two clients: GC percent %d, want 100", got)
	}
	c.detached()
	c.quietIfIdle()
	if got := gcPercent(); got != 100 {
		t.Fatalf("one client left: GC percent %d, want 100", got)
	}
	c.detached()
	if got := gcPercent(); got != -1 {
		t.Fatalf("no client: GC percent %d, want -1 (off)", got)
	}
	c.quietIfIdle() // quiet twice keeps the percent to restore
	c.attached()
	if got := gcPercent(); got != 100 {
		t.Fatalf("a client again: GC percent %d, want 100", got)
	}
}
