package benchreport

import (
	"fmt"
	"math"
	"slices"
	"strings"
)

// Verdicts of a claim.
const (
	Confirmed = "CONFIRMED" // every interval it rests on decides for it
	Refuted   = "REFUTED"   // some interval decides against it
	// Inconclusive is a claim the intervals do not decide: one straddles a
	// threshold, a cell is noise, or there are no intervals at all.
	Inconclusive = "INCONCLUSIVE"
	NotMeasured  = "NOT MEASURED" // a figure it needs failed, or a class is missing
)

// Claim is a claim about which class of virtualization is best at what
// (native speed, density, boot time), checked against the report's numbers.
type Claim struct {
	ID        string `json:"id"`
	Statement string `json:"statement"` // the claim, in the words it is known by
	Verdict   string `json:"verdict"`   // Confirmed, Refuted, Inconclusive, NotMeasured
	Evidence  string `json:"evidence"`  // the numbers behind the verdict, and for Inconclusive why
}

// Thresholds that turn the claims' words into numbers. Ratios are "x of
// native" (XOfNative); a set of workloads is summed up by the geometric
// mean of their ratios, so no single workload dominates. A threshold is
// tested against a figure's 95 % interval, never its median alone: the
// whole interval on one side decides, one that straddles it does not.
const (
	// NativeLikeRatio is "native performance" of a shared-kernel guest:
	// every CPU workload at no less than 0.90× of native. Faster than
	// native counts as native-like: the claim is about losing no speed.
	NativeLikeRatio = 0.90
	// DensityFactor is "higher density": an idle VM takes at least 4 times
	// the host memory of an idle container.
	DensityFactor = 4.0
	// PainfullySlowRatio is "painfully slow": emulated CPU work at no more
	// than 0.25× of native (four times slower or worse).
	PainfullySlowRatio = 0.25
	// EmulationVsVMFactor is "well below VM's": emulated CPU work at no
	// more than half the ratio of a hardware-accelerated (KVM) VM.
	EmulationVsVMFactor = 0.5
	// NearNativeRatio is the "near native" non-disk speed of hardware
	// virtualization: the VM's CPU workloads at 0.80× of native or better.
	NearNativeRatio = 0.80
	// DiskSuffersFactor is "disk I/O suffers greatly": the VM's disk ratio
	// at no more than 0.70 of its own CPU ratio.
	DiskSuffersFactor = 0.70
	// BootSlowerFactor is "VMs boot slower": a VM's boot at least 1.5
	// times a container's.
	BootSlowerFactor = 1.5
	// SyscallCostRatio is "costs system calls": User-Mode Linux's system
	// call and process spawn at no more than 0.5× of native speed (twice
	// as slow or worse), while its CPU work stays near native
	// (NearNativeRatio).
	SyscallCostRatio = 0.5
)

// Doubt widens the intervals a verdict rests on when the rounds'
// pairing may not have held: a paired ratio cancels a load that changes
// between rounds, not one that changes within a round, between native's
// turn and the class's.
const (
	// NotQuietMargin widens every interval (by ×/÷ 1.10) when the host was
	// not quiet, or its load was not recorded: other work came and went
	// while bench ran, and a few rounds may not have sampled it.
	NotQuietMargin = 0.10
	// NativeSpreadLimit is how far native's own figure may range between
	// rounds ((max-min)/median) on a host that was not quiet before the
	// pairing is doubted further: beyond it the workload's interval is
	// widened by that spread. On a quiet host native's range is the
	// workload's own scatter, which the paired ratio's interval already
	// holds: widening by it would count that scatter twice.
	NativeSpreadLimit = 0.10
)

// Claim IDs.
const (
	ClaimContainerNative = "container-native"
	ClaimDensity         = "container-density"
	ClaimEmulationSlow   = "emulation-slow"
	ClaimVMDisk          = "vm-disk"
	ClaimBoot            = "vm-boot"
	ClaimJailNative      = "jail-native"
	ClaimUMLSyscalls     = "uml-syscalls"
)

// Prefixes of the workload names each claim reads.
const (
	cpuPrefix  = "cpu."
	memPrefix  = "mem."
	diskPrefix = "disk."
	// The kernel-entry workloads: one system call, and a process's
	// fork, exec and wait.
	syscallPrefix = "syscall."
	spawnPrefix   = "proc."
)

// noIntervals is why a report from before paired rounds decides nothing.
const noIntervals = "no intervals: a report from before paired rounds"

// Claims checks every claim against the report. It guesses
// nothing: a claim whose figures failed or whose class is missing is
// NotMeasured, with what was missing as its evidence; one the intervals
// do not decide is Inconclusive, with why.
func Claims(r *Report) []Claim {
	rows := Rows(r)
	return []Claim{
		claimContainerNative(r, rows),
		claimDensity(r, rows),
		claimEmulationSlow(r, rows),
		claimVMDisk(r, rows),
		claimBoot(r, rows),
		claimJailNative(r, rows),
		claimUMLSyscalls(r, rows),
	}
}

// claimJailNative: the original jail is native speed, as a container is,
// but shares more of the host (what info says of a chroot guest); the
// evidence sets the container beside it, which is what namespaces add.
func claimJailNative(r *Report, rows []Row) Claim {
	c := Claim{
		ID:        ClaimJailNative,
		Statement: "The chroot jail is as fast as native but isolates less: it shares the host's pids, network, hostname and IPC.",
		Verdict:   NotMeasured,
	}
	rs, why := ratiosOf(r, rows, cpuPrefix, Chroot)
	if why != "" {
		c.Evidence = why
		return c
	}
	var tests []test
	for _, x := range rs {
		tests = append(tests, atLeast("chroot "+x.figure, x.bound(), NativeLikeRatio, FormatRatio))
	}
	c.Evidence = fmt.Sprintf("chroot CPU workloads %s of native (native-like: every interval at %s or more)", rs, FormatRatio(NativeLikeRatio))
	for _, prefix := range []string{syscallPrefix, spawnPrefix} {
		jail, why := ratiosOf(r, rows, prefix, Chroot)
		if why != "" {
			continue
		}
		c.Evidence += fmt.Sprintf("; %s chroot %s", strings.TrimSuffix(prefix, "."), jail)
		if ct, why := ratiosOf(r, rows, prefix, Container); why == "" {
			c.Evidence += fmt.Sprintf(", container %s", ct)
		}
	}
	c.Evidence += "; it isolates less by construction: no pid, network, UTS, IPC, user or cgroup namespace (polyvisor info lists them)"
	c.Verdict, c.Evidence = decide(r, rs, c.Evidence, tests...)
	return c
}

// claimUMLSyscalls: User-Mode Linux runs the guest's code on the host's
// CPU, but every system call is caught by the UML kernel's tracing of its
// processes and served by another host process.
func claimUMLSyscalls(r *Report, rows []Row) Claim {
	c := Claim{
		ID:        ClaimUMLSyscalls,
		Statement: "Paravirtualization (User-Mode Linux) costs system calls, not CPU: its code runs at native speed, its kernel entries do not.",
		Verdict:   NotMeasured,
	}
	all, why := ratiosEach(r, rows, UML, cpuPrefix, syscallPrefix, spawnPrefix)
	if why != "" {
		c.Evidence = why
		return c
	}
	cpu, sys, spawn := all[0], all[1], all[2]
	kernel := append(slices.Clone(sys), spawn...)
	c.Evidence = fmt.Sprintf("uml CPU %s%s of native (%s; near native: %s or more); system calls and spawns %s (costly: %s or less)",
		FormatRatio(cpu.geomean()), cpu.asMeasured().bound().suffix(), cpu, FormatRatio(NearNativeRatio), kernel, FormatRatio(SyscallCostRatio))
	tests := []test{atLeast("uml CPU", cpu.bound(), NearNativeRatio, FormatRatio)}
	for _, x := range kernel {
		tests = append(tests, atMost("uml "+x.figure, x.bound(), SyscallCostRatio, FormatRatio))
	}
	c.Verdict, c.Evidence = decide(r, append(cpu, kernel...), c.Evidence, tests...)
	return c
}

func claimContainerNative(r *Report, rows []Row) Claim {
	c := Claim{
		ID:        ClaimContainerNative,
		Statement: "Shared-kernel virtualization (containers) gives native performance: each system performs at native speed.",
		Verdict:   NotMeasured,
	}
	rs, why := ratiosOf(r, rows, cpuPrefix, Container)
	if why != "" {
		c.Evidence = why
		return c
	}
	lowest := rs[0]
	var tests []test
	for _, x := range rs {
		if x.ratio < lowest.ratio {
			lowest = x
		}
		tests = append(tests, atLeast("container "+x.figure, x.bound(), NativeLikeRatio, FormatRatio))
	}
	c.Evidence = fmt.Sprintf("container CPU workloads %s of native; the lowest is %s (native-like: every interval at %s or more)",
		rs, FormatRatio(lowest.ratio), FormatRatio(NativeLikeRatio))
	c.Verdict, c.Evidence = decide(r, rs, c.Evidence, tests...)
	return c
}

func claimDensity(r *Report, rows []Row) Claim {
	c := Claim{
		ID:        ClaimDensity,
		Statement: "Shared-kernel virtualization allows a higher density of virtualized systems than hardware virtualization: more guests per host.",
		Verdict:   NotMeasured,
	}
	row, _ := FindRow(rows, DensityFigure)
	ct, vm := row.Cell(Container), row.Cell(VM)
	if why := unmeasured(row, Container, VM); why != "" {
		c.Evidence = why
		return c
	}
	factor := vm.Median / ct.Median
	c.Evidence = fmt.Sprintf("an idle container takes %s MiB of host memory, an idle vm %s MiB: %s× as much (higher density: %s× or more; each one launch, no interval)",
		FormatNumber(ct.Median), FormatNumber(vm.Median), FormatNumber(factor), FormatNumber(DensityFactor))
	if ct.Fit > 0 && vm.Fit > 0 {
		c.Evidence += fmt.Sprintf("; %s containers or %s vms fit in %s (%s kept for the host)",
			FormatCount(ct.Fit), FormatCount(vm.Fit), FormatBytes(r.Host.MemoryBytes), FormatBytes(HostReserveBytes))
	}
	c.Evidence += accelNote(r)
	// A density is one launch of many guests: no interval, so its values
	// stand as measured on a quiet host, and are widened like every
	// interval when other work may have grown the host's memory too.
	m, _ := hostDoubt(r)
	ctb, vmb := pointBound(ct.Median, m), pointBound(vm.Median, m)
	c.Verdict, c.Evidence = decide(r, nil, c.Evidence, atLeast("vm/container memory", vmb.over(ctb), DensityFactor, times))
	return c
}

func claimEmulationSlow(r *Report, rows []Row) Claim {
	c := Claim{
		ID:        ClaimEmulationSlow,
		Statement: "Emulation (a foreign architecture) can be painfully slow, well below hardware virtualization and native speed.",
		Verdict:   NotMeasured,
	}
	emu, why := ratiosOf(r, rows, cpuPrefix, Emulation)
	if why != "" {
		c.Evidence = why
		return c
	}
	label := Emulation
	if cl := r.FindClass(Emulation); cl != nil && cl.Arch != "" {
		label += " (" + cl.Arch + ")"
	}
	eb := emu.bound()
	slow := atMost("emulation CPU", eb, PainfullySlowRatio, FormatRatio)
	c.Evidence = fmt.Sprintf("%s CPU %s%s of native (%s; painfully slow: %s or less)",
		label, FormatRatio(emu.geomean()), emu.asMeasured().bound().suffix(), emu, FormatRatio(PainfullySlowRatio))
	if isTCG(vmAccel(r)) {
		// A TCG vm is emulated too: comparing with it says nothing of
		// hardware virtualization, so only native decides.
		if vm, why := ratiosOf(r, rows, cpuPrefix, VM); why == "" {
			c.Evidence += fmt.Sprintf("; the vm class, CPU %s of native, is not compared", FormatRatio(vm.geomean()))
		}
		c.Evidence += accelNote(r)
		c.Verdict, c.Evidence = decide(r, emu, c.Evidence, slow)
		return c
	}
	vm, why := ratiosOf(r, rows, cpuPrefix, VM)
	if why != "" {
		c.Evidence += "; no vm to compare with: " + why
		return c
	}
	vg, vb := vm.geomean(), vm.bound()
	c.Evidence += fmt.Sprintf("; the vm (%s) CPU %s%s of native: emulation is %s of it (well below: %s or less)",
		orDefault(vmAccel(r), "accel unknown"), FormatRatio(vg), vm.asMeasured().bound().suffix(), FormatRatio(emu.geomean()/vg), FormatRatio(EmulationVsVMFactor))
	c.Verdict, c.Evidence = decide(r, append(emu, vm...), c.Evidence, slow,
		atMost("emulation/vm CPU", eb.over(vb), EmulationVsVMFactor, FormatRatio))
	return c
}

func claimVMDisk(r *Report, rows []Row) Claim {
	c := Claim{
		ID:        ClaimVMDisk,
		Statement: "In hosted and hardware virtualization disk I/O suffers greatly, while non-disk speed is near native.",
		Verdict:   NotMeasured,
	}
	both, why := ratiosEach(r, rows, VM, cpuPrefix, diskPrefix)
	if why != "" {
		c.Evidence = why
		return c
	}
	cpu, disk := both[0], both[1]
	cg, dg := cpu.geomean(), disk.geomean()
	cb, db := cpu.bound(), disk.bound()
	numbers := fmt.Sprintf("vm CPU %s%s of native (%s), disk %s%s of native (%s): disk at %s of CPU",
		FormatRatio(cg), cpu.asMeasured().bound().suffix(), cpu, FormatRatio(dg), disk.asMeasured().bound().suffix(), disk, FormatRatio(dg/cg))
	if accel := vmAccel(r); !strings.EqualFold(accel, "kvm") {
		c.Evidence = numbers + "; hardware virtualization was not measured: " + orDefault(strings.TrimPrefix(accelNote(r), "; "), "the host did not say whether VMs run under KVM")
		return c
	}
	c.Evidence = numbers + fmt.Sprintf(" (near native: CPU %s or more; disk suffers: %s of CPU or less)",
		FormatRatio(NearNativeRatio), FormatRatio(DiskSuffersFactor))
	c.Verdict, c.Evidence = decide(r, append(cpu, disk...), c.Evidence,
		atLeast("vm CPU", cb, NearNativeRatio, FormatRatio),
		atMost("vm disk/CPU", db.over(cb), DiskSuffersFactor, FormatRatio))
	return c
}

func claimBoot(r *Report, rows []Row) Claim {
	c := Claim{
		ID:        ClaimBoot,
		Statement: "VMs boot slower than containers: each VM boots its own kernel, a container starts on the host's.",
		Verdict:   NotMeasured,
	}
	row, _ := FindRow(rows, LifecycleFigure(Boot))
	ct, vm := row.Cell(Container), row.Cell(VM)
	if why := unmeasured(row, Container, VM); why != "" {
		c.Evidence = why
		return c
	}
	m, _ := hostDoubt(r)
	ctb, vmb := medianBound(Container, row, ct, m), medianBound(VM, row, vm, m)
	factor := vm.Median / ct.Median
	c.Evidence = fmt.Sprintf("median boot: container %s %s%s, vm %s %s%s, %s× as long (slower: %s× or more)",
		FormatNumber(ct.Median), row.Unit, medianBound(Container, row, ct, 0).valueSuffix(),
		FormatNumber(vm.Median), row.Unit, medianBound(VM, row, vm, 0).valueSuffix(),
		FormatNumber(factor), FormatNumber(BootSlowerFactor))
	c.Evidence += accelNote(r)
	c.Verdict, c.Evidence = decide(r, nil, c.Evidence, atLeast("vm/container boot", vmb.over(ctb), BootSlowerFactor, times))
	return c
}

// bound is the range a verdict may rely on for a figure: its 95 %
// interval, widened under doubt. why, when set, says why there is none
// to rely on; the test it enters is then inconclusive.
type bound struct {
	low, high float64
	why       string
	// noise is set when why is a cell flagged as noise.
	noise bool
}

// over is the range of a quotient a/b from the ranges of a and b.
func (a bound) over(b bound) bound {
	if a.why != "" {
		return a
	}
	if b.why != "" {
		return b
	}
	return bound{low: a.low / b.high, high: a.high / b.low}
}

// suffix shows a ratio bound after its median: " [0.95, 1.01]".
func (b bound) suffix() string {
	if b.why != "" {
		return ""
	}
	return " " + FormatRatioInterval(Interval{Low: b.low, High: b.high})
}

// valueSuffix shows a value bound after its median: " [16.2, 21.6]".
func (b bound) valueSuffix() string {
	if b.why != "" {
		return ""
	}
	return " " + Interval{Low: b.low, High: b.high}.String()
}

// widen stretches [low, high] by ×/÷ (1+m).
func widen(low, high, m float64) bound { return bound{low: low / (1 + m), high: high * (1 + m)} }

// pointBound is a value without an interval, widened by m.
func pointBound(v, m float64) bound { return widen(v, v, m) }

// medianBound is a lifecycle cell's bound: its median interval, widened
// by m.
func medianBound(class string, row Row, c Cell, m float64) bound {
	switch {
	case c.CI == nil:
		return bound{why: fmt.Sprintf("%s %s has no interval", class, row.Figure)}
	case c.CI.N < MinIntervalRuns:
		return bound{why: fmt.Sprintf("%s %s's interval stands on %d runs (%d needed)", class, row.Figure, c.CI.N, MinIntervalRuns)}
	}
	return widen(c.CI.Low, c.CI.High, m)
}

// test is one threshold a claim is tested against: Confirmed, Refuted or
// Inconclusive, and why when not Confirmed; noise when a cell it rests on
// is noise.
type test struct {
	verdict string
	why     string
	noise   bool
}

// atLeast tests that a figure's bound lies at t or above.
func atLeast(name string, b bound, t float64, show func(float64) string) test {
	switch {
	case b.why != "":
		return test{Inconclusive, b.why, b.noise}
	case b.low >= t:
		return test{verdict: Confirmed}
	case b.high < t:
		return test{Refuted, fmt.Sprintf("%s's interval %s lies below %s", name, showRange(b, show), show(t)), false}
	}
	return test{Inconclusive, fmt.Sprintf("%s's interval %s straddles %s", name, showRange(b, show), show(t)), false}
}

// atMost tests that a figure's bound lies at t or below.
func atMost(name string, b bound, t float64, show func(float64) string) test {
	switch {
	case b.why != "":
		return test{Inconclusive, b.why, b.noise}
	case b.high <= t:
		return test{verdict: Confirmed}
	case b.low > t:
		return test{Refuted, fmt.Sprintf("%s's interval %s lies above %s", name, showRange(b, show), show(t)), false}
	}
	return test{Inconclusive, fmt.Sprintf("%s's interval %s straddles %s", name, showRange(b, show), show(t)), false}
}

func showRange(b bound, show func(float64) string) string {
	return "[" + strings.TrimSuffix(show(b.low), "×") + ", " + strings.TrimSuffix(show(b.high), "×") + "]"
}

// times shows a factor between two classes: 4.00×.
func times(v float64) string { return FormatNumber(v) + "×" }

// decide turns a claim's tests into its verdict: Refuted when some
// interval decides against the claim, Confirmed when every one decides
// for it, Inconclusive otherwise. A cell flagged as noise makes the claim
// Inconclusive whatever the others say: a class measured faster than its
// host beyond its interval shows that this run's intervals did not hold
// the noise, so none of them decides. The evidence gains why (for
// Inconclusive and Refuted) and any doubt that widened the intervals.
func decide(r *Report, rs ratios, evidence string, tests ...test) (string, string) {
	var noise, refuted, undecided []string
	for _, t := range tests {
		switch {
		case t.noise:
			noise = append(noise, t.why)
		case t.verdict == Refuted:
			refuted = append(refuted, t.why)
		case t.verdict == Inconclusive && !slices.Contains(undecided, t.why):
			undecided = append(undecided, t.why)
		}
	}
	verdict, why := Confirmed, []string(nil)
	switch {
	case len(noise) > 0:
		verdict, why = Inconclusive, append(append(noise, refuted...), undecided...)
	case len(refuted) > 0:
		verdict, why = Refuted, refuted
	case len(undecided) > 0:
		verdict, why = Inconclusive, undecided
	}
	doubts := doubtNotes(r, rs)
	switch verdict {
	case Inconclusive:
		evidence += "; inconclusive: " + strings.Join(append(why, doubts...), "; ")
	case Refuted:
		evidence += "; refuted: " + strings.Join(why, "; ")
		fallthrough
	default:
		if len(doubts) > 0 {
			evidence += "; decided despite doubt: " + strings.Join(doubts, "; ")
		}
	}
	return verdict, evidence
}

// hostDoubt is how far every interval is widened for the host's load, and
// why; 0 and "" on a host bench found quiet.
func hostDoubt(r *Report) (float64, string) {
	why := loadNote(r)
	if why == "" {
		return 0, ""
	}
	return NotQuietMargin, fmt.Sprintf("%s: intervals widened by %.0f %%", why, NotQuietMargin*100)
}

// loadNote says how the host was not quiet while bench ran, or that its
// load was not recorded; "" for a quiet host.
func loadNote(r *Report) string {
	switch {
	case r.Load == nil:
		return "the host's load was not recorded"
	case r.Load.Quiet:
		return ""
	}
	// The warnings themselves head the report; a claim says how often
	// and how much.
	busy, most := 0, 0.0
	for _, s := range r.Load.Samples {
		if s.Busy > 0.10 || s.Steal > 0.05 {
			busy++
		}
		most = max(most, s.Busy, s.Steal)
	}
	if busy == 0 {
		if len(r.Load.Warnings) == 0 {
			return "the host was not quiet"
		}
		note := "the host was not quiet (" + oneLine(r.Load.Warnings[0])
		if more := len(r.Load.Warnings) - 1; more > 0 {
			note += fmt.Sprintf("; %d more warnings", more)
		}
		return note + ")"
	}
	return fmt.Sprintf("the host was not quiet (%d of %d load samples, other work up to %.0f%% of the CPUs)", busy, len(r.Load.Samples), most*100)
}

// doubtNotes say what widened the intervals of the claim's workloads.
func doubtNotes(r *Report, rs ratios) []string {
	var notes []string
	if _, why := hostDoubt(r); why != "" {
		notes = append(notes, why)
	}
	for _, x := range rs {
		if x.nativeSpread > NativeSpreadLimit {
			note := fmt.Sprintf("native %s varied %.0f %% between rounds", x.figure, x.nativeSpread*100)
			if !slices.Contains(notes, note) {
				notes = append(notes, note)
			}
		}
	}
	return notes
}

// namedRatio is one workload's ratio, as evidence shows it, with what
// decides how far it can be relied on.
type namedRatio struct {
	class, figure string
	ratio         float64
	ci            *Interval
	noise         string
	// margin widens ci: the host's doubt, or native's spread between
	// rounds when that is larger than NativeSpreadLimit.
	margin       float64
	nativeSpread float64
	noRounds     bool // the report is from before paired rounds
}

// bound is the ratio's interval, widened by its margin.
func (x namedRatio) bound() bound {
	switch {
	case x.noise != "":
		return bound{why: fmt.Sprintf("%s %s is noise: %s", x.class, x.figure, x.noise), noise: true}
	case x.ci == nil && x.noRounds:
		return bound{why: noIntervals}
	case x.ci == nil:
		return bound{why: fmt.Sprintf("%s %s has no interval: no round measured it beside native", x.class, x.figure)}
	case x.ci.N < MinIntervalRuns:
		return bound{why: fmt.Sprintf("%s %s's interval stands on %d paired rounds (%d needed)", x.class, x.figure, x.ci.N, MinIntervalRuns)}
	}
	return widen(x.ci.Low, x.ci.High, x.margin)
}

type ratios []namedRatio

// String lists the ratios: cpu.int 0.98× [0.95, 1.01], cpu.float 0.97× [...].
func (rs ratios) String() string {
	parts := make([]string, len(rs))
	for i, x := range rs {
		parts[i] = x.figure + " " + FormatRatio(x.ratio)
		if x.ci != nil && x.ci.N >= MinIntervalRuns {
			parts[i] += " " + FormatRatioInterval(*x.ci)
		}
		if x.noise != "" {
			parts[i] += " (noise)"
		}
	}
	return strings.Join(parts, ", ")
}

// asMeasured are the ratios with their intervals as the rounds gave
// them, not widened: what evidence shows beside the medians.
func (rs ratios) asMeasured() ratios {
	out := slices.Clone(rs)
	for i := range out {
		out[i].margin = 0
	}
	return out
}

func (rs ratios) geomean() float64 {
	sum := 0.0
	for _, x := range rs {
		sum += math.Log(x.ratio)
	}
	return math.Exp(sum / float64(len(rs)))
}

// bound is the range of the geometric mean: the geometric means of the
// bounds' ends (each median lies within its own bound, and the mean grows
// with each of them).
func (rs ratios) bound() bound {
	lo, hi := 0.0, 0.0
	for _, x := range rs {
		b := x.bound()
		if b.why != "" {
			return b
		}
		lo += math.Log(b.low)
		hi += math.Log(b.high)
	}
	n := float64(len(rs))
	return bound{low: math.Exp(lo / n), high: math.Exp(hi / n)}
}

// ratiosOf collects a class's ratios over the workloads whose names start
// with prefix. why says what is missing when any of them has no ratio (it
// failed, in the class or natively, or the class is missing), or when
// there are no such workloads.
// ratiosEach is ratiosOf of class for each prefix, in order, or the first
// reason one of them is missing.
func ratiosEach(r *Report, rows []Row, class string, prefixes ...string) ([]ratios, string) {
	out := make([]ratios, len(prefixes))
	for i, prefix := range prefixes {
		rs, why := ratiosOf(r, rows, prefix, class)
		if why != "" {
			return nil, why
		}
		out[i] = rs
	}
	return out, ""
}

func ratiosOf(r *Report, rows []Row, prefix, class string) (ratios, string) {
	var rs ratios
	hostMargin, _ := hostDoubt(r)
	native := r.FindClass(Native)
	for _, row := range rows {
		if row.Group != GroupWorkload || !strings.HasPrefix(row.Figure, prefix) {
			continue
		}
		if why := unmeasured(row, Native, class); why != "" {
			return nil, why
		}
		c := row.Cell(class)
		if !c.HasRatio {
			return nil, fmt.Sprintf("%s %s has no ratio to native", class, row.Figure)
		}
		x := namedRatio{class: class, figure: row.Figure, ratio: c.Ratio, ci: c.CI, noise: c.Noise, margin: hostMargin}
		if native != nil {
			x.noRounds = len(native.Rounds) == 0
			if hostMargin > 0 {
				x.nativeSpread = Spread(measured(roundValues(*native, row.Figure)))
				if x.nativeSpread > NativeSpreadLimit {
					x.margin = max(x.margin, x.nativeSpread)
				}
			}
		}
		rs = append(rs, x)
	}
	if len(rs) == 0 {
		return nil, "no " + prefix + "* workload was measured"
	}
	return rs, ""
}

// unmeasured says why the row lacks a positive value for one of the
// classes, or "" when it has them all.
func unmeasured(row Row, classes ...string) string {
	if row.Figure == "" {
		return "the report has no such figure"
	}
	for _, name := range classes {
		c := row.Cell(name)
		switch {
		case c.State == StateNA && c.Detail == notInReport:
			return "the report has no " + name + " class"
		case c.State != StateOK:
			return fmt.Sprintf("%s %s %s: %s", name, row.Figure, c.State, oneLine(c.Detail))
		case !(c.Median > 0):
			return fmt.Sprintf("%s %s is %s, no value to compare", name, row.Figure, FormatNumber(c.Median))
		}
	}
	return ""
}

// vmAccel is how the vm class ran: its own Accel, else the host's.
func vmAccel(r *Report) string {
	if c := r.FindClass(VM); c != nil && c.Accel != "" {
		return c.Accel
	}
	return r.Host.Accel
}

func isTCG(accel string) bool { return strings.EqualFold(accel, "tcg") }

// accelNote says, when VMs ran under TCG here, that the vm class was
// emulated too, and why; "" otherwise.
func accelNote(r *Report) string {
	if !isTCG(vmAccel(r)) {
		return ""
	}
	note := "; the vm class ran under TCG here, so it is emulated too, not hardware virtualization"
	if r.Host.AccelReason != "" {
		note += " (" + oneLine(r.Host.AccelReason) + ")"
	}
	return note
}
