package benchreport

import (
	"maps"
	"math"
	"strings"
	"testing"

	"github.com/polyvisor/polyvisor/internal/evaluation/probe"
)

func claim(t *testing.T, r *Report, id string) Claim {
	t.Helper()
	for _, c := range Claims(r) {
		if c.ID == id {
			return c
		}
	}
	t.Fatalf("no claim %s", id)
	return Claim{}
}

// expect checks a claim's verdict and that its evidence holds each text.
func expect(t *testing.T, r *Report, id, verdict string, evidence ...string) {
	t.Helper()
	c := claim(t, r, id)
	if c.Verdict != verdict {
		t.Errorf("%s: %s, want %s; evidence: %s", id, c.Verdict, verdict, c.Evidence)
	}
	for _, e := range evidence {
		if !strings.Contains(c.Evidence, e) {
			t.Errorf("%s: evidence lacks %q: %s", id, e, c.Evidence)
		}
	}
}

const tcgSaid = "the vm class ran under TCG here, so it is emulated too"

var cpuWorkloads = []string{probe.CPUInt, probe.CPUFloat, probe.CPUHash}

// pairedRounds sets a class's workload in each round so that its ratio to
// native in round i is ratios[i].
func pairedRounds(r *Report, class, name string, ratios ...float64) {
	native := roundValues(*r.FindClass(Native), name)
	values := make([]float64, len(ratios))
	for i, x := range ratios {
		values[i] = native[i] * x
		if lowerIsBetter[name] {
			values[i] = native[i] / x
		}
	}
	setRounds(r, class, name, values...)
}

func TestClaimsUnderTCG(t *testing.T) {
	r := fullReport()
	if n := len(Claims(r)); n != 7 {
		t.Fatalf("%d claims, want 7", n)
	}
	for _, c := range Claims(r) {
		if c.Statement == "" || c.Evidence == "" {
			t.Errorf("claim %s has no statement or evidence: %+v", c.ID, c)
		}
		if strings.Contains(c.Evidence, "despite doubt") || strings.Contains(c.Evidence, "inconclusive") {
			t.Errorf("claim %s doubts a quiet host's report: %s", c.ID, c.Evidence)
		}
	}
	expect(t, r, ClaimContainerNative, Confirmed, "cpu.int 0.98× [0.97, 0.99]", "cpu.float 0.99× [0.98, 1.00]", "the lowest is 0.98×")
	expect(t, r, ClaimDensity, Confirmed, "3.00 MiB", "230 MiB", "76.7×", "no interval", tcgSaid)
	expect(t, r, ClaimEmulationSlow, Confirmed, "emulation (aarch64) CPU 0.032× [0.032, 0.033] of native", "is not compared", tcgSaid)
	// Under TCG the vm is no hardware virtualization: not measured, with
	// the numbers and the reason.
	expect(t, r, ClaimVMDisk, NotMeasured, "disk 0.37× [0.37, 0.38] of native", "hardware virtualization was not measured", "kvm_pvm")
	expect(t, r, ClaimBoot, Confirmed, "container 18.0 ms [16.2, 21.6]", "vm 1430 ms [1287, 1716]", tcgSaid)
}

func TestClaimsUnderKVM(t *testing.T) {
	r := kvmReport()
	expect(t, r, ClaimVMDisk, Confirmed, "disk at 0.34× of CPU", "vm CPU 0.96× [0.95, 0.97]")
	expect(t, r, ClaimEmulationSlow, Confirmed, "the vm (kvm) CPU 0.96× [0.95, 0.97] of native")
	for _, c := range Claims(r) {
		if strings.Contains(c.Evidence, "TCG") {
			t.Errorf("%s speaks of TCG on a KVM host: %s", c.ID, c.Evidence)
		}
	}

	// A disk as fast as native refutes "disk I/O suffers".
	for _, name := range []string{probe.DiskSeqWrite, probe.DiskSeqRead, probe.DiskRandRead} {
		setFigure(r, VM, name, nativeFigures[name]*0.95)
	}
	setFigure(r, VM, probe.DiskFsync, 210)
	expect(t, r, ClaimVMDisk, Refuted, "disk 0.95× [0.94, 0.96] of native", "refuted: vm disk/CPU's interval [0.97, 1.01] lies above 0.70×")

	// A vm CPU below near-native refutes it too, whatever the disk.
	r = kvmReport()
	for _, name := range cpuWorkloads {
		setFigure(r, VM, name, nativeFigures[name]*0.6)
	}
	expect(t, r, ClaimVMDisk, Refuted, "vm CPU's interval [0.59, 0.61] lies below 0.80×")

	// A vm CPU whose interval straddles 0.80 decides nothing.
	r = kvmReport()
	for _, name := range cpuWorkloads {
		pairedRounds(r, VM, name, 0.70, 0.90, 0.80, 0.74, 0.86)
	}
	expect(t, r, ClaimVMDisk, Inconclusive, "inconclusive: vm CPU's interval", "straddles 0.80×")

	// A vm that failed a disk workload leaves the claim unmeasured.
	r = kvmReport()
	vm := r.FindClass(VM)
	vm.Probe.Results[7] = probe.Result{Name: probe.DiskSeqRead, Unit: "MiB/s", HigherIsBetter: true, Error: "read: input/output error"}
	expect(t, r, ClaimVMDisk, NotMeasured, "vm disk.seq_read failed: read: input/output error")
}

func TestClaimContainerNativePaths(t *testing.T) {
	// Refuted: cpu.float's whole interval below 0.90.
	r := fullReport()
	setFigure(r, Container, probe.CPUFloat, 560) // 0.70× of native
	expect(t, r, ClaimContainerNative, Refuted, "the lowest is 0.70×", "refuted: container cpu.float's interval [0.69, 0.71] lies below 0.90×")

	// Inconclusive: an interval that straddles 0.90.
	r = fullReport()
	pairedRounds(r, Container, probe.CPUFloat, 0.82, 0.97, 0.90, 0.86, 0.94)
	expect(t, r, ClaimContainerNative, Inconclusive, "inconclusive: container cpu.float's interval [0.8", "straddles 0.90×")

	// Inconclusive: a container faster than its host is noise, named.
	r = fullReport()
	setFigure(r, Container, probe.CPUInt, 1150)
	expect(t, r, ClaimContainerNative, Inconclusive, "cpu.int 1.15× [1.14, 1.16] (noise)",
		"inconclusive: container cpu.int is noise: faster than its host beyond its interval [1.14, 1.16]: noise, not a result")

	// Noise says this run's intervals did not hold the noise: not even a
	// workload that reads clearly slow decides the claim then.
	setFigure(r, Container, probe.CPUFloat, 560)
	expect(t, r, ClaimContainerNative, Inconclusive, "inconclusive: container cpu.int is noise", "container cpu.float's interval [0.69, 0.71] lies below 0.90×")

	// Inconclusive: on a busy host, 0.98× [0.97, 0.99] widened by 10 %
	// straddles 0.90.
	r = fullReport()
	busy(r)
	expect(t, r, ClaimContainerNative, Inconclusive, "straddles 0.90×",
		"load samples, other work up to 85% of the CPUs): intervals widened by 10 %")
	// ... while a clear refutation stands, and says it was busy.
	setFigure(r, Container, probe.CPUFloat, 400)
	expect(t, r, ClaimContainerNative, Refuted, "lies below 0.90×", "decided despite doubt: the host was not quiet")

	// Confirmed: on a quiet host native's own scatter between rounds is
	// what the paired ratio cancels; it widens nothing.
	r = fullReport()
	setRounds(r, Native, probe.CPUHash, 1500, 1350, 1650, 1500, 1500)
	pairedRounds(r, Container, probe.CPUHash, 0.98, 0.98, 0.98, 0.98, 0.98)
	expect(t, r, ClaimContainerNative, Confirmed, "cpu.sha256 0.98× [0.98, 0.98]")
	// Inconclusive: on a busy host native varied 20 % between rounds, so
	// the pairing is doubted and the interval widened by that.
	busy(r)
	expect(t, r, ClaimContainerNative, Inconclusive, "native cpu.sha256 varied 20 % between rounds", "container cpu.sha256's interval [0.82, 1.18] straddles 0.90×")

	// Inconclusive: an interval on two paired rounds (the others failed).
	r = fullReport()
	nan := math.NaN()
	setRounds(r, Container, probe.CPUInt, 980, 970, nan, nan, nan)
	expect(t, r, ClaimContainerNative, Inconclusive, "container cpu.int's interval stands on 2 paired rounds (3 needed)")

	// Inconclusive: a version 1 report has no intervals at all.
	expect(t, oldReport(), ClaimContainerNative, Inconclusive, "cpu.int 0.98×", noIntervals)

	// Not measured: a failed workload.
	r = fullReport()
	r.FindClass(Container).Probe.Results[1] = probe.Result{Name: probe.CPUFloat, Unit: "Mflops/s", HigherIsBetter: true, Error: "signal: killed"}
	expect(t, r, ClaimContainerNative, NotMeasured, "container cpu.float failed: signal: killed")
}

func TestClaimDensityPaths(t *testing.T) {
	r := fullReport()
	r.FindClass(Container).Density.PerGuestBytes = 200 * mib
	expect(t, r, ClaimDensity, Refuted, "1.15×", "lies below 4.00×")

	// Without an interval, a factor of 4.33 decides on a quiet host ...
	r = fullReport()
	r.FindClass(VM).Density.PerGuestBytes = 13 * mib
	expect(t, r, ClaimDensity, Confirmed, "4.33×")
	// ... and not on a busy one, where other work grew the host's memory too.
	busy(r)
	expect(t, r, ClaimDensity, Inconclusive, "vm/container memory's interval [3.58, 5.24] straddles 4.00×", "the host was not quiet")
	// A factor of 77 decides even then.
	r = fullReport()
	busy(r)
	expect(t, r, ClaimDensity, Confirmed, "76.7×", "decided despite doubt: the host was not quiet")

	r = brokenReport()
	expect(t, r, ClaimDensity, NotMeasured, "container density.per_guest failed: guest 4")
}

func TestClaimEmulationSlowPaths(t *testing.T) {
	// Emulation at half of native is slow, not painfully.
	r := fullReport()
	for _, name := range cpuWorkloads {
		setFigure(r, Emulation, name, nativeFigures[name]/2)
	}
	expect(t, r, ClaimEmulationSlow, Refuted, "CPU 0.50× [0.49, 0.51] of native", "emulation CPU's interval [0.49, 0.51] lies above 0.25×")

	// Around a quarter of native, the interval decides nothing.
	r = fullReport()
	for _, name := range cpuWorkloads {
		pairedRounds(r, Emulation, name, 0.25, 0.22, 0.28, 0.24, 0.26)
	}
	expect(t, r, ClaimEmulationSlow, Inconclusive, "emulation CPU's interval", "straddles 0.25×")

	// Emulation faster than its host is noise.
	r = fullReport()
	setFigure(r, Emulation, probe.CPUHash, 1800)
	expect(t, r, ClaimEmulationSlow, Inconclusive, "emulation cpu.sha256 is noise: faster than its host beyond its interval [1.19, 1.21]")

	expect(t, oldReport(), ClaimEmulationSlow, Inconclusive, noIntervals)

	// Under KVM, emulation must also be well below the vm.
	r = kvmReport()
	for _, name := range cpuWorkloads {
		setFigure(r, VM, name, nativeFigures[name]*0.04)
	}
	expect(t, r, ClaimEmulationSlow, Refuted, "emulation is 0.80× of it", "emulation/vm CPU's interval [0.79, 0.82] lies above 0.50×")
	// ... and at about half of the vm, that decides nothing.
	r = kvmReport()
	for _, name := range cpuWorkloads {
		pairedRounds(r, VM, name, 0.055, 0.065, 0.075, 0.06, 0.07)
	}
	expect(t, r, ClaimEmulationSlow, Inconclusive, "emulation/vm CPU's interval", "straddles 0.50×")

	r = brokenReport()
	expect(t, r, ClaimEmulationSlow, NotMeasured, "the report has no emulation class")
	// Under KVM, emulation needs the vm to compare with.
	r = kvmReport()
	r.FindClass(VM).Probe, r.FindClass(VM).ProbeError = nil, "vm did not answer"
	expect(t, r, ClaimEmulationSlow, NotMeasured, "no vm to compare with", "vm did not answer")
}

func TestClaimBootPaths(t *testing.T) {
	r := fullReport()
	setLifecycle(r, Container, Boot, 1200, 1300, 1400)
	expect(t, r, ClaimBoot, Refuted, "container 1300 ms", "vm/container boot's interval", "lies below 1.50×")

	// A container boot that ranged from 700 to 1300 ms cannot be told
	// 1.5 times faster than the vm's 1430 ms, nor not.
	r = fullReport()
	setLifecycle(r, Container, Boot, 700, 720, 1000, 1280, 1300)
	expect(t, r, ClaimBoot, Inconclusive, "vm/container boot's interval", "straddles 1.50×")

	// Two runs are too few for an interval.
	r = fullReport()
	setLifecycle(r, VM, Boot, 1400, 1460)
	expect(t, r, ClaimBoot, Inconclusive, "vm lifecycle.boot's interval stands on 2 runs (3 needed)")

	// A version 1 report kept its boot runs: their interval decides.
	expect(t, oldReport(), ClaimBoot, Confirmed, "container 18.0 ms [16.2, 21.6]", "the host's load was not recorded")

	r = brokenReport()
	expect(t, r, ClaimBoot, NotMeasured, "qemu-system-x86_64 not found")
}

func TestClaimsNotMeasured(t *testing.T) {
	r := brokenReport()
	expect(t, r, ClaimVMDisk, NotMeasured, "qemu-system-x86_64 not found")

	// Nor from a class without a native counterpart.
	r = fullReport()
	r.Classes[0].Probe, r.Classes[0].ProbeError = nil, "probe binary missing"
	expect(t, r, ClaimContainerNative, NotMeasured, "native cpu.int failed: probe binary missing")

	// A report without the class at all.
	r = fullReport()
	r.Classes = r.Classes[:1]
	for _, c := range Claims(r) {
		if c.Verdict != NotMeasured || !strings.Contains(c.Evidence, "the report has no") {
			t.Errorf("native-only report: %s is %s: %s", c.ID, c.Verdict, c.Evidence)
		}
	}
}

// TestClaimsOnABusyHostNeverDecideWhatTheIntervalsDoNot is the issue's
// noisy host: native varies between rounds, the container's paired ratios
// scatter around 1 and one of its CPU workloads reads faster than native.
func TestClaimsOnABusyHostNeverDecideWhatTheIntervalsDoNot(t *testing.T) {
	r := fullReport()
	busy(r)
	for _, name := range cpuWorkloads {
		base := nativeFigures[name]
		setRounds(r, Native, name, base, base*0.75, base*1.1, base*0.9, base)
	}
	pairedRounds(r, Container, probe.CPUInt, 1.28, 1.2, 1.31, 1.25, 1.22)
	pairedRounds(r, Container, probe.CPUFloat, 0.77, 0.99, 0.93, 1.1, 0.85)
	expect(t, r, ClaimContainerNative, Inconclusive, "container cpu.int is noise", "native cpu.int varied 35 % between rounds", "the host was not quiet")
	row, _ := FindRow(Rows(r), probe.CPUInt)
	if c := row.Cell(Container); c.Noise == "" {
		t.Errorf("container cpu.int at 1.25× not flagged as noise: %+v", c)
	}
}

// withNewClasses is fullReport with a chroot jail and a UML guest, at
// figures like this host's: the jail native in every workload, UML
// native in CPU work and dozens of times slower in kernel entries.
func withNewClasses() *Report {
	r := fullReport()
	jail := maps.Clone(containerFigures)
	jail[probe.Syscall], jail[probe.ProcSpawn] = 61, 520
	uml := maps.Clone(containerFigures)
	uml[probe.Syscall], uml[probe.ProcSpawn] = 6000, 25000
	r.Classes = append(r.Classes,
		measuredClass(Class{Name: Chroot, Label: "chroot", Arch: "x86_64", Works: true, Lifecycle: lifecycle(25, 12, 8, 7)}, jail),
		measuredClass(Class{Name: UML, Label: "uml", Arch: "x86_64", Works: true, Lifecycle: lifecycle(40, 1800, 300, 10)}, uml))
	return r
}

func TestClaimJailNativePaths(t *testing.T) {
	expect(t, fullReport(), ClaimJailNative, NotMeasured, "the report has no chroot class")
	r := withNewClasses()
	expect(t, r, ClaimJailNative, Confirmed, "chroot CPU workloads cpu.int 0.98×", "syscall chroot syscall.getppid 0.98×", ", container syscall.getppid 0.97×", "no pid, network, UTS, IPC, user or cgroup namespace")
	setFigure(r, Chroot, probe.CPUInt, 500)
	expect(t, r, ClaimJailNative, Refuted, "chroot cpu.int's interval [0.50, 0.51] lies below 0.90×")
}

func TestClaimUMLSyscallsPaths(t *testing.T) {
	expect(t, fullReport(), ClaimUMLSyscalls, NotMeasured, "the report has no uml class")
	r := withNewClasses()
	expect(t, r, ClaimUMLSyscalls, Confirmed, "uml CPU 0.98×", "syscall.getppid 0.01×", "proc.spawn 0.02×")
	// Refuted when the kernel entries cost nothing...
	setFigure(r, UML, probe.Syscall, 62)
	expect(t, r, ClaimUMLSyscalls, Refuted, "uml syscall.getppid's interval")
	// ...or when the CPU work is slow too.
	r = withNewClasses()
	setFigure(r, UML, probe.CPUFloat, 300)
	expect(t, r, ClaimUMLSyscalls, Refuted, "uml CPU's interval")
}
