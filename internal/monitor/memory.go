package monitor

import (
	"math"
	"runtime/debug"
	"time"
)

// firstTrimDelay lets the start settle (the guest's first output, the
// daemon's first attach) before the monitor first goes quiet.
const firstTrimDelay = 2 * time.Second

// quietMemoryLimit bounds the monitor's memory while its collector is off
// (see quiet): should something allocate after all, the runtime collects
// once its memory reaches this. An idle monitor's runtime holds about
// 4.3 MiB by the limit's measure (what it has mapped less what it has
// returned: stacks, metadata, the live heap), so the limit leaves a few
// MiB of room rather than forcing collections all the time.
const quietMemoryLimit = 8 << 20

// quiet collects garbage, returns the freed pages to the host, and turns
// the collector off until loud: without it, the Go runtime would wake
// every idle monitor for a forced collection every two minutes. While no
// attach client is connected a monitor allocates next to nothing (the
// console goes to the log through one buffer), and quietMemoryLimit bounds
// whatever it does allocate. It returns the GC percent to restore.
func quiet() int {
	debug.FreeOSMemory()
	debug.SetMemoryLimit(quietMemoryLimit)
	return debug.SetGCPercent(-1)
}

// loud turns the collector back on at percent, as returned by quiet, and
// lifts the limit: an attach session allocates frames as the guest's
// console talks, and a burst for a slow client may pass the quiet limit.
func loud(percent int) {
	debug.SetGCPercent(percent)
	debug.SetMemoryLimit(math.MaxInt64)
}
