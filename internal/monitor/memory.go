package monitor

import (
	"runtime/debug"
	"time"
)

// firstTrimDelay lets the start settle (the guest's first output, the
// daemon's first attach) before the one trim that follows the start.
const firstTrimDelay = 2 * time.Second

// trimMemory collects garbage and returns the freed pages to the host: a
// monitor's start-up garbage, or what an attach session left, would
// otherwise stay resident for as long as its guest runs. The monitor trims
// once after the start and each time its last attach client leaves, never
// on a period: an idle monitor has no timer of its own that wakes it.
func trimMemory() { debug.FreeOSMemory() }
