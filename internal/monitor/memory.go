package monitor

import (
	"runtime/debug"
	"time"
)

// firstTrimDelay lets the start settle (the guest's first output, the
// daemon's first attach) before the first trim.
const firstTrimDelay = 2 * time.Second

// trimInterval is how often an idle monitor gives freed heap back to the
// host. It is under the Go runtime's forced-GC period (2 minutes), so an
// idle monitor's collections happen here, followed by the release.
const trimInterval = 100 * time.Second

// trimMemory collects garbage and returns the freed pages to the host: a
// monitor's start-up garbage would otherwise stay resident for as long as
// its guest runs.
func trimMemory() { debug.FreeOSMemory() }
