package benchreport

import (
	"fmt"
	"math"
	"strings"
)

// Verdicts of a claim.
const (
	Confirmed   = "CONFIRMED"
	Refuted     = "REFUTED"
	NotMeasured = "NOT MEASURED" // a figure it needs failed, or a class is missing
)

// Claim is one of the chapter's claims about which virtualization is best,
// checked against the report's numbers.
type Claim struct {
	ID        string `json:"id"`
	Statement string `json:"statement"` // the claim, in the chapter's words
	Verdict   string `json:"verdict"`   // Confirmed, Refuted, NotMeasured
	Evidence  string `json:"evidence"`  // the numbers behind the verdict
}

// Thresholds that turn the chapter's words into numbers. Ratios are "x of
// native" (XOfNative); a set of workloads is summed up by the geometric
// mean of their ratios, so no single workload dominates.
const (
	// NativeLikeRatio is "native performance" of a shared-kernel guest:
	// every CPU workload at no less than 0.90× of native, i.e. within the
	// ~10% that repeated runs on a shared host spread by. Faster than
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
	// BootSlowerFactor is "VMs boot slower": a VM's median boot at least
	// 1.5 times a container's, well beyond the spread of a median.
	BootSlowerFactor = 1.5
)

// Claim IDs.
const (
	ClaimContainerNative = "container-native"
	ClaimDensity         = "container-density"
	ClaimEmulationSlow   = "emulation-slow"
	ClaimVMDisk          = "vm-disk"
	ClaimBoot            = "vm-boot"
)

// Prefixes of the workload names each claim reads.
const (
	cpuPrefix  = "cpu."
	diskPrefix = "disk."
)

// Claims checks the chapter's claims against the report. It guesses
// nothing: a claim whose figures failed or whose class is missing is
// NotMeasured, with what was missing as its evidence.
func Claims(r *Report) []Claim {
	rows := Rows(r)
	return []Claim{
		claimContainerNative(rows),
		claimDensity(r, rows),
		claimEmulationSlow(r, rows),
		claimVMDisk(r, rows),
		claimBoot(r, rows),
	}
}

func claimContainerNative(rows []Row) Claim {
	c := Claim{
		ID:        ClaimContainerNative,
		Statement: "Shared-kernel virtualization (containers) gives native performance: each system performs at native speed.",
		Verdict:   NotMeasured,
	}
	rs, why := ratiosOf(rows, cpuPrefix, Container)
	if why != "" {
		c.Evidence = why
		return c
	}
	lowest := math.Inf(1)
	for _, x := range rs {
		lowest = min(lowest, x.ratio)
	}
	c.Verdict = verdict(lowest >= NativeLikeRatio)
	c.Evidence = fmt.Sprintf("container CPU workloads %s of native; the lowest is %s (native-like: every one at %s or more)",
		rs, FormatRatio(lowest), FormatRatio(NativeLikeRatio))
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
	c.Verdict = verdict(factor >= DensityFactor)
	c.Evidence = fmt.Sprintf("an idle container takes %s MiB of host memory, an idle vm %s MiB: %s× as much (higher density: %s× or more)",
		FormatNumber(ct.Median), FormatNumber(vm.Median), FormatNumber(factor), FormatNumber(DensityFactor))
	if ct.Fit > 0 && vm.Fit > 0 {
		c.Evidence += fmt.Sprintf("; %s containers or %s vms fit in %s (%s kept for the host)",
			FormatCount(ct.Fit), FormatCount(vm.Fit), FormatBytes(r.Host.MemoryBytes), FormatBytes(HostReserveBytes))
	}
	c.Evidence += accelNote(r)
	return c
}

func claimEmulationSlow(r *Report, rows []Row) Claim {
	c := Claim{
		ID:        ClaimEmulationSlow,
		Statement: "Emulation (a foreign architecture) can be painfully slow, well below hardware virtualization and native speed.",
		Verdict:   NotMeasured,
	}
	emu, why := ratiosOf(rows, cpuPrefix, Emulation)
	if why != "" {
		c.Evidence = why
		return c
	}
	label := Emulation
	if cl := r.FindClass(Emulation); cl != nil && cl.Arch != "" {
		label += " (" + cl.Arch + ")"
	}
	g := emu.geomean()
	slow := g <= PainfullySlowRatio
	c.Evidence = fmt.Sprintf("%s CPU %s of native (%s; painfully slow: %s or less)",
		label, FormatRatio(g), emu, FormatRatio(PainfullySlowRatio))
	if isTCG(vmAccel(r)) {
		// A TCG vm is emulated too: comparing with it says nothing of
		// hardware virtualization, so only native decides.
		c.Verdict = verdict(slow)
		if vm, why := ratiosOf(rows, cpuPrefix, VM); why == "" {
			c.Evidence += fmt.Sprintf("; the vm class, CPU %s of native, is not compared", FormatRatio(vm.geomean()))
		}
		c.Evidence += accelNote(r)
		return c
	}
	vm, why := ratiosOf(rows, cpuPrefix, VM)
	if why != "" {
		c.Evidence += "; no vm to compare with: " + why
		return c
	}
	vg := vm.geomean()
	c.Verdict = verdict(slow && g <= vg*EmulationVsVMFactor)
	c.Evidence += fmt.Sprintf("; the vm (%s) CPU %s of native: emulation is %s of it (well below: %s or less)",
		orDefault(vmAccel(r), "accel unknown"), FormatRatio(vg), FormatRatio(g/vg), FormatRatio(EmulationVsVMFactor))
	return c
}

func claimVMDisk(r *Report, rows []Row) Claim {
	c := Claim{
		ID:        ClaimVMDisk,
		Statement: "In hosted and hardware virtualization disk I/O suffers greatly, while non-disk speed is near native.",
		Verdict:   NotMeasured,
	}
	cpu, why := ratiosOf(rows, cpuPrefix, VM)
	if why != "" {
		c.Evidence = why
		return c
	}
	disk, why := ratiosOf(rows, diskPrefix, VM)
	if why != "" {
		c.Evidence = why
		return c
	}
	cg, dg := cpu.geomean(), disk.geomean()
	numbers := fmt.Sprintf("vm CPU %s of native (%s), disk %s of native (%s): disk at %s of CPU",
		FormatRatio(cg), cpu, FormatRatio(dg), disk, FormatRatio(dg/cg))
	if accel := vmAccel(r); !strings.EqualFold(accel, "kvm") {
		c.Evidence = numbers + "; hardware virtualization was not measured: " + orDefault(strings.TrimPrefix(accelNote(r), "; "), "the host did not say whether VMs run under KVM")
		return c
	}
	c.Verdict = verdict(cg >= NearNativeRatio && dg <= cg*DiskSuffersFactor)
	c.Evidence = numbers + fmt.Sprintf(" (near native: CPU %s or more; disk suffers: %s of CPU or less)",
		FormatRatio(NearNativeRatio), FormatRatio(DiskSuffersFactor))
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
	factor := vm.Median / ct.Median
	c.Verdict = verdict(factor >= BootSlowerFactor)
	c.Evidence = fmt.Sprintf("median boot: container %s %s, vm %s %s, %s× as long (slower: %s× or more)",
		FormatNumber(ct.Median), row.Unit, FormatNumber(vm.Median), row.Unit, FormatNumber(factor), FormatNumber(BootSlowerFactor))
	c.Evidence += accelNote(r)
	return c
}

func verdict(ok bool) string {
	if ok {
		return Confirmed
	}
	return Refuted
}

// namedRatio is one workload's ratio, as evidence shows it.
type namedRatio struct {
	figure string
	ratio  float64
}

type ratios []namedRatio

// String lists the ratios: cpu.int 0.98×, cpu.float 0.97×.
func (rs ratios) String() string {
	parts := make([]string, len(rs))
	for i, x := range rs {
		parts[i] = x.figure + " " + FormatRatio(x.ratio)
	}
	return strings.Join(parts, ", ")
}

func (rs ratios) geomean() float64 {
	sum := 0.0
	for _, x := range rs {
		sum += math.Log(x.ratio)
	}
	return math.Exp(sum / float64(len(rs)))
}

// ratiosOf collects a class's ratios over the workloads whose names start
// with prefix. why says what is missing when any of them has no ratio (it
// failed, in the class or natively, or the class is missing), or when
// there are no such workloads.
func ratiosOf(rows []Row, prefix, class string) (ratios, string) {
	var rs ratios
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
		rs = append(rs, namedRatio{row.Figure, c.Ratio})
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
