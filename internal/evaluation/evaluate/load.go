package evaluate

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/polyvisor/polyvisor/internal/evaluation/benchreport"
)

// Thresholds of a quiet host, for one sample taken while bench itself is
// idle: a busy host moves native's figures and a guest's differently
// between two rounds, which no interval can tell from the class's cost.
const (
	// quietBusy is the share of all CPUs other work may take.
	quietBusy = 0.10
	// quietSteal is the share the hypervisor under this host may take.
	quietSteal = 0.05
	// busyProcess is the share of one CPU that names a process among the
	// busiest.
	busyProcess = 0.05
	// loadWindow is how long a sample watches.
	loadWindow = time.Second
)

// cpuTimes is a snapshot of the host's CPU time and of each process's.
type cpuTimes struct {
	at          time.Time
	total       uint64 // all jiffies of all CPUs
	idle, steal uint64
	procs       map[int]procTime
}

type procTime struct {
	ppid  int
	comm  string
	ticks uint64 // utime+stime
}

// clockTicks is USER_HZ: /proc's unit of CPU time, 100 on every Linux
// arch in use.
const clockTicks = 100

func readCPUTimes() (cpuTimes, error) {
	t := cpuTimes{at: time.Now(), procs: map[int]procTime{}}
	data, err := os.ReadFile("/proc/stat")
	if err != nil {
		return t, err
	}
	line, _, _ := strings.Cut(string(data), "\n")
	fields := strings.Fields(line) // cpu user nice system idle iowait irq softirq steal guest guest_nice
	if len(fields) < 9 || fields[0] != "cpu" {
		return t, fmt.Errorf("/proc/stat: unexpected first line %q", line)
	}
	for i, f := range fields[1:9] {
		v, _ := strconv.ParseUint(f, 10, 64)
		t.total += v
		switch i {
		case 3, 4: // idle, iowait
			t.idle += v
		case 7:
			t.steal = v
		}
	}
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	for _, p := range stats {
		data, err := os.ReadFile(p)
		if err != nil {
			continue // it ended meanwhile
		}
		s := string(data)
		open, closing := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
		if open < 0 || closing < open {
			continue
		}
		rest := strings.Fields(s[closing+1:]) // state ppid ... utime(12) stime(13)
		if len(rest) < 13 {
			continue
		}
		pid, _ := strconv.Atoi(strings.TrimSpace(s[:open]))
		ppid, _ := strconv.Atoi(rest[1])
		utime, _ := strconv.ParseUint(rest[11], 10, 64)
		stime, _ := strconv.ParseUint(rest[12], 10, 64)
		t.procs[pid] = procTime{ppid: ppid, comm: s[open+1 : closing], ticks: utime + stime}
	}
	return t, nil
}

// sampleLoad watches the host for loadWindow while bench is idle and
// returns how busy other work kept it. ours are the roots of bench's own
// process trees (bench, the daemon, guests' monitors, peers' daemons and
// guests): their CPU time is not other work.
func sampleLoad(ctx context.Context, phase string, ours []int) (benchreport.LoadSample, error) {
	s := benchreport.LoadSample{Phase: phase}
	before, err := readCPUTimes()
	if err != nil {
		return s, err
	}
	select {
	case <-time.After(loadWindow):
	case <-ctx.Done():
		return s, ctx.Err()
	}
	after, err := readCPUTimes()
	if err != nil {
		return s, err
	}
	s.At = after.at.UTC()
	if data, err := os.ReadFile("/proc/loadavg"); err == nil {
		s.Load1, _ = strconv.ParseFloat(strings.Fields(string(data))[0], 64)
	}
	total := float64(after.total - before.total)
	if total <= 0 {
		return s, nil
	}
	s.Steal = float64(after.steal-before.steal) / total
	mine := descendants(after.procs, append([]int{os.Getpid()}, ours...))
	wall := after.at.Sub(before.at).Seconds() * clockTicks // ticks one CPU has in the window
	type busy struct {
		name  string
		share float64
	}
	var others []busy
	var otherTicks float64
	for pid, p := range after.procs {
		if mine[pid] {
			continue
		}
		prev, ok := before.procs[pid]
		if !ok || p.ticks < prev.ticks {
			prev = procTime{} // started within the window
		}
		d := float64(p.ticks - prev.ticks)
		otherTicks += d
		if share := d / wall; share >= busyProcess {
			others = append(others, busy{fmt.Sprintf("%s (%d)", p.comm, pid), share})
		}
	}
	s.Busy = min(otherTicks/(wall*float64(runtime.NumCPU())), 1)
	slices.SortFunc(others, func(a, b busy) int { return int((b.share - a.share) * 1000) })
	for _, o := range others[:min(len(others), 5)] {
		s.Top = append(s.Top, fmt.Sprintf("%s %.0f%%", o.name, o.share*100))
	}
	return s, nil
}

// descendants marks roots and every process descended from them.
func descendants(procs map[int]procTime, roots []int) map[int]bool {
	children := map[int][]int{}
	for pid, p := range procs {
		children[p.ppid] = append(children[p.ppid], pid)
	}
	marked := map[int]bool{}
	queue := slices.Clone(roots)
	for len(queue) > 0 {
		pid := queue[0]
		queue = queue[1:]
		if pid <= 0 || marked[pid] {
			continue
		}
		marked[pid] = true
		queue = append(queue, children[pid]...)
	}
	return marked
}

// judgeLoad sets Quiet and Warnings from the samples.
func judgeLoad(l *benchreport.HostLoad) {
	l.Quiet, l.Warnings = true, nil
	for _, s := range l.Samples {
		if s.Busy > quietBusy {
			l.Quiet = false
			w := fmt.Sprintf("%s, other work kept %.0f%% of the CPUs busy", s.Phase, s.Busy*100)
			if len(s.Top) > 0 {
				w += " (" + strings.Join(s.Top, ", ") + ")"
			}
			l.Warnings = append(l.Warnings, w)
		}
		if s.Steal > quietSteal {
			l.Quiet = false
			l.Warnings = append(l.Warnings, fmt.Sprintf("%s, the hypervisor under this host took %.0f%% of the CPUs (steal)", s.Phase, s.Steal*100))
		}
	}
}
