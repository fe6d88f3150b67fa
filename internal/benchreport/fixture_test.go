package benchreport

import (
	"time"

	"github.com/polyvisor/polyvisor/internal/probe"
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
	o := &probe.Output{Probe: "polyvisor-probe", Version: 1, Size: probe.SizeQuick, Arch: arch, Kernel: "6.1.0-18-amd64", CPUs: 2}
	for _, name := range workloadOrder {
		v := figures[name]
		o.Results = append(o.Results, probe.Result{
			Name: name, Unit: units[name], HigherIsBetter: !lowerIsBetter[name],
			Median: v, Min: v * 0.97, Max: v * 1.04, Runs: []float64{v * 0.97, v, v * 1.04},
		})
	}
	return o
}

func lifecycle(provision, boot, stop, del float64) []Figure {
	f := func(name string, v float64) Figure {
		return Figure{Name: name, Unit: "ms", Median: v, Min: v * 0.9, Max: v * 1.2, Runs: []float64{v * 0.9, v, v * 1.2}}
	}
	return []Figure{f(Provision, provision), f(Boot, boot), f(Stop, stop), f(Delete, del)}
}

const mib = 1 << 20

// fullReport is native, container, vm under TCG and aarch64 emulation,
// everything measured.
func fullReport() *Report {
	return &Report{
		Version:   Version,
		CreatedAt: time.Date(2025, 3, 14, 9, 26, 53, 0, time.UTC),
		Command:   "polyvisor bench --classes container,vm,emulation",
		Size:      probe.SizeQuick,
		Host: Host{
			Hostname: "lab1", Kernel: "6.1.0-18-amd64", Arch: "x86_64", CPUModel: "Intel Xeon Platinum 8480+",
			CPUs: 2, MemoryBytes: 24 << 30,
			Versions:    map[string]string{"polyvisor": "0.1.0", "qemu": "7.2.0", "runc": "1.1.5"},
			Accel:       "tcg",
			AccelReason: "the KVM canary guest failed: /dev/kvm is kvm_pvm, which runs only PVM guest kernels",
		},
		Classes: []Class{
			{Name: Native, Label: "native (x86_64)", Arch: "x86_64", Works: true, Probe: probeOutput("x86_64", nativeFigures)},
			{
				Name: Container, Label: "container (runc)", Arch: "x86_64", Works: true,
				Probe:     probeOutput("x86_64", containerFigures),
				Lifecycle: lifecycle(30, 18, 10, 8),
				Density:   &Density{Guests: 16, BudgetBytes: 2 << 30, PerGuestBytes: 3 * mib},
			},
			{
				Name: VM, Label: "vm (TCG: KVM canary failed)", Arch: "x86_64", Accel: "tcg", Works: true,
				Probe:     probeOutput("x86_64", tcgVMFigures),
				Lifecycle: lifecycle(80, 1430, 300, 20),
				Density:   &Density{Guests: 2, BudgetBytes: 2 << 30, PerGuestBytes: 230 * mib},
			},
			{
				Name: Emulation, Label: "emulation (aarch64 on x86_64, TCG)", Arch: "aarch64", Accel: "tcg", Works: true,
				Probe:     probeOutput("aarch64", emulationFigures),
				Lifecycle: lifecycle(90, 5200, 400, 20),
				Density:   &Density{Guests: 2, BudgetBytes: 2 << 30, PerGuestBytes: 260 * mib},
			},
		},
	}
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
	vm.Probe = probeOutput("x86_64", kvmVMFigures)
	vm.Lifecycle = lifecycle(80, 350, 120, 20)
	return r
}

// setFigure changes one workload's median in a class.
func setFigure(r *Report, class, name string, v float64) {
	c := r.FindClass(class)
	for i := range c.Probe.Results {
		if c.Probe.Results[i].Name == name {
			c.Probe.Results[i].Median = v
		}
	}
}
