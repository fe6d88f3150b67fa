package e2e

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/polyvisor/polyvisor/internal/template"
	"github.com/polyvisor/polyvisor/internal/testenv"
	"github.com/polyvisor/polyvisor/pkg/api"
)

// The crash-injection suite kills the daemon (SIGKILL) in the middle of
// operations, starts it again and checks what must hold after any crash
// (testenv.CheckInvariants) and that the interrupted operation either
// happened whole or not at all, as its intent says. A seeded PRNG picks
// the operations and, for each, either one of the named crash points on
// its path (--inject-fault crash:POINT) or a delay after issuing it.
// POLYVISOR_CRASH_SEED replays a run, POLYVISOR_CRASH_KILLS sets how many
// kills it makes (make test: crashKillsDefault; make stress: 500), and
// POLYVISOR_CRASH_TIME bounds its wall time.
const (
	crashKillsDefault = 64
	crashTimeDefault  = 6 * time.Minute
	crashMaxGuests    = 5
	crashMaxNetworks  = 2
)

// world is what the suite expects the daemon to hold: guests (running,
// snapshots, networks), networks, templates.
type world struct {
	Guests    map[string]guestWorld
	Networks  map[string]bool
	Templates map[string]bool
}

type guestWorld struct {
	Type      string
	Running   bool
	Snapshots string // sorted, comma-separated
	Networks  string
}

func worldOf(s testenv.State) world {
	w := world{Guests: map[string]guestWorld{}, Networks: map[string]bool{}, Templates: map[string]bool{}}
	for name, g := range s.Guests {
		w.Guests[name] = guestWorld{Type: g.Type, Running: g.State == api.StateRunning, Snapshots: strings.Join(s.Snapshots[name], ","), Networks: strings.Join(g.Networks, ",")}
	}
	for name := range s.Networks {
		w.Networks[name] = true
	}
	for _, id := range s.Templates {
		w.Templates[id] = true
	}
	return w
}

func (w world) clone() world {
	c := world{Guests: map[string]guestWorld{}, Networks: map[string]bool{}, Templates: map[string]bool{}}
	for k, v := range w.Guests {
		c.Guests[k] = v
	}
	for k := range w.Networks {
		c.Networks[k] = true
	}
	for k := range w.Templates {
		c.Templates[k] = true
	}
	return c
}

// names returns the guests matching keep, sorted (so a seed replays).
func (w world) names(keep func(guestWorld) bool) []string {
	var out []string
	for name, g := range w.Guests {
		if keep(g) {
			out = append(out, name)
		}
	}
	sort.Strings(out)
	return out
}

func (w world) networkNames() []string {
	var out []string
	for n := range w.Networks {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// Outcomes a crash at a point must have: the operation undone, done whole,
// or either (its commit and its answer race).
const (
	undone = "before"
	done   = "after"
	either = "either"
)

// crashOp is one operation the suite interrupts.
type crashOp struct {
	args []string
	// points are the named crash points on its path, with the outcome a
	// crash at each must have.
	points map[string]string
	// maxDelay bounds the random delay before the kill.
	maxDelay time.Duration
	after    world
	vm       bool // on a VM
}

// crashRun is one run of the suite.
type crashRun struct {
	t        *testing.T
	d        *testenv.Daemon
	rng      *rand.Rand
	seed     uint64
	w        world
	serial   int
	rootTar  string
	counts   map[string]int
	took     map[string]time.Duration // how long each kind of operation took when it answered
	baseArgs []string
}

func TestCrashInjection(t *testing.T) {
	requireRoot(t)
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("POLYVISOR_CRASH_SEED"); s != "" {
		var err error
		if seed, err = strconv.ParseUint(s, 10, 64); err != nil {
			t.Fatalf("POLYVISOR_CRASH_SEED=%q: %v", s, err)
		}
	}
	kills := crashKillsDefault
	if s := os.Getenv("POLYVISOR_CRASH_KILLS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			t.Fatalf("POLYVISOR_CRASH_KILLS=%q: give a positive count", s)
		}
		kills = n
	}
	budget := crashTimeDefault
	if s := os.Getenv("POLYVISOR_CRASH_TIME"); s != "" {
		var err error
		if budget, err = time.ParseDuration(s); err != nil {
			t.Fatalf("POLYVISOR_CRASH_TIME=%q: %v", s, err)
		}
	}
	t.Logf("crash suite: seed %d (replay with POLYVISOR_CRASH_SEED=%d), %d kills, at most %s", seed, seed, kills, budget)
	began := time.Now()

	base := []string{"--default-network", "none"}
	d, err := testenv.StartInNetns(t.TempDir(), env.bin, netnsName(t), base...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// Without the fault: the next daemon's reconciliation may pass
		// the same point.
		d.Kill()
		if err := d.RestartWith(base...); err != nil {
			t.Errorf("restart to clean up: %v", err)
		}
		if err := d.Destroy(); err != nil {
			t.Errorf("destroy: %v", err)
		}
	})
	d.Must(t, "template", "build", "busybox")
	r := &crashRun{t: t, d: d, rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), seed: seed, counts: map[string]int{}, took: map[string]time.Duration{}, baseArgs: base}
	r.rootTar = r.makeRootTar()
	r.w = r.observe()

	// Guests that run from the start, so that stops, snapshots and
	// copies of running guests come early.
	for _, name := range []string{"a1", "a2"} {
		d.Must(t, "launch", "busybox", name)
	}
	r.w = r.observe()
	vmCases := r.vmCases()
	deadline := began.Add(budget)
	for i := 0; r.counts["kills"] < kills; i++ {
		if time.Now().After(deadline) {
			t.Logf("crash suite: time bound %s reached after %d kills", budget, r.counts["kills"])
			break
		}
		var op crashOp
		if len(vmCases) > 0 {
			op, vmCases = vmCases[0](), vmCases[1:]
		} else {
			op = r.nextOp()
		}
		r.crash(i, op)
	}
	t.Logf("crash suite: seed %d: %d kills in %s: %d at named points, %d during an operation after a random delay, %d after it had answered; %d operations undone, %d done, %d idle kills where the point was not reached",
		seed, r.counts["kills"], time.Since(began).Round(time.Second), r.counts["named"], r.counts["random"], r.counts["late"], r.counts["undone"], r.counts["done"], r.counts["missed"])
	for k, v := range r.counts {
		if strings.HasPrefix(k, "op:") {
			t.Logf("crash suite: %-20s %d", strings.TrimPrefix(k, "op:"), v)
		}
	}
}

// makeRootTar exports a busybox guest's tree once, for the imports.
func (r *crashRun) makeRootTar() string {
	path := filepath.Join(r.t.TempDir(), "root.tar")
	r.d.Must(r.t, "create", "busybox", "tarsrc")
	r.d.Must(r.t, "export", "tarsrc", path, "--format", "tar")
	r.d.Must(r.t, "delete", "tarsrc")
	return path
}

// observe reads the daemon's state.
func (r *crashRun) observe() world {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := r.d.ReadState(ctx)
	if err != nil {
		r.t.Fatalf("seed %d: %v\n%s", r.seed, err, tail(r.d.Log()))
	}
	return worldOf(s)
}

func (r *crashRun) name(prefix string) string {
	r.serial++
	return fmt.Sprintf("%s%d", prefix, r.serial)
}

// vmCases are the few VM operations the suite interrupts (TCG boots take
// seconds): a launch killed after QEMU started, a snapshot killed while
// the VM is paused for it, a delete killed after QEMU was stopped.
func (r *crashRun) vmCases() []func() crashOp {
	if os.Getenv("POLYVISOR_CRASH_VMS") == "0" {
		r.t.Log("crash suite: VM cases skipped (POLYVISOR_CRASH_VMS=0)")
		return nil
	}
	// The VM template's kernel comes from the package mirror, which the
	// suite's network namespace cannot reach: it is built by the shared
	// daemon and copied.
	// A name of its own, so that the shared daemon's other tests build
	// theirs as they expect.
	const vmTemplate = "crashvm.vm.amd64"
	if _, _, code := env.main.Run("template", "show", vmTemplate); code != 0 {
		env.main.Must(r.t, "template", "build", "busybox", "--type", "vm", "--name", "crashvm")
	}
	copyTemplate(r.t, env.main, r.d, vmTemplate)
	r.w = r.observe()
	return []func() crashOp{
		func() crashOp {
			name := r.name("vm")
			after := r.w.clone()
			after.Guests[name] = guestWorld{Type: "vm", Running: true}
			return crashOp{args: []string{"launch", "crashvm", name, "--type", "vm"}, points: map[string]string{"start-after-boot": undone}, after: after, vm: true}
		},
		func() crashOp {
			name := r.name("vm")
			r.d.Must(r.t, "launch", "crashvm", name, "--type", "vm")
			r.w = r.observe()
			after := r.w.clone()
			g := after.Guests[name]
			g.Snapshots = "s1"
			after.Guests[name] = g
			return crashOp{args: []string{"snapshot", "create", name, "s1"}, points: map[string]string{"snapshot-vm-paused": undone}, after: after, vm: true}
		},
		func() crashOp {
			name := r.w.names(func(g guestWorld) bool { return g.Type == "vm" })[0]
			after := r.w.clone()
			delete(after.Guests, name)
			return crashOp{args: []string{"delete", "--force", name}, points: map[string]string{"delete-after-stop": done}, after: after, vm: true}
		},
	}
}

// nextOp picks an operation the current world allows.
func (r *crashRun) nextOp() crashOp {
	// Interrupted launches and starts are mostly undone: a guest that runs
	// is made, uninterrupted, whenever none does, so that stops and
	// snapshots and copies of running guests keep coming.
	if len(r.w.names(func(g guestWorld) bool { return g.Type == "container" && g.Running })) == 0 && len(r.w.Guests) < crashMaxGuests-2 {
		r.d.Must(r.t, "launch", "busybox", r.name("r"))
		r.w = r.observe()
	}
	w := r.w
	containers := w.names(func(g guestWorld) bool { return g.Type == "container" })
	running := w.names(func(g guestWorld) bool { return g.Type == "container" && g.Running })
	stopped := w.names(func(g guestWorld) bool { return g.Type == "container" && !g.Running })
	withSnaps := w.names(func(g guestWorld) bool { return g.Type == "container" && g.Snapshots != "" })
	stoppedWithSnaps := w.names(func(g guestWorld) bool { return g.Type == "container" && !g.Running && g.Snapshots != "" })
	nets := w.networkNames()
	used := map[string]bool{}
	for _, g := range w.Guests {
		if g.Networks != "" {
			used[g.Networks] = true
		}
	}
	var choices []func() crashOp
	add := func(weight int, fn func() crashOp) {
		for range weight {
			choices = append(choices, fn)
		}
	}
	pick := func(list []string) string { return list[r.rng.IntN(len(list))] }
	after := w.clone()
	if len(w.Guests) < crashMaxGuests {
		add(2, func() crashOp {
			name := r.name("c")
			args := []string{"launch", "busybox", name}
			g := guestWorld{Type: "container", Running: true}
			if len(nets) > 0 && r.rng.IntN(2) == 0 {
				g.Networks = pick(nets)
				args = append(args, "--network", g.Networks)
			}
			after.Guests[name] = g
			return crashOp{args: args, maxDelay: 1500 * time.Millisecond, after: after, points: map[string]string{
				"launch-recorded": undone, "after-rootfs": undone, "create-after-disks": undone, "create-after-rename": undone, "before-monitor": undone, "start-after-boot": undone}}
		})
		add(1, func() crashOp {
			name := r.name("c")
			after.Guests[name] = guestWorld{Type: "container"}
			return crashOp{args: []string{"create", "busybox", name}, maxDelay: time.Second, after: after, points: map[string]string{
				"after-rootfs": undone, "create-after-disks": undone, "create-after-rename": either}}
		})
		add(1, func() crashOp {
			name := r.name("i")
			after.Guests[name] = guestWorld{Type: "container"}
			after.Templates[template.Key(name, template.TypeContainer, "")] = true
			return crashOp{args: []string{"import", r.rootTar, name}, maxDelay: 3 * time.Second, after: after, points: map[string]string{
				"create-after-disks": undone, "import-after-guest": undone}}
		})
		if len(containers) > 0 {
			add(1, func() crashOp {
				src, name := pick(containers), r.name("k")
				after.Guests[name] = guestWorld{Type: "container", Networks: w.Guests[src].Networks}
				return crashOp{args: []string{"copy", src, name}, maxDelay: time.Second, after: after, points: map[string]string{
					"copy-after-disks": undone, "copy-after-rename": either}}
			})
		}
	}
	if len(stopped) > 0 {
		add(2, func() crashOp {
			name := pick(stopped)
			g := w.Guests[name]
			g.Running = true
			after.Guests[name] = g
			return crashOp{args: []string{"start", name}, maxDelay: time.Second, after: after, points: map[string]string{
				"start-recorded": undone, "before-monitor": undone, "start-after-boot": undone}}
		})
		add(1, func() crashOp {
			name := pick(stopped)
			g := w.Guests[name]
			to := "none"
			if g.Networks == "" && len(nets) > 0 {
				to = pick(nets)
			}
			g.Networks = strings.TrimPrefix(to, "none")
			after.Guests[name] = g
			return crashOp{args: []string{"config", "set", name, "network=" + to}, maxDelay: 300 * time.Millisecond, after: after}
		})
	}
	if len(running) > 0 {
		add(4, func() crashOp {
			name := pick(running)
			g := w.Guests[name]
			g.Running = false
			after.Guests[name] = g
			args := []string{"stop", name, "--timeout", "1s"}
			if r.rng.IntN(2) == 0 {
				args = []string{"stop", name, "--force"}
			}
			return crashOp{args: args, maxDelay: 1200 * time.Millisecond, after: after, points: map[string]string{
				"stop-recorded": done, "stop-after-processes": done}}
		})
	}
	if len(containers) > 0 {
		add(2, func() crashOp {
			name := pick(containers)
			delete(after.Guests, name)
			return crashOp{args: []string{"delete", "--force", name}, maxDelay: time.Second, after: after, points: map[string]string{
				"delete-recorded": done, "delete-after-stop": done, "delete-after-disks": done}}
		})
		add(2, func() crashOp {
			name := pick(containers)
			g := w.Guests[name]
			snap := r.name("s")
			g.Snapshots = joinSorted(g.Snapshots, snap)
			after.Guests[name] = g
			return crashOp{args: []string{"snapshot", "create", name, snap}, maxDelay: 800 * time.Millisecond, after: after, points: map[string]string{
				"snapshot-create-recorded": undone, "snapshot-after-disks": undone, "snapshot-after-rename": undone}}
		})
	}
	if len(withSnaps) > 0 {
		add(2, func() crashOp {
			name := pick(withSnaps)
			g := w.Guests[name]
			snaps := strings.Split(g.Snapshots, ",")
			snap := pick(snaps)
			g.Snapshots = strings.Join(slices.DeleteFunc(slices.Clone(snaps), func(s string) bool { return s == snap }), ",")
			after.Guests[name] = g
			return crashOp{args: []string{"snapshot", "delete", name, snap}, maxDelay: 500 * time.Millisecond, after: after, points: map[string]string{
				"snapshot-delete-recorded": done, "snapshot-delete-after-disks": done}}
		})
	}
	if len(stoppedWithSnaps) > 0 {
		add(2, func() crashOp {
			name := pick(stoppedWithSnaps)
			snap := pick(strings.Split(w.Guests[name].Snapshots, ","))
			return crashOp{args: []string{"snapshot", "restore", name, snap}, maxDelay: 800 * time.Millisecond, after: after, points: map[string]string{
				"snapshot-restore-recorded": done, "snapshot-restore-after-disks": done}}
		})
	}
	if len(nets) < crashMaxNetworks {
		add(1, func() crashOp {
			name := r.name("n")
			after.Networks[name] = true
			return crashOp{args: []string{"network", "create", name}, maxDelay: 500 * time.Millisecond, after: after, points: map[string]string{
				"network-create-after-up": undone}}
		})
	}
	for _, n := range nets {
		if !used[n] {
			add(1, func() crashOp {
				delete(after.Networks, n)
				return crashOp{args: []string{"network", "delete", n}, maxDelay: 500 * time.Millisecond, after: after, points: map[string]string{
					"network-delete-recorded": done}}
			})
			break
		}
	}
	return choices[r.rng.IntN(len(choices))]()
}

func joinSorted(list, add string) string {
	all := []string{add}
	if list != "" {
		all = append(all, strings.Split(list, ",")...)
	}
	sort.Strings(all)
	return strings.Join(all, ",")
}

// crash runs op, kills the daemon at a named point or after a random
// delay, starts it again and checks the world.
func (r *crashRun) crash(i int, op crashOp) {
	t := r.t
	point, want := "", either
	if len(op.points) > 0 && (op.maxDelay == 0 || r.rng.IntN(2) == 0) {
		var names []string
		for p := range op.points {
			names = append(names, p)
		}
		sort.Strings(names)
		point = names[r.rng.IntN(len(names))]
		want = op.points[point]
	}
	kind := op.args[0]
	if slices.Contains([]string{"snapshot", "network", "config"}, kind) {
		kind += " " + op.args[1]
	}
	if op.vm {
		kind += " (VM)"
	}
	delay := time.Duration(0)
	if point == "" {
		// Within the time the operation took when last it answered, so
		// that most kills land while it runs.
		limit := op.maxDelay
		if took, ok := r.took[kind]; ok && took < limit {
			limit = took
		}
		delay = time.Duration(r.rng.Int64N(int64(limit) + 1))
	}
	what := fmt.Sprintf("seed %d, kill %d (iteration %d): polyvisor %s", r.seed, r.counts["kills"]+1, i, strings.Join(op.args, " "))
	if point != "" {
		what += " with crash:" + point
		if err := r.d.RestartWith(append(slices.Clone(r.baseArgs), "--inject-fault", "crash:"+point)...); err != nil {
			t.Fatalf("%s: restart: %v", what, err)
		}
	} else {
		what += fmt.Sprintf(" killed after %s", delay.Round(time.Millisecond))
	}
	cli := exec.Command(filepath.Join(r.d.BinDir, "polyvisor"), append([]string{"--socket", r.d.Socket}, op.args...)...)
	var out strings.Builder
	cli.Stdout, cli.Stderr = &out, &out
	issued := time.Now()
	if err := cli.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cli.Wait() }()
	var cliErr error
	answered := false
	if point != "" {
		select {
		case cliErr = <-exited:
		case <-time.After(3 * time.Minute):
			t.Fatalf("%s: the CLI did not end", what)
		}
		answered = !r.d.Exited(2 * time.Second) // the daemon outlived the operation: the point was not on its path
		if answered {
			r.counts["missed"]++
		} else {
			r.counts["named"]++
		}
		r.d.Kill()
	} else {
		select {
		case cliErr = <-exited:
			answered = true
			r.took[kind] = time.Since(issued)
		case <-time.After(delay):
		}
		r.d.Kill()
		if !answered {
			cliErr = <-exited
			r.counts["random"]++
		} else {
			r.counts["late"]++
		}
	}
	r.counts["kills"]++
	r.counts["op:"+kind]++
	if answered && cliErr != nil {
		t.Fatalf("%s: failed without a crash: %v: %s", what, cliErr, out.String())
	}
	if cliErr == nil {
		want = done
	}
	if err := r.d.RestartWith(r.baseArgs...); err != nil {
		t.Fatalf("%s: restart after the kill: %v", what, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := r.d.ReadState(ctx)
	if err != nil {
		t.Fatalf("%s: %v\n%s", what, err, tail(r.d.Log()))
	}
	got := worldOf(s)
	defer func() { r.w = got }()
	if bad := r.d.CheckInvariants(ctx, s); len(bad) > 0 {
		r.failed(fmt.Sprintf("%s: after the restart:\n  %s\ndaemon log:\n%s", what, strings.Join(bad, "\n  "), tail(r.d.Log())))
		return
	}
	before := reflect.DeepEqual(got, r.w)
	after := reflect.DeepEqual(got, op.after)
	switch {
	case after && (want == done || want == either):
		r.counts["done"]++
	case before && (want == undone || want == either):
		r.counts["undone"]++
	default:
		r.failed(fmt.Sprintf("%s: want the operation %s; the CLI said %v: %s\nbefore: %+v\nafter:  %+v\ngot:    %+v\ndaemon log:\n%s",
			what, map[string]string{undone: "undone", done: "done", either: "done or undone"}[want], cliErr, strings.TrimSpace(out.String()), r.w, op.after, got, tail(r.d.Log())))
	}
}

// failed reports a failure of the suite; after a few it stops, since later
// ones may follow from the first.
func (r *crashRun) failed(msg string) {
	r.t.Helper()
	r.t.Error(msg)
	if r.counts["failures"]++; r.counts["failures"] >= 5 {
		r.t.FailNow()
	}
}

// tail is the end of a daemon's log.
func tail(log string) string {
	const keep = 6000
	if len(log) > keep {
		return "..." + log[len(log)-keep:]
	}
	return log
}
