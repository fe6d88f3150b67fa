package evaluate

import (
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
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
	class     string
	typ       string // the guest type
	engine    string // the driver among those of typ; "" for its default
	isolation string // a container's: "" or chroot
	// template is the busybox template's name, tmplType its type (a uml
	// guest boots a container template's tree) and firmware how its disk
	// boots.
	template, tmplType, firmware string
	arch                         arch.Arch
	verdict                      string // the host check's class
	memory                       string // for the probe's guest: mem.copy needs room
	// slow marks a class whose guests take minutes to boot (Bochs): its
	// lifecycle is timed once and its density is not measured.
	slow bool
	// cpus, when set, replaces the host's CPU count: Bochs emulates every
	// CPU in one host thread, so more CPUs only slow its guest down.
	cpus int
}

// specOf is the guest spec of a class bench knows (see Classes).
func specOf(class string) guestSpec {
	spec := guestSpec{class: class, typ: template.TypeContainer, template: "busybox", arch: arch.Host(), verdict: "container", memory: "512MiB"}
	switch {
	case class == benchreport.VM:
		spec.typ, spec.verdict = template.TypeVM, "qemu"
	case class == benchreport.Emulation:
		foreign, _ := arch.Parse("arm64")
		if arch.Host() == foreign {
			foreign, _ = arch.Parse("amd64")
		}
		spec.typ, spec.verdict, spec.arch = template.TypeVM, "qemu", foreign
	case benchreport.IsEmulation(class):
		a, _ := arch.Parse(strings.TrimPrefix(class, benchreport.Emulation+"-"))
		spec.typ, spec.verdict, spec.arch = template.TypeVM, "qemu", a
	case class == benchreport.Chroot:
		spec.isolation = benchreport.Chroot
	case class == benchreport.UML:
		spec.typ, spec.verdict = benchreport.UML, benchreport.UML
	case class == benchreport.Bochs:
		spec.typ, spec.engine, spec.verdict, spec.slow, spec.cpus = template.TypeVM, benchreport.Bochs, benchreport.Bochs, true, 1
		spec.template, spec.firmware = "busybox-bios", "bios"
	}
	spec.tmplType = spec.typ
	if spec.typ == benchreport.UML {
		spec.tmplType = template.TypeContainer
	}
	return spec
}

// vmLike says whether the class's guests boot a kernel of their own on a
// disk of their own (a VM's, or User-Mode Linux's).
func (s guestSpec) vmLike() bool { return s.typ != template.TypeContainer }

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
	switch {
	case spec.engine == benchreport.Bochs:
		c.Label = "bochs (x86_64, interpreted)"
	case benchreport.IsEmulation(class):
		c.Accel = "tcg"
		c.Label = fmt.Sprintf("%s (%s on %s, TCG)", class, spec.arch.QEMU, host.Arch)
	case spec.typ == template.TypeVM:
		c.Accel = host.Accel
		c.Label = fmt.Sprintf("vm (%s)", strings.ToUpper(host.Accel))
	case spec.typ == benchreport.UML:
		c.Label = "uml (User-Mode Linux)"
	case spec.isolation != "":
		c.Label = "chroot (jail, no namespaces)"
	}
	if !c.Works {
		return c
	}
	if err := r.ensureTemplate(ctx, spec); err != nil {
		c.Works, c.Reason = false, err.Error()
		return c
	}
	if spec.slow {
		// Its one life is its probe guest's (see slowLife).
		c.Density = &benchreport.Density{Error: "not measured: each guest of this class takes minutes to boot"}
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
	key := template.Key(spec.template, spec.tmplType, spec.arch.Debian)
	if _, err := r.opts.Client.Template(ctx, key); err == nil {
		return nil
	}
	r.opts.Progress("building template " + key)
	op, err := r.opts.Client.BuildTemplate(ctx, api.TemplateBuild{Source: "busybox", Name: spec.template, Type: spec.tmplType, Arch: spec.arch.Debian, Firmware: spec.firmware})
	if err != nil {
		return fmt.Errorf("build template %s: %w", key, err)
	}
	return r.opts.Client.Wait(ctx, op, nil)
}

// create makes (and with start, starts) a guest of the class. It gets
// every host CPU, as the native probe has them: a guest's default limit of
// one CPU would throttle it and be measured instead of the class (Bochs
// aside: see guestSpec.cpus).
func (r *runner) create(ctx context.Context, spec guestSpec, name, memory string, start bool) error {
	req := api.GuestCreate{
		Name: name, Template: spec.template, Type: spec.typ, Engine: spec.engine, Isolation: spec.isolation,
		Arch: spec.arch.Debian, Memory: memory, CPUs: cmp.Or(spec.cpus, runtime.NumCPU()), Networks: []string{"none"}, Start: start,
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
// stdin, unless its template carries this very probe. It returns the
// guest's name and where the probe is in it.
func (r *runner) startProbeGuest(ctx context.Context, spec guestSpec, life *slowLife) (name, probePath string, err error) {
	name = namePrefix + spec.class + "-probe"
	if life != nil {
		err = life.begin(func() error { return r.create(ctx, spec, name, spec.memory, false) },
			func() error { return r.state(ctx, name, "start") })
	} else {
		err = r.create(ctx, spec, name, spec.memory, true)
	}
	if err != nil {
		r.remove(ctx, name)
		return "", "", fmt.Errorf("launch: %w", err)
	}
	defer func() {
		if err != nil {
			r.remove(ctx, name)
		}
	}()
	bin, err := os.Open(filepath.Join(r.opts.ProbeDir, ProbeName(spec.arch.GOARCH)))
	if err != nil {
		return "", "", err
	}
	defer bin.Close()
	if r.carriesProbe(ctx, name, bin) {
		return name, template.GuestProbe, nil
	}
	if _, err := bin.Seek(0, io.SeekStart); err != nil {
		return "", "", err
	}
	var stderr bytes.Buffer
	code, err := r.opts.Client.Run(ctx, name, copyProbeCommand, bin, &stderr, &stderr)
	if err == nil && code != 0 {
		err = fmt.Errorf("exit code %d: %s", code, strings.TrimSpace(stderr.String()))
	}
	if err != nil {
		return "", "", fmt.Errorf("copy the probe in: %w", err)
	}
	return name, inGuestProbe, nil
}

// carriesProbe says whether the guest's template carries the very probe
// bin is (same SHA-256), so that it need not be copied in.
func (r *runner) carriesProbe(ctx context.Context, name string, bin io.Reader) bool {
	h := sha256.New()
	if _, err := io.Copy(h, bin); err != nil {
		return false
	}
	var stdout bytes.Buffer
	code, err := r.opts.Client.Run(ctx, name, []string{"sha256sum", template.GuestProbe}, nil, &stdout, io.Discard)
	if err != nil || code != 0 {
		return false
	}
	sum, _, _ := strings.Cut(stdout.String(), " ")
	return sum == hex.EncodeToString(h.Sum(nil))
}

// probeGuest runs the probe at probePath in a guest startProbeGuest
// launched.
func (r *runner) probeGuest(ctx context.Context, name, probePath string) (*probe.Output, error) {
	var stdout, stderr bytes.Buffer
	code, err := r.opts.Client.Run(ctx, name, r.probeArgs(probePath, "/var/tmp"), nil, &stdout, &stderr)
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
	if spec.vmLike() {
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

// slowLife is the one lifecycle of a slow class (spec.slow), timed on its
// probe guest instead of a guest of its own: provision and boot before the
// rounds, stop and delete after them. A Bochs guest's boot takes minutes,
// and a second one would only repeat it.
type slowLife struct {
	times map[string][]float64
	errs  map[string]string
}

func newSlowLife() *slowLife {
	return &slowLife{times: map[string][]float64{}, errs: map[string]string{}}
}

// step times one step, unless an earlier one failed.
func (l *slowLife) step(name string, do func() error) error {
	if len(l.errs) > 0 {
		return nil
	}
	began := time.Now()
	if err := do(); err != nil {
		l.errs[name] = err.Error()
		return err
	}
	l.times[name] = append(l.times[name], ms(time.Since(began)))
	return nil
}

// begin times the guest's provision and boot.
func (l *slowLife) begin(create, start func() error) error {
	if err := l.step(benchreport.Provision, create); err != nil {
		return err
	}
	return l.step(benchreport.Boot, start)
}

// end times the guest's stop and delete, and returns the four figures.
func (l *slowLife) end(stop, del func() error) []benchreport.Figure {
	if l.step(benchreport.Stop, stop) == nil {
		l.step(benchreport.Delete, del)
	}
	var figs []benchreport.Figure
	for _, step := range []string{benchreport.Provision, benchreport.Boot, benchreport.Stop, benchreport.Delete} {
		f := figureOf(step, "ms", false, l.times[step])
		if len(l.times[step]) == 0 {
			f.Error = l.errs[step]
			if f.Error == "" {
				f.Error = "not reached: an earlier step failed"
			}
		}
		figs = append(figs, f)
	}
	return figs
}
