package monitor

import (
	"math"
	"runtime/debug"
	"runtime/metrics"
	"sync"
	"time"
)

// firstTrimDelay lets a start settle (the guest's first output, the
// daemon's first attach) before the process first goes quiet.
const firstTrimDelay = 2 * time.Second

// quietHeadroom is how far the memory of a quiet process (see quiet) may
// grow before the runtime collects after all: an idle monitor's runtime
// holds about 4.3 MiB by the limit's measure (what it has mapped less what
// it has returned: stacks, metadata, the live heap), a supervisor more
// with each guest, so the limit sits this far above what is in use when
// the collector goes off, rather than forcing collections all the time.
const quietHeadroom = 8 << 20

// quiet collects garbage, returns the freed pages to the host, and turns
// the collector off until loud: without it, the Go runtime would wake an
// idle monitor for a forced collection every two minutes. While no attach
// client is connected a monitor allocates next to nothing (the console goes
// to the log through one buffer), and the memory limit bounds whatever it
// does allocate. It returns the GC percent to restore, -1 if the collector
// was off already.
func quiet() int {
	debug.FreeOSMemory()
	debug.SetMemoryLimit(inUse() + quietHeadroom)
	return debug.SetGCPercent(-1)
}

// inUse is the runtime's memory by the memory limit's measure: all it has
// mapped less what it has returned to the host.
func inUse() int64 {
	s := []metrics.Sample{{Name: "/memory/classes/total:bytes"}, {Name: "/memory/classes/heap/released:bytes"}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindUint64 || s[1].Value.Kind() != metrics.KindUint64 {
		return 0
	}
	return int64(s[0].Value.Uint64() - s[1].Value.Uint64())
}

// loud turns the collector back on at percent, as returned by quiet, and
// lifts the limit: an attach session allocates frames as the guest's
// console talks, and a burst for a slow client may pass the quiet limit.
func loud(percent int) {
	debug.SetGCPercent(percent)
	debug.SetMemoryLimit(math.MaxInt64)
}

// collector keeps the Go collector off while no attach client is
// connected to any guest of the process, and on while one is: a monitor
// serves one guest, a supervisor many, and the collector is the process's.
type collector struct {
	mu      sync.Mutex
	clients int
	// restore is the GC percent to set again when a client connects while
	// the collector is off; 0 while it is on.
	restore int
}

// attached counts a client in, turning the collector on for it.
func (c *collector) attached() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.clients++
	if c.restore != 0 {
		loud(c.restore)
		c.restore = 0
	}
}

// detached counts a client out; the last one to leave makes the process
// quiet.
func (c *collector) detached() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.clients--
	c.quietLocked()
}

// quietIfIdle gives the garbage back and turns the collector off when no
// client is connected; after a start, say, which allocated.
func (c *collector) quietIfIdle() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.quietLocked()
}

func (c *collector) quietLocked() {
	if c.clients > 0 {
		return
	}
	if percent := quiet(); c.restore == 0 {
		c.restore = percent
	}
}
