package evaluate

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/polyvisor/polyvisor/internal/arch"
	"github.com/polyvisor/polyvisor/internal/evaluation/benchreport"
	"github.com/polyvisor/polyvisor/internal/evaluation/probe"
	"github.com/polyvisor/polyvisor/internal/template"
	"github.com/polyvisor/polyvisor/pkg/api"
)

// guestSpec is what a class's guests are made of: the busybox template of
// each kind, so that every class runs the same user space.
type guestSpec struct {
	class   string
	typ     string
	arch    arch.Arch
	verdict string // the host check's class
	memory  string // for the probe's guest: mem.copy needs room
}

func specOf(class string) guestSpec {
	switch class {
	case benchreport.VM:
		return guestSpec{class: class, typ: template.TypeVM, arch: arch.Host(), verdict: "qemu", memory: "512MiB"}
	case benchreport.Emulation:
		foreign, _ := arch.Parse("arm64")
		if arch.Host() == foreign {
			foreign, _ = arch.Parse("amd64")
		}
		return guestSpec{class: class, typ: template.TypeVM, arch: foreign, verdict: "qemu", memory: "512MiB"}
	}
	return guestSpec{class: class, typ: template.TypeContainer, arch: arch.Host(), verdict: "container", memory: "512MiB"}
}

// namePrefix starts the names of every guest bench makes.
const namePrefix = "pv-bench-"

// measureClass measures one class's lifecycle and density; the probe
// runs later, in the rounds, in the guest startProbeGuest launches.
func (r *runner) measureClass(ctx context.Context, class string, host benchreport.Host, check api.HostCheck) benchreport.Class {
	spec := specOf(class)
	c := benchreport.Class{Name: class, Label: class, Arch: spec.arch.QEMU}
	for _, v := range check.Classes {
		if v.Class == spec.verdict {
			c.Works, c.Reason = v.Works, v.Reason
		}
	}
	if spec.typ == template.TypeVM {
		c.Accel = host.Accel
		if class == benchreport.Emulation {
			c.Accel = "tcg"
			c.Label = fmt.Sprintf("emulation (%s on %s, TCG)", spec.arch.QEMU, host.Arch)
		} else {
			c.Label = fmt.Sprintf("vm (%s)", strings.ToUpper(host.Accel))
		}
	}
	if !c.Works {
		return c
	}
	if err := r.ensureTemplate(ctx, spec); err != nil {
		c.Works, c.Reason = false, err.Error()
		return c
	}
	r.opts.Progress(c.Label + ": lifecycle")
	c.Lifecycle = r.lifecycle(ctx, spec)
	r.opts.Progress(c.Label + ": density")
	c.Density = r.density(ctx, spec)
	return c
}

// ensureTemplate builds the class's busybox template when it is missing.
func (r *runner) ensureTemplate(ctx context.Context, spec guestSpec) error {
	key := template.Key("busybox", spec.typ, spec.arch.Debian)
	if _, err := r.opts.Client.Template(ctx, key); err == nil {
		return nil
	}
	r.opts.Progress("building template " + key)
	op, err := r.opts.Client.BuildTemplate(ctx, api.TemplateBuild{Source: "busybox", Type: spec.typ, Arch: spec.arch.Debian})
	if err != nil {
		return fmt.Errorf("build template %s: %w", key, err)
	}
	return r.opts.Client.Wait(ctx, op, nil)
}

// create makes (and with start, starts) a guest of the class. It gets
// every host CPU, as the native probe has them: a guest's default limit of
// one CPU would throttle it and be measured instead of the class.
func (r *runner) create(ctx context.Context, spec guestSpec, name, memory string, start bool) error {
	req := api.GuestCreate{
		Name: name, Template: "busybox", Type: spec.typ, Arch: spec.arch.Debian, Memory: memory,
		CPUs: runtime.NumCPU(), Networks: []string{"none"}, Start: start,
	}
	if spec.typ == template.TypeVM {
		req.Disk = vmDisk
	}
	op, err := r.opts.Client.CreateGuest(ctx, req)
	if err != nil {
		return err
	}
	return r.opts.Client.Wait(ctx, op, nil)
}

// vmDisk is the root disk of every VM bench makes, polyvisor's and the VM
// peers' alike: the busybox VM template's is too small for the probe's
// disk file at --size default (128 MiB) and thorough (512 MiB), and each
// guest grows its root file system into it at boot, which its boot time
// then holds the same way in every VM.
const (
	vmDisk      = "2GiB"
	vmDiskBytes = 2 << 30
)

// state changes a guest's state and waits.
func (r *runner) state(ctx context.Context, name, action string) error {
	op, err := r.opts.Client.ChangeState(ctx, name, api.StateChange{Action: action, Timeout: "20s"})
	if err != nil {
		return err
	}
	return r.opts.Client.Wait(ctx, op, nil)
}

// remove deletes a guest bench made, stopping it first; it runs even when
// ctx is cancelled, so nothing of bench stays behind.
func (r *runner) remove(ctx context.Context, name string) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	defer cancel()
	op, err := r.opts.Client.DeleteGuest(ctx, name, true)
	if err != nil {
		return err
	}
	return r.opts.Client.Wait(ctx, op, nil)
}

// lifecycle times provision (create), boot (start until ready: the
// container's init runs, the VM's agent answers), stop and delete.
func (r *runner) lifecycle(ctx context.Context, spec guestSpec) []benchreport.Figure {
	return timeLifecycle(r.scale.lifecycleRuns, func(i int) string {
		return fmt.Sprintf("%s%s-life-%d", namePrefix, spec.class, i)
	}, lifecycleSteps{
		create: func(name string) error { return r.create(ctx, spec, name, "", false) },
		start:  func(name string) error { return r.state(ctx, name, "start") },
		stop:   func(name string) error { return r.state(ctx, name, "stop") },
		delete: func(name string) error {
			op, err := r.opts.Client.DeleteGuest(ctx, name, false)
			if err == nil {
				err = r.opts.Client.Wait(ctx, op, nil)
			}
			return err
		},
		cleanup: func(name string) { r.remove(ctx, name) },
	})
}

// lifecycleSteps are the four timed steps of a guest's life, and the
// cleanup of a guest whose life a failed step cut short.
type lifecycleSteps struct {
	create, start, stop, delete func(name string) error
	cleanup                     func(name string)
}

// timeLifecycle times runs lives of a guest, each named by name(i): the
// lifecycle figures of a class or a peer. A failed step ends that life,
// cleaned up; its figure carries the error.
func timeLifecycle(runs int, name func(i int) string, s lifecycleSteps) []benchreport.Figure {
	steps := []string{benchreport.Provision, benchreport.Boot, benchreport.Stop, benchreport.Delete}
	actions := map[string]func(string) error{
		benchreport.Provision: s.create, benchreport.Boot: s.start, benchreport.Stop: s.stop, benchreport.Delete: s.delete,
	}
	times := map[string][]float64{}
	errs := map[string]string{}
	for i := range runs {
		n := name(i)
		for _, step := range steps {
			began := time.Now()
			if err := actions[step](n); err != nil {
				errs[step] = err.Error()
				s.cleanup(n)
				break
			}
			times[step] = append(times[step], ms(time.Since(began)))
		}
	}
	var figs []benchreport.Figure
	for _, step := range steps {
		f := figureOf(step, "ms", false, times[step])
		if len(times[step]) < runs {
			f.Error = errs[step]
			if f.Error == "" {
				f.Error = "not reached: an earlier step failed"
			}
		}
		if ci, ok := benchreport.MedianInterval(f.Runs); ok {
			f.CI = &ci
		}
		figs = append(figs, f)
	}
	return figs
}

// figureOf summarises runs; with none it is empty (the caller sets Error).
func figureOf(name, unit string, higherIsBetter bool, runs []float64) benchreport.Figure {
	f := benchreport.Figure{Name: name, Unit: unit, HigherIsBetter: higherIsBetter, Runs: runs}
	if len(runs) == 0 {
		return f
	}
	sorted := slices.Clone(runs)
	slices.Sort(sorted)
	f.Min, f.Max = sorted[0], sorted[len(sorted)-1]
	if n := len(sorted); n%2 == 1 {
		f.Median = sorted[n/2]
	} else {
		f.Median = (sorted[n/2-1] + sorted[n/2]) / 2
	}
	return f
}

// inGuestProbe is where the probe is copied inside a guest.
const inGuestProbe = "/var/tmp/polyvisor-probe"

// copyProbeCommand writes its stdin to inGuestProbe, executable.
var copyProbeCommand = []string{"sh", "-c", "mkdir -p /var/tmp && cat > " + inGuestProbe + " && chmod 755 " + inGuestProbe}

// probeArgs runs the probe once per round: one measured run of each
// workload, the rounds being the repetition.
func (r *runner) probeArgs(bin, dir string) []string {
	return []string{bin, "--size", r.opts.Size, "--runs", "1", "--dir", dir}
}

// startProbeGuest launches the guest of the class the rounds run the
// probe in, and copies the probe of the guest's arch in through exec's
// stdin.
func (r *runner) startProbeGuest(ctx context.Context, spec guestSpec) (name string, err error) {
	name = namePrefix + spec.class + "-probe"
	if err := r.create(ctx, spec, name, spec.memory, true); err != nil {
		r.remove(ctx, name)
		return "", fmt.Errorf("launch: %w", err)
	}
	defer func() {
		if err != nil {
			r.remove(ctx, name)
		}
	}()
	bin, err := os.Open(filepath.Join(r.opts.ProbeDir, ProbeName(spec.arch.GOARCH)))
	if err != nil {
		return "", err
	}
	defer bin.Close()
	var stderr bytes.Buffer
	code, err := r.opts.Client.Run(ctx, name, copyProbeCommand, bin, &stderr, &stderr)
	if err == nil && code != 0 {
		err = fmt.Errorf("exit code %d: %s", code, strings.TrimSpace(stderr.String()))
	}
	if err != nil {
		return "", fmt.Errorf("copy the probe in: %w", err)
	}
	return name, nil
}

// probeGuest runs the probe in a guest startProbeGuest launched.
func (r *runner) probeGuest(ctx context.Context, name string) (*probe.Output, error) {
	var stdout, stderr bytes.Buffer
	code, err := r.opts.Client.Run(ctx, name, r.probeArgs(inGuestProbe, "/var/tmp"), nil, &stdout, &stderr)
	if err == nil && code != 0 {
		err = fmt.Errorf("exit code %d: %s", code, lastLine(stderr.String()))
	}
	if err != nil {
		return nil, fmt.Errorf("run the probe: %w", err)
	}
	return parseProbe(stdout.Bytes())
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

// density launches idle guests of the class, up to the size's count or a
// memory budget (a quarter of what the host has available), and reports
// the host memory each takes: the proportional set size of the guests'
// processes and their monitors (a VM's own, or the one supervisor of all
// containers, counted once), over the guests: a busy host's other
// activity does not blur it the way it would the host's free memory.
func (r *runner) density(ctx context.Context, spec guestSpec) *benchreport.Density {
	count := r.scale.densityContainers
	if spec.typ == template.TypeVM {
		count = r.scale.densityVMs
	}
	d := &benchreport.Density{BudgetBytes: meminfo()["MemAvailable"] / 4}
	before := usedMemory()
	var names []string
	defer func() {
		for _, n := range names {
			r.remove(ctx, n)
		}
	}()
	for i := range count {
		if usedMemory()-before > d.BudgetBytes {
			break
		}
		name := fmt.Sprintf("%s%s-idle-%d", namePrefix, spec.class, i)
		if err := r.create(ctx, spec, name, "", true); err != nil {
			d.Error = err.Error()
			r.remove(ctx, name)
			break
		}
		names = append(names, name)
	}
	// Let the guests settle into idleness before measuring.
	select {
	case <-time.After(2 * time.Second):
	case <-ctx.Done():
	}
	d.Guests = len(names)
	if d.Guests == 0 {
		if d.Error == "" {
			d.Error = "no guest fit in the memory budget"
		}
		return d
	}
	monitors, others, err := r.guestTrees(ctx, names)
	if err != nil {
		d.Error = err.Error()
		return d
	}
	pss, err := treePSS(monitors, others)
	if err != nil {
		d.Error = fmt.Sprintf("measure the guests' memory: %v", err)
		return d
	}
	d.PerGuestBytes = pss / int64(d.Guests)
	return d
}

// guestTrees are the roots of the named guests' process trees, their
// monitors, each once, and the processes of the daemon's other guests,
// whose trees are left out: the supervisor that runs the named containers
// runs every other container of the daemon too.
func (r *runner) guestTrees(ctx context.Context, names []string) (monitors, others []int, err error) {
	guests, err := r.opts.Client.Guests(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("list the guests: %w", err)
	}
	found := 0
	for _, g := range guests {
		switch {
		case !slices.Contains(names, g.Name):
			if g.PID > 0 {
				others = append(others, g.PID)
			}
		case g.State != api.StateRunning || g.MonitorPID == 0:
			return nil, nil, fmt.Errorf("guest %s is %s with monitor pid %d", g.Name, g.State, g.MonitorPID)
		default:
			found++
			monitors = append(monitors, g.MonitorPID)
		}
	}
	if found != len(names) {
		return nil, nil, fmt.Errorf("the daemon lists %d of the %d guests launched for density", found, len(names))
	}
	slices.Sort(monitors)
	return slices.Compact(monitors), others, nil
}
