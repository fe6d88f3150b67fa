package benchreport

import (
	"math"
	"slices"
	"time"

	"github.com/polyvisor/polyvisor/internal/evaluation/probe"
)

// Figures of the fixtures: plausible for a 2-core x86_64 host without
// working KVM, in the probe's units.
var (
	nativeFigures = map[string]float64{
		probe.CPUInt: 1000, probe.CPUFloat: 800, probe.CPUHash: 1500, probe.MemCopy: 9000,
		probe.Syscall: 60, probe.ProcSpawn: 500,
		probe.DiskSeqWrite: 1000, probe.DiskSeqRead: 2000, probe.DiskRandRead: 50000, probe.DiskFsync: 200,
	}
	containerFigures = map[string]float64{
		probe.CPUInt: 980, probe.CPUFloat: 790, probe.CPUHash: 1470, probe.MemCopy: 8800,
		probe.Syscall: 62, probe.ProcSpawn: 600,
		probe.DiskSeqWrite: 950, probe.DiskSeqRead: 1900, probe.DiskRandRead: 48000, probe.DiskFsync: 210,
	}
	tcgVMFigures = map[string]float64{
		probe.CPUInt: 60, probe.CPUFloat: 30, probe.CPUHash: 90, probe.MemCopy: 1500,
		probe.Syscall: 900, probe.ProcSpawn: 20000,
		probe.DiskSeqWrite: 720, probe.DiskSeqRead: 1000, probe.DiskRandRead: 12000, probe.DiskFsync: 900,
	}
	emulationFigures = map[string]float64{
		probe.CPUInt: 40, probe.CPUFloat: 20, probe.CPUHash: 50, probe.MemCopy: 900,
		probe.Syscall: 1500, probe.ProcSpawn: 40000,
		probe.DiskSeqWrite: 500, probe.DiskSeqRead: 700, probe.DiskRandRead: 8000, probe.DiskFsync: 1500,
	}
	// kvmVMFigures are a KVM guest's: near native but for the disk.
	kvmVMFigures = map[string]float64{
		probe.CPUInt: 960, probe.CPUFloat: 770, probe.CPUHash: 1440, probe.MemCopy: 8000,
		probe.Syscall: 70, probe.ProcSpawn: 900,
		probe.DiskSeqWrite: 400, probe.DiskSeqRead: 700, probe.DiskRandRead: 12000, probe.DiskFsync: 600,
	}
)

// workloadOrder and units are the probe's workloads, as it prints them.
var (
	workloadOrder = []string{
		probe.CPUInt, probe.CPUFloat, probe.CPUHash, probe.MemCopy, probe.Syscall, probe.ProcSpawn,
		probe.DiskSeqWrite, probe.DiskSeqRead, probe.DiskRandRead, probe.DiskFsync,
	}
	units = map[string]string{
		probe.CPUInt: "Mops/s", probe.CPUFloat: "Mflops/s", probe.CPUHash: "MiB/s", probe.MemCopy: "MiB/s",
		probe.Syscall: "ns", probe.ProcSpawn: "µs",
		probe.DiskSeqWrite: "MiB/s", probe.DiskSeqRead: "MiB/s", probe.DiskRandRead: "IOPS", probe.DiskFsync: "µs",
	}
	lowerIsBetter = map[string]bool{probe.Syscall: true, probe.ProcSpawn: true, probe.DiskFsync: true}
)

func probeOutput(arch string, figures map[string]float64) *probe.Output {
	summary, _ := measuredRounds(arch, figures, steady)
	return summary
}

// drift is the host's speed in each fixture round, the same for every
// class in that round: load that came and went between rounds, which the
// paired ratios cancel.
var drift = []float64{1.00, 0.96, 1.04, 0.98, 1.02}

// Jitter is a class's own noise in each round: its ratio to native in a
// round is its figure's ratio times that round's jitter. Native has none.
var (
	steady = []float64{1, 1, 1, 1, 1}
	jitter = []float64{1.00, 1.01, 0.99, 1.005, 0.995}
)

// measuredRounds is a class's probe in each round of drift, and their
// summary: each result's median of the rounds is figures' value.
func measuredRounds(arch string, figures map[string]float64, jitter []float64) (*probe.Output, []Round) {
	output := func() *probe.Output {
		return &probe.Output{Probe: "polyvisor-probe", Version: 1, Size: probe.SizeQuick, Arch: arch, Kernel: "6.1.0-18-amd64", CPUs: 2}
	}
	summary := output()
	rounds := make([]Round, len(drift))
	for i := range rounds {
		rounds[i].Probe = output()
	}
	for _, name := range workloadOrder {
		v := figures[name]
		res := probe.Result{Name: name, Unit: units[name], HigherIsBetter: !lowerIsBetter[name]}
		for i, d := range drift {
			x := v * d * jitter[i] // faster host, more work per second
			if lowerIsBetter[name] {
				x = v / (d * jitter[i]) // faster host, less time per operation
			}
			res.Runs = append(res.Runs, x)
			rounds[i].Probe.Results = append(rounds[i].Probe.Results, probe.Result{
				Name: name, Unit: res.Unit, HigherIsBetter: res.HigherIsBetter, Median: x, Min: x * 0.99, Max: x * 1.01, Runs: []float64{x * 0.99, x, x * 1.01},
			})
		}
		res.Median, res.Min, res.Max = Median(res.Runs), slices.Min(res.Runs), slices.Max(res.Runs)
		summary.Results = append(summary.Results, res)
	}
	return summary, rounds
}

// measuredClass is a class measured in every round.
func measuredClass(c Class, figures map[string]float64) Class {
	j := jitter
	if c.Name == Native {
		j = steady
	}
	c.Probe, c.Rounds = measuredRounds(c.Arch, figures, j)
	return c
}

func lifecycle(provision, boot, stop, del float64) []Figure {
	f := func(name string, v float64) Figure {
		return Figure{Name: name, Unit: "ms", Median: v, Min: v * 0.9, Max: v * 1.2, Runs: []float64{v * 0.9, v, v * 1.2}}
	}
	return []Figure{f(Provision, provision), f(Boot, boot), f(Stop, stop), f(Delete, del)}
}

const mib = 1 << 20

// fullReport is native, container, vm under TCG and aarch64 emulation,
// everything measured in five rounds on a quiet host.
func fullReport() *Report {
	return &Report{
		Version:    Version,
		CreatedAt:  time.Date(2025, 3, 14, 9, 26, 53, 0, time.UTC),
		Command:    "polyvisor bench --classes container,vm,emulation",
		Size:       probe.SizeQuick,
		Rounds:     len(drift),
		StopReason: "intervals within ±3 %",
		Load: &HostLoad{Quiet: true, Samples: []LoadSample{
			{At: time.Date(2025, 3, 14, 9, 20, 0, 0, time.UTC), Phase: "before", Load1: 0.12, Busy: 0.02},
			{At: time.Date(2025, 3, 14, 9, 23, 0, 0, time.UTC), Phase: "after round 1", Load1: 0.9, Busy: 0.03},
		}},
		Host: Host{
			Hostname: "lab1", Kernel: "6.1.0-18-amd64", Arch: "x86_64", CPUModel: "Intel Xeon Platinum 8480+",
			CPUs: 2, MemoryBytes: 24 << 30,
			Versions:    map[string]string{"polyvisor": "0.1.0", "qemu": "7.2.0", "runc": "1.1.5"},
			Accel:       "tcg",
			AccelReason: "the KVM canary guest failed: /dev/kvm is kvm_pvm, which runs only PVM guest kernels",
		},
		Classes: []Class{
			measuredClass(Class{Name: Native, Label: "native (x86_64)", Arch: "x86_64", Works: true}, nativeFigures),
			measuredClass(Class{
				Name: Container, Label: "container (runc)", Arch: "x86_64", Works: true,
				Lifecycle: lifecycle(30, 18, 10, 8),
				Density:   &Density{Guests: 16, BudgetBytes: 2 << 30, PerGuestBytes: 3 * mib},
			}, containerFigures),
			measuredClass(Class{
				Name: VM, Label: "vm (TCG: KVM canary failed)", Arch: "x86_64", Accel: "tcg", Works: true,
				Lifecycle: lifecycle(80, 1430, 300, 20),
				Density:   &Density{Guests: 2, BudgetBytes: 2 << 30, PerGuestBytes: 230 * mib},
			}, tcgVMFigures),
			measuredClass(Class{
				Name: Emulation, Label: "emulation (aarch64 on x86_64, TCG)", Arch: "aarch64", Accel: "tcg", Works: true,
				Lifecycle: lifecycle(90, 5200, 400, 20),
				Density:   &Density{Guests: 2, BudgetBytes: 2 << 30, PerGuestBytes: 260 * mib},
			}, emulationFigures),
		},
	}
}

// oldReport is fullReport as schema version 1 wrote it: one probe per
// class, no rounds, no load.
func oldReport() *Report {
	r := fullReport()
	r.Version, r.Rounds, r.StopReason, r.Load = 1, 0, "", nil
	for i := range r.Classes {
		r.Classes[i].Rounds = nil
	}
	return r
}

// brokenReport has a failed workload (the container's fsync), a failed
// density run, and a vm class that does not work on the host.
func brokenReport() *Report {
	r := fullReport()
	ct := r.FindClass(Container)
	for i := range ct.Probe.Results {
		if res := &ct.Probe.Results[i]; res.Name == probe.DiskFsync {
			*res = probe.Result{Name: res.Name, Unit: res.Unit, Error: "fsync /var/tmp/probe: input/output error"}
		}
	}
	ct.Density = &Density{Guests: 3, Error: "guest 4: runc create: cgroup memory limit exceeded"}
	r.Classes[2] = Class{
		Name: VM, Label: "vm", Works: false,
		Reason: "qemu-system-x86_64 not found: run make deps",
	}
	r.Classes = r.Classes[:3] // no emulation class
	return r
}

// kvmReport is fullReport on a host where KVM works: the vm is hardware
// virtualization.
func kvmReport() *Report {
	r := fullReport()
	r.Host.Accel, r.Host.AccelReason = "kvm", "the KVM canary guest booted in 0.4 s"
	vm := r.FindClass(VM)
	vm.Accel, vm.Label = "kvm", "vm (KVM)"
	vm.Probe, vm.Rounds = measuredRounds("x86_64", kvmVMFigures, jitter)
	vm.Lifecycle = lifecycle(80, 350, 120, 20)
	return r
}

// setFigure changes one workload of a class to v: its summary and every
// round by the same factor, so its ratio to native changes by it.
func setFigure(r *Report, class, name string, v float64) {
	c := r.FindClass(class)
	scale := func(results []probe.Result, factor float64) {
		for i := range results {
			if res := &results[i]; res.Name == name {
				res.Median, res.Min, res.Max = res.Median*factor, res.Min*factor, res.Max*factor
				for j := range res.Runs {
					res.Runs[j] *= factor
				}
			}
		}
	}
	for _, res := range c.Probe.Results {
		if res.Name == name {
			factor := v / res.Median
			scale(c.Probe.Results, factor)
			for _, round := range c.Rounds {
				scale(round.Probe.Results, factor)
			}
			return
		}
	}
}

// setRounds sets one workload of a class in each round to values; NaN
// fails that round's result.
func setRounds(r *Report, class, name string, values ...float64) {
	c := r.FindClass(class)
	for i, v := range values {
		for j := range c.Rounds[i].Probe.Results {
			if res := &c.Rounds[i].Probe.Results[j]; res.Name == name {
				if math.IsNaN(v) {
					*res = probe.Result{Name: name, Unit: res.Unit, HigherIsBetter: res.HigherIsBetter, Error: "signal: killed"}
				} else {
					res.Median = v
				}
			}
		}
	}
}

// setLifecycle replaces one lifecycle figure of a class by runs.
func setLifecycle(r *Report, class, name string, runs ...float64) {
	c := r.FindClass(class)
	for i := range c.Lifecycle {
		if c.Lifecycle[i].Name == name {
			c.Lifecycle[i] = Figure{Name: name, Unit: "ms", Median: Median(runs), Min: slices.Min(runs), Max: slices.Max(runs), Runs: runs}
		}
	}
}

// busy marks the report's host as not quiet.
func busy(r *Report) {
	r.Load.Quiet = false
	r.Load.Samples = append(r.Load.Samples, LoadSample{Phase: "after round 2", Load1: 3.1, Busy: 0.85, Top: []string{"make (4242) 85%"}})
	r.Load.Warnings = []string{"after round 2, other work kept 85% of the CPUs busy (make (4242) 85%)", "after round 3, the hypervisor under this host took 12% of the CPUs (steal)"}
}
