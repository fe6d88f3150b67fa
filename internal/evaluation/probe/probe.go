package probe

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"runtime"
	"slices"
	"time"

	"golang.org/x/sys/unix"
)

// ExitArg is the one argument with which polyvisor-probe exits at once
// with status 0: proc.spawn runs the probe itself with it.
const ExitArg = "--exit"

// Options say what Run measures, and how much.
type Options struct {
	// Size is SizeQuick, SizeDefault or SizeThorough; empty means
	// SizeDefault.
	Size string
	// Dir is where the disk workloads write their file; empty means
	// /var/tmp, or the working directory where there is no /var/tmp.
	Dir string
	// Only names the workloads to run; empty means all of them, net.tcp
	// only when Peer is set. They run in the order of Names.
	Only []string
	// Peer is the HOST:PORT of a Serve sink, for net.tcp.
	Peer string
	// Runs is how many measured runs each workload makes; 0 means the
	// size's. Bench asks for one per round: its repetition is the rounds,
	// interleaved with native's.
	Runs int
	// Log gets a line per workload; nil discards them.
	Log *slog.Logger
}

// size is how much work a Size stands for.
type size struct {
	runs     int           // measured runs after the warm-up
	run      time.Duration // how long a timed run lasts
	fileSize int64         // the disk workloads' file
	copySize int           // each of mem.copy's two buffers
}

// sizes scale every workload. Timed workloads last the same wall time
// wherever they run (native or emulated 50 times slower); only the disk
// file's passes and mem.copy's buffers are fixed in bytes.
var sizes = map[string]size{
	SizeQuick:    {runs: 3, run: 200 * time.Millisecond, fileSize: 32 << 20, copySize: 64 << 20},
	SizeDefault:  {runs: 5, run: 500 * time.Millisecond, fileSize: 128 << 20, copySize: 64 << 20},
	SizeThorough: {runs: 9, run: time.Second, fileSize: 512 << 20, copySize: 128 << 20},
}

// workload is one measurement: run returns the figure of every measured
// run, in unit, and a note on how it was measured where that matters.
type workload struct {
	name   string
	unit   string
	higher bool
	run    func(ctx context.Context, r *runner) (runs []float64, note string, err error)
}

// workloads are all there are, in the order they run: the disk ones read
// the file disk.seq_write wrote.
var workloads = []workload{
	{CPUInt, "Mops/s", true, cpuInt},
	{CPUFloat, "Mflops/s", true, cpuFloat},
	{CPUHash, "MiB/s", true, cpuSHA256},
	{MemCopy, "MiB/s", true, memCopy},
	{Syscall, "ns", false, getppid},
	{ProcSpawn, "µs", false, procSpawn},
	{DiskSeqWrite, "MiB/s", true, diskSeqWrite},
	{DiskSeqRead, "MiB/s", true, diskSeqRead},
	{DiskRandRead, "IOPS", true, diskRandRead},
	{DiskFsync, "µs", false, diskFsync},
	{NetTCP, "MiB/s", true, netTCP},
}

// Names returns the name of every workload, in the order they run.
func Names() []string {
	names := make([]string, len(workloads))
	for i, w := range workloads {
		names[i] = w.name
	}
	return names
}

// Check reports what in o Run cannot follow: an unknown size or workload.
func (o Options) Check() error {
	if _, ok := sizes[o.Size]; !ok && o.Size != "" {
		return fmt.Errorf("unknown size %q: want %s, %s or %s", o.Size, SizeQuick, SizeDefault, SizeThorough)
	}
	if o.Runs < 0 || o.Runs > 1000 {
		return fmt.Errorf("runs %d: want 1 to 1000, or 0 for the size's", o.Runs)
	}
	for _, name := range o.Only {
		if !slices.Contains(Names(), name) {
			return fmt.Errorf("unknown workload %q", name)
		}
	}
	return nil
}

// Run measures the workloads opts asks for and returns their results.
// A workload that fails has its Error set and the others still run; the
// disk workloads' file is removed before Run returns.
func Run(ctx context.Context, opts Options) Output {
	out := Output{
		Probe:   "polyvisor-probe",
		Version: 1,
		Size:    opts.Size,
		GOARCH:  runtime.GOARCH,
		CPUs:    runtime.NumCPU(),
	}
	if out.Size == "" {
		out.Size = SizeDefault
	}
	var u unix.Utsname
	if unix.Uname(&u) == nil {
		out.Arch = unix.ByteSliceToString(u.Machine[:])
		out.Kernel = unix.ByteSliceToString(u.Release[:])
	}
	log := opts.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	sz, sizeKnown := sizes[out.Size]
	if opts.Runs > 0 {
		sz.runs = opts.Runs
	}
	r := &runner{size: sz, dir: opts.Dir, peer: opts.Peer, tryDirect: true}
	defer r.close()

	for _, w := range selected(opts) {
		res := Result{Name: w.name, Unit: w.unit, HigherIsBetter: w.higher}
		var err error
		switch {
		case w.run == nil:
			err = errors.New("unknown workload")
		case !sizeKnown:
			err = fmt.Errorf("unknown size %q", out.Size)
		default:
			err = ctx.Err()
		}
		if err == nil {
			if isDisk(w.name) {
				out.DiskDir, out.DiskFS = r.diskDir()
			}
			log.Info("measuring", "workload", w.name)
			var runs []float64
			runs, res.Note, err = w.run(ctx, r)
			if err == nil {
				err = summarize(&res, runs)
			}
		}
		if err != nil {
			res.Error = err.Error()
			log.Warn("workload failed", "workload", w.name, "err", err)
		} else {
			log.Info("measured", "workload", w.name, "median", fmt.Sprintf("%.4g", res.Median), "unit", res.Unit)
		}
		out.Results = append(out.Results, res)
	}
	return out
}

// selected returns the workloads opts asks for, in the order of Names,
// then a workload without run for each unknown name.
func selected(opts Options) []workload {
	var ws []workload
	for _, w := range workloads {
		all := len(opts.Only) == 0 && (w.name != NetTCP || opts.Peer != "")
		if all || slices.Contains(opts.Only, w.name) {
			ws = append(ws, w)
		}
	}
	for _, name := range opts.Only {
		if !slices.Contains(Names(), name) && !slices.ContainsFunc(ws, func(w workload) bool { return w.name == name }) {
			ws = append(ws, workload{name: name})
		}
	}
	return ws
}

// summarize puts runs and their median, minimum and maximum into res. A
// figure that is not a positive number (a clock too coarse for the run)
// is an error, not a result.
func summarize(res *Result, runs []float64) error {
	if len(runs) == 0 {
		return errors.New("no runs measured")
	}
	for _, f := range runs {
		if f <= 0 || math.IsInf(f, 0) || math.IsNaN(f) {
			return fmt.Errorf("measured %v %s: the clock is too coarse for this size", f, res.Unit)
		}
	}
	sorted := slices.Sorted(slices.Values(runs))
	mid := len(sorted) / 2
	res.Median = sorted[mid]
	if len(sorted)%2 == 0 {
		res.Median = (sorted[mid-1] + sorted[mid]) / 2
	}
	res.Min, res.Max = sorted[0], sorted[len(sorted)-1]
	res.Runs = runs
	return nil
}

// runner is what the workloads of one Run share.
type runner struct {
	size      size
	dir       string // as given; diskDir resolves the default
	peer      string
	tryDirect bool      // false in tests of the buffered fallback
	disk      *diskFile // created by the first disk workload
	diskErr   error     // why it could not be
}

// close removes what the workloads left.
func (r *runner) close() {
	if r.disk != nil {
		r.disk.close()
	}
}

// diskDir returns the directory the disk workloads use and the type of
// its file system ("" where statfs fails).
func (r *runner) diskDir() (dir, fsType string) {
	if r.dir == "" {
		r.dir = "/var/tmp"
		if fi, err := os.Stat(r.dir); err != nil || !fi.IsDir() {
			r.dir = "."
			if wd, err := os.Getwd(); err == nil {
				r.dir = wd
			}
		}
	}
	return r.dir, fsName(r.dir)
}

// measure calls once for a warm-up, then runs times, each call giving
// the figure of one run.
func measure(ctx context.Context, runs int, once func() (float64, error)) ([]float64, error) {
	if _, err := once(); err != nil {
		return nil, err
	}
	figures := make([]float64, 0, runs)
	for range runs {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		f, err := once()
		if err != nil {
			return nil, err
		}
		figures = append(figures, f)
	}
	return figures, nil
}

// timed measures a kernel that does n units of work per call. It first
// finds the n that makes a call last one run of the size (which warms the
// kernel up), then times the runs; figure turns n and a run's duration
// into the result's unit.
func (r *runner) timed(ctx context.Context, kernel func(n int) error, figure func(n int, d time.Duration) float64) ([]float64, error) {
	n, err := calibrate(ctx, r.size.run, kernel)
	if err != nil {
		return nil, err
	}
	figures := make([]float64, 0, r.size.runs)
	for range r.size.runs {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		start := time.Now()
		if err := kernel(n); err != nil {
			return nil, err
		}
		figures = append(figures, figure(n, time.Since(start)))
	}
	return figures, nil
}

// calibrate returns how many units of kernel last about target, calling
// it with growing n until a call lasts a quarter of that.
func calibrate(ctx context.Context, target time.Duration, kernel func(n int) error) (int, error) {
	n := 1
	for {
		if err := ctx.Err(); err != nil {
			return 0, err
		}
		start := time.Now()
		if err := kernel(n); err != nil {
			return 0, err
		}
		d := time.Since(start)
		if d >= target/4 {
			return max(1, int(float64(n)*float64(target)/float64(d))), nil
		}
		// Aim the next call at a third of target, growing 2 to 100 times.
		next := float64(n) * float64(target/3) / float64(max(d, time.Microsecond))
		n = int(min(max(next, float64(2*n)), float64(100*n)))
	}
}

// perSecond returns a figure of units per second, scaled by unit (1e-6
// for millions).
func perSecond(unit float64) func(n int, d time.Duration) float64 {
	return func(n int, d time.Duration) float64 { return float64(n) * unit / d.Seconds() }
}

// each returns a figure of time per unit, in unit (time.Microsecond for
// µs).
func each(unit time.Duration) func(n int, d time.Duration) float64 {
	return func(n int, d time.Duration) float64 { return float64(d) / float64(unit) / float64(n) }
}
