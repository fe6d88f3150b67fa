// Package evaluate runs `polyvisor bench`: the probe natively on the host,
// then inside a fresh guest of each class through the daemon's API, with
// the lifecycle and density of each class, into a benchreport.Report.
// A class or workload that fails is recorded with its error; the run goes
// on.
package evaluate

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/polyvisor/polyvisor/internal/arch"
	"github.com/polyvisor/polyvisor/internal/evaluation/benchreport"
	"github.com/polyvisor/polyvisor/internal/evaluation/peer"
	"github.com/polyvisor/polyvisor/internal/evaluation/probe"
	"github.com/polyvisor/polyvisor/internal/template"
	"github.com/polyvisor/polyvisor/pkg/api"
	"github.com/polyvisor/polyvisor/pkg/client"
)

// Classes are the guest classes bench knows, in report order: the
// shared-kernel ones, the own-kernel ones, then the emulators.
var Classes = []string{
	benchreport.Container, benchreport.Chroot, benchreport.VM, benchreport.UML, benchreport.Emulation, benchreport.Bochs,
	benchreport.EmulationOf("riscv64"), benchreport.EmulationOf("ppc64el"), benchreport.EmulationOf("s390x"), benchreport.EmulationOf("armhf"),
}

// DefaultClasses are those bench measures unless told: one of each kind
// the chapter compares, each booting within seconds. The others are
// asked for by name (--classes), Bochs's minutes-long boots above all.
var DefaultClasses = []string{benchreport.Container, benchreport.Chroot, benchreport.VM, benchreport.UML, benchreport.Emulation}

// Options say what to measure.
type Options struct {
	Client *client.Client
	// ProbeDir holds polyvisor-probe-GOARCH for each arch.
	ProbeDir string
	Size     string   // probe.SizeQuick, SizeDefault, SizeThorough
	Classes  []string // a subset of Classes
	Command  string   // the command line, for the report
	// Peers are the peers (peer.Names) measured after the classes, as
	// classes named benchreport.PeerPrefix+name; see DefaultPeers.
	Peers []string
	// Network adds the network phase: TCP throughput over a bare veth
	// pair, between two guests of each class and from the host to one.
	Network bool
	// Progress receives each phase as it starts.
	Progress func(phase string)
}

// ProbeName is the file name of the probe built for goarch.
func ProbeName(goarch string) string { return template.ProbeName(goarch) }

// scale is how much of each thing a size does.
type scale struct {
	lifecycleRuns     int
	densityContainers int
	densityVMs        int
}

var scales = map[string]scale{
	probe.SizeQuick:    {lifecycleRuns: 3, densityContainers: 16, densityVMs: 2},
	probe.SizeDefault:  {lifecycleRuns: 5, densityContainers: 50, densityVMs: 4},
	probe.SizeThorough: {lifecycleRuns: 9, densityContainers: 100, densityVMs: 8},
}

// Run measures and returns the report. When what a peer made could not
// all be removed, it returns the report with that error.
func Run(ctx context.Context, opts Options) (_ *benchreport.Report, err error) {
	r, err := newRunner(opts)
	if err != nil {
		return nil, err
	}
	opts = r.opts
	opts.Progress("host facts and host check")
	report := &benchreport.Report{
		Version: benchreport.Version, CreatedAt: time.Now().UTC(), Command: opts.Command, Size: opts.Size,
		Load: &benchreport.HostLoad{},
	}
	check, err := opts.Client.HostCheck(ctx)
	if err != nil {
		return nil, err
	}
	report.Host = hostFacts(ctx, opts.Client, check)
	server, err := opts.Client.Server(ctx)
	if err != nil {
		return nil, err
	}
	if s, err := sampleLoad(ctx, "before the run", []int{server.PID}); err == nil {
		report.Load.Samples = append(report.Load.Samples, s)
	}
	nativeDir, err := os.MkdirTemp("/var/tmp", "polyvisor-bench-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(nativeDir)
	report.Classes = append(report.Classes, benchreport.Class{Name: benchreport.Native, Label: "native (" + report.Host.Arch + ")", Arch: report.Host.Arch, Works: true})
	members := []member{{class: 0, probe: func(ctx context.Context) (*probe.Output, error) { return r.runNative(ctx, nativeDir) }}}

	for _, name := range opts.Classes {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		report.Classes = append(report.Classes, r.measureClass(ctx, name, report.Host, check))
	}
	// The guests the rounds probe: one per class, launched once, kept
	// running through every round.
	guests := probeGuests{}
	defer func() {
		for _, name := range guests {
			r.remove(ctx, name)
		}
	}()
	slow := map[int]*slowLife{}
	for i := range report.Classes {
		c := &report.Classes[i]
		if c.Name == benchreport.Native || !c.Works {
			continue
		}
		r.opts.Progress(c.Label + ": the probe's guest")
		spec := specOf(c.Name)
		if spec.slow {
			slow[i] = newSlowLife()
		}
		name, probePath, err := r.startProbeGuest(ctx, spec, slow[i])
		if spec.slow {
			defer func() {
				if c.Lifecycle == nil { // rounds cut short: what was timed
					c.Lifecycle = slow[i].end(func() error { return fmt.Errorf("bench ended early") }, nil)
				}
			}()
		}
		if err != nil {
			c.ProbeError = err.Error()
			continue
		}
		guests[c.Name] = name
		members = append(members, member{class: i, probe: func(ctx context.Context) (*probe.Output, error) { return r.probeGuest(ctx, name, probePath) }})
	}
	peers := r.setupPeers(ctx, report, guests)
	defer func() {
		if cerr := closePeers(ctx, peers); cerr != nil && err == nil {
			err = fmt.Errorf("bench measured, but could not remove all its peers made: %w", cerr)
		}
	}()
	for _, p := range peers {
		if p.guest != "" {
			members = append(members, member{class: p.class, probe: func(ctx context.Context) (*probe.Output, error) { return r.probePeer(ctx, p) }})
		}
	}
	// ours are the roots of bench's processes, for the load samples: the
	// probe containers' monitor is the daemon's one supervisor, listed
	// once per container, and descendants marks each process once.
	ours := func() []int {
		pids := []int{server.PID}
		for _, name := range guests {
			if g, err := opts.Client.Guest(ctx, name); err == nil {
				pids = append(pids, g.MonitorPID, g.PID)
			}
		}
		return append(pids, peerPIDs(ctx, peers)...)
	}
	if err := r.runRounds(ctx, report, members, ours); err != nil {
		return nil, err
	}
	for i, life := range slow {
		c := &report.Classes[i]
		name, ok := guests[c.Name]
		if !ok {
			continue
		}
		r.opts.Progress(c.Label + ": stop and delete")
		c.Lifecycle = life.end(func() error { return r.state(ctx, name, "stop") }, func() error {
			op, err := opts.Client.DeleteGuest(ctx, name, false)
			if err == nil {
				err = opts.Client.Wait(ctx, op, nil)
			}
			if err == nil {
				delete(guests, c.Name)
			}
			return err
		})
	}
	judgeLoad(report.Load)
	if opts.Network {
		report.Network = r.measureNetwork(ctx, opts.Classes)
		if err := ctx.Err(); err != nil {
			return nil, err
		}
	}
	return report, nil
}

type runner struct {
	opts  Options
	scale scale
}

// newRunner checks opts before anything is touched: the size, classes
// and peers must be known and the probe built beside polyvisor.
func newRunner(opts Options) (*runner, error) {
	sc, ok := scales[opts.Size]
	if !ok {
		return nil, fmt.Errorf("%w: size %q: use quick, default or thorough", api.ErrInvalid, opts.Size)
	}
	for _, c := range opts.Classes {
		if !slices.Contains(Classes, c) {
			return nil, fmt.Errorf("%w: class %q: use %s", api.ErrInvalid, c, strings.Join(Classes, ", "))
		}
	}
	for _, p := range opts.Peers {
		if !slices.Contains(peer.Names, p) {
			return nil, fmt.Errorf("%w: peer %q: use %s, all or none", api.ErrInvalid, p, strings.Join(peer.Names, ", "))
		}
	}
	if opts.Progress == nil {
		opts.Progress = func(string) {}
	}
	if _, err := os.Stat(filepath.Join(opts.ProbeDir, ProbeName(arch.Host().GOARCH))); err != nil {
		return nil, fmt.Errorf("%w: %s is not beside polyvisor in %s: run make build", api.ErrNotAvailable, ProbeName(arch.Host().GOARCH), opts.ProbeDir)
	}
	return &runner{opts: opts, scale: sc}, nil
}

// runNative runs the probe on the host, for a round.
func (r *runner) runNative(ctx context.Context, dir string) (*probe.Output, error) {
	bin := filepath.Join(r.opts.ProbeDir, ProbeName(arch.Host().GOARCH))
	args := r.probeArgs(bin, dir)
	out, err := exec.CommandContext(ctx, args[0], args[1:]...).Output()
	if err != nil {
		return nil, fmt.Errorf("run %s: %w", bin, exitDetail(err))
	}
	return parseProbe(out)
}

// ms is a duration in milliseconds.
func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// parseProbe reads the probe's JSON.
func parseProbe(out []byte) (*probe.Output, error) {
	var o probe.Output
	if err := json.Unmarshal(out, &o); err != nil {
		return nil, fmt.Errorf("the probe's output is not its JSON: %w", err)
	}
	if o.Probe != "polyvisor-probe" || o.Version != 1 {
		return nil, fmt.Errorf("the probe's output is %q version %d, want polyvisor-probe version 1", o.Probe, o.Version)
	}
	return &o, nil
}

// exitDetail adds a failed command's stderr to its error.
func exitDetail(err error) error {
	if ee := (*exec.ExitError)(nil); errors.As(err, &ee) && len(ee.Stderr) > 0 {
		lines := strings.Split(strings.TrimSpace(string(ee.Stderr)), "\n")
		return fmt.Errorf("%w: %s", err, lines[len(lines)-1])
	}
	return err
}
