package benchreport

import (
	"errors"
	"strings"
	"testing"

	"github.com/polyvisor/polyvisor/internal/evaluation/probe"
	"github.com/polyvisor/polyvisor/pkg/api"
)

func advise(t *testing.T, r *Report, n Needs) Advice {
	t.Helper()
	a, err := Advise(r, n)
	if err != nil {
		t.Fatalf("Advise(%+v): %v", n, err)
	}
	return a
}

func contains(t *testing.T, what string, lines []string, want string) {
	t.Helper()
	for _, l := range lines {
		if strings.Contains(l, want) {
			return
		}
	}
	t.Errorf("%s lack %q: %q", what, want, lines)
}

func TestAdviseLinuxByPriority(t *testing.T) {
	r := fullReport()
	cases := map[string]string{
		PriorityCPU:       Container, // 0.98× against the TCG vm's 0.05×
		PriorityDisk:      Container,
		PriorityBoot:      Container, // 18 ms against 1430 ms
		PriorityDensity:   Container, // 3 MiB against 230 MiB
		PriorityIsolation: VM,        // a separate kernel, though slower here
	}
	for priority, want := range cases {
		a := advise(t, r, Needs{GuestOS: OSLinux, Priority: priority})
		if a.Class != want {
			t.Errorf("linux, %s: %s, want %s (reasons %q)", priority, a.Class, want, a.Reasons)
		}
		if _, ok := a.Refused[Emulation]; !ok {
			t.Errorf("linux on the host's arch, %s: emulation not refused: %v", priority, a.Refused)
		}
		if len(a.Tradeoffs) != 1 {
			t.Errorf("linux, %s: tradeoffs %q, want one for the other class that fits", priority, a.Tradeoffs)
		}
	}

	a := advise(t, r, Needs{Priority: PriorityCPU})
	contains(t, "reasons", a.Reasons, "cpu 0.98× [0.97, 0.99] of native (cpu.int 0.98× [0.97, 0.99], cpu.float 0.99× [0.98, 1.00]")
	contains(t, "reasons", a.Reasons, "boot 18.0 ms [16.2, 21.6]")
	contains(t, "tradeoffs", a.Tradeoffs, "vm: cpu 0.051× [0.051, 0.052] of native")
	for _, l := range a.Reasons {
		if strings.Contains(l, "inconclusive") || strings.Contains(l, "not decided") {
			t.Errorf("0.98× against 0.051× called undecided: %q", l)
		}
	}

	a = advise(t, r, Needs{Priority: PriorityIsolation})
	contains(t, "reasons", a.Reasons, "separate guest kernel")
	contains(t, "reasons", a.Reasons, "VMs run under TCG on this host")
	contains(t, "tradeoffs", a.Tradeoffs, "container: cpu 0.98× [0.97, 0.99] of native")
}

func TestAdviseWindowsNeverContainer(t *testing.T) {
	r := fullReport()
	for _, os := range []string{OSWindows, OSOther} {
		for _, priority := range []string{PriorityCPU, PriorityDensity, PriorityBoot, PriorityDisk, PriorityIsolation} {
			a := advise(t, r, Needs{GuestOS: os, Priority: priority})
			if a.Class == Container {
				t.Errorf("%s, %s: a container recommended", os, priority)
			}
			if a.Class != VM {
				t.Errorf("%s, %s: %s, want vm", os, priority, a.Class)
			}
			if why := a.Refused[Container]; !strings.Contains(why, "shares the host's Linux kernel") || !strings.Contains(why, os) {
				t.Errorf("%s: container refused with %q", os, why)
			}
		}
	}
}

func TestAdviseForeignArch(t *testing.T) {
	r := fullReport()
	for _, arch := range []string{"aarch64", "arm64", "riscv64", "s390x"} {
		a := advise(t, r, Needs{GuestOS: OSLinux, Arch: arch, Priority: PriorityCPU})
		if a.Class != Emulation {
			t.Errorf("%s guest: %s, want emulation", arch, a.Class)
		}
		for _, c := range []string{Container, VM} {
			if !strings.Contains(a.Refused[c], "needs emulation") {
				t.Errorf("%s guest: %s refused with %q", arch, c, a.Refused[c])
			}
		}
		if len(a.Tradeoffs) != 0 {
			t.Errorf("%s guest: tradeoffs %q with nothing else fitting", arch, a.Tradeoffs)
		}
	}
	a := advise(t, r, Needs{Arch: "riscv64"})
	contains(t, "reasons", a.Reasons, "measured with a aarch64 guest; riscv64 runs under the same TCG")
	a = advise(t, r, Needs{Arch: "amd64"}) // the host's, in Debian's words
	if a.Class != Container {
		t.Errorf("amd64 on an x86_64 host: %s, want container", a.Class)
	}
}

func TestAdviseCountBeyondMemory(t *testing.T) {
	r := fullReport() // 24 GiB, 1 GiB kept: 102 vms of 230 MiB, 7850 containers of 3 MiB
	a := advise(t, r, Needs{GuestOS: OSLinux, Priority: PriorityIsolation, Count: 200})
	if a.Class != Container {
		t.Errorf("200 isolated guests: %s, want container (200 vms do not fit)", a.Class)
	}
	if why := a.Refused[VM]; !strings.Contains(why, "200 guests at 230 MiB each need 44.9 GiB") || !strings.Contains(why, "holds 102") {
		t.Errorf("vm refused with %q", why)
	}
	contains(t, "reasons", a.Reasons, "200 guests need 600 MiB of host memory; up to 7850 fit")

	a = advise(t, r, Needs{GuestOS: OSWindows, Count: 100})
	if a.Class != VM {
		t.Errorf("100 windows guests: %s, want vm (102 fit)", a.Class)
	}

	a, err := Advise(r, Needs{GuestOS: OSWindows, Count: 103})
	if !errors.Is(err, api.ErrNotAvailable) || a.Class != "" {
		t.Fatalf("103 windows guests: %q, %v; want no class and a not-available error", a.Class, err)
	}
	for _, c := range []string{Container, VM, Emulation} {
		if a.Refused[c] == "" {
			t.Errorf("103 windows guests: %s not refused: %v", c, a.Refused)
		}
	}
	if !strings.Contains(err.Error(), "holds 102") {
		t.Errorf("error does not say why: %v", err)
	}
}

func TestAdviseRefusesClassesThatDoNotWork(t *testing.T) {
	r := brokenReport()
	a := advise(t, r, Needs{Priority: PriorityIsolation, Count: 5})
	if a.Class != Container {
		t.Errorf("isolation without a working vm: %s, want container", a.Class)
	}
	if a.Refused[VM] != "does not work on this host: qemu-system-x86_64 not found: run make deps" {
		t.Errorf("vm refused with %q", a.Refused[VM])
	}
	contains(t, "reasons", a.Reasons, "though it shares the host's kernel")
	contains(t, "reasons", a.Reasons, "density was not measured")

	_, err := Advise(r, Needs{GuestOS: OSWindows})
	if !errors.Is(err, api.ErrNotAvailable) || !strings.Contains(err.Error(), "qemu-system-x86_64 not found") {
		t.Errorf("windows without a working vm: %v", err)
	}
}

func TestAdviseInvalidNeeds(t *testing.T) {
	for _, n := range []Needs{{GuestOS: "beos"}, {Priority: "speed"}, {Count: -1}} {
		if _, err := Advise(fullReport(), n); !errors.Is(err, api.ErrInvalid) {
			t.Errorf("Advise(%+v): %v, want invalid", n, err)
		}
	}
}

func TestWriteAdvice(t *testing.T) {
	r := fullReport()
	a := advise(t, r, Needs{GuestOS: OSWindows, Priority: PriorityCPU, Count: 4})
	var b strings.Builder
	if err := WriteAdvice(&b, a); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{
		"Recommended: vm\n", "for windows guests (arch the host's, priority cpu, count 4)", "Why:\n  - the only class that fits: cpu 0.051× [0.051, 0.052] of native",
		"Refused:\n  - container: a container shares the host's Linux kernel", "  - emulation: emulation is for foreign",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("advice lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "Trade-offs:") {
		t.Errorf("trade-offs printed with no alternative:\n%s", out)
	}
	t.Logf("\n%s", out)
}

func TestAdviseQuotesIntervalsAndDoubts(t *testing.T) {
	// A container cpu.int faster than its host is noise: left out of the
	// score, and said so.
	r := fullReport()
	setFigure(r, Container, probe.CPUInt, 1150)
	a := advise(t, r, Needs{Priority: PriorityCPU})
	if a.Class != Container {
		t.Fatalf("cpu: %s, want container", a.Class)
	}
	contains(t, "reasons", a.Reasons, "container cpu.int left out: faster than its host beyond its interval [1.14, 1.16]: noise, not a result")
	for _, l := range a.Reasons {
		if strings.Contains(l, "cpu.int 1.15×") {
			t.Errorf("a noise cell counted in the advice: %q", l)
		}
	}
	// Every CPU workload noise: no cpu figure for the container at all.
	for _, name := range []string{probe.CPUInt, probe.CPUFloat, probe.CPUHash} {
		setFigure(r, Container, name, nativeFigures[name]*1.2)
	}
	a = advise(t, r, Needs{Priority: PriorityCPU})
	if a.Class != VM {
		t.Errorf("cpu with the container's figures all noise: %s, want the vm, the only one measured", a.Class)
	}
	contains(t, "tradeoffs", a.Tradeoffs, "container: cpu not measured")

	// Two classes whose intervals overlap: the pick says it rests on the
	// medians only.
	r = kvmReport()
	for _, name := range []string{probe.CPUInt, probe.CPUFloat, probe.CPUHash} {
		pairedRounds(r, VM, name, 0.95, 0.99, 0.97, 1.0, 0.96)
		pairedRounds(r, Container, name, 0.96, 1.0, 0.98, 0.99, 0.97)
	}
	a = advise(t, r, Needs{Priority: PriorityCPU})
	contains(t, "reasons", a.Reasons, "inconclusive: container and vm cannot be told apart on cpu, their intervals overlap")

	// A version 1 report: no intervals, said so.
	a = advise(t, oldReport(), Needs{Priority: PriorityCPU})
	contains(t, "reasons", a.Reasons, "not decided by the intervals (no intervals: a report from before paired rounds): container is ahead of vm on its median only")
	contains(t, "reasons", a.Reasons, "cpu 0.98× of native (cpu.int 0.98×")

	// Boot quotes the median's interval; a busy host is said.
	r = fullReport()
	busy(r)
	a = advise(t, r, Needs{Priority: PriorityBoot})
	contains(t, "reasons", a.Reasons, "boot 18.0 ms [16.2, 21.6]")
	contains(t, "reasons", a.Reasons, "measured on a busy host: the host was not quiet (1 of ")
}

func TestAdviseWeighsTheJailUMLBochsAndEmulatedArches(t *testing.T) {
	r := withNewClasses()
	r.Classes = append(r.Classes,
		measuredClass(Class{Name: Bochs, Label: "bochs", Arch: "x86_64", Works: true, Lifecycle: lifecycle(300, 180000, 2000, 50)}, emulationFigures),
		measuredClass(Class{Name: EmulationOf("riscv64"), Label: "emulation-riscv64", Arch: "riscv64", Accel: "tcg", Works: true, Lifecycle: lifecycle(90, 9000, 400, 20)}, emulationFigures))

	// Isolation ranks a VM, then Bochs (a separate kernel on an emulated
	// machine), above UML, the container and, last, the jail.
	if a := advise(t, r, Needs{GuestOS: OSLinux, Priority: PriorityIsolation}); a.Class != VM {
		t.Errorf("isolation: %s, want vm", a.Class)
	}
	r.FindClass(VM).Works = false
	if a := advise(t, r, Needs{GuestOS: OSLinux, Priority: PriorityIsolation}); a.Class != Bochs {
		t.Errorf("isolation without a vm: %s, want bochs", a.Class)
	}
	r.FindClass(Bochs).Works = false
	if a := advise(t, r, Needs{GuestOS: OSLinux, Priority: PriorityIsolation}); a.Class != UML {
		t.Errorf("isolation without a vm or bochs: %s, want uml", a.Class)
	}
	r.FindClass(UML).Works, r.FindClass(Container).Works = false, false
	a := advise(t, r, Needs{GuestOS: OSLinux, Priority: PriorityIsolation})
	if a.Class != Chroot {
		t.Fatalf("isolation with the jail alone: %s, want chroot", a.Class)
	}
	contains(t, "reasons", a.Reasons, "the least isolated")

	// Windows: neither the jail nor UML, which are Linux only.
	r = withNewClasses()
	a = advise(t, r, Needs{GuestOS: OSWindows, Priority: PriorityCPU})
	for _, c := range []string{Chroot, UML} {
		if !strings.Contains(a.Refused[c], "Linux") {
			t.Errorf("windows: %s refused with %q", c, a.Refused[c])
		}
	}
	// A riscv64 guest: the class that emulates riscv64 fits, and no
	// host-arch class does.
	r.Classes = append(r.Classes, measuredClass(Class{Name: EmulationOf("riscv64"), Label: "emulation-riscv64", Arch: "riscv64", Accel: "tcg", Works: true}, emulationFigures))
	a = advise(t, r, Needs{GuestOS: OSLinux, Arch: "riscv64", Priority: PriorityCPU})
	for _, c := range []string{Chroot, UML, Container, VM} {
		if !strings.Contains(a.Refused[c], "needs emulation") {
			t.Errorf("riscv64: %s refused with %q", c, a.Refused[c])
		}
	}
	a = advise(t, r, Needs{GuestOS: OSLinux, Arch: "s390x", Priority: PriorityCPU})
	if !strings.Contains(a.Refused[EmulationOf("riscv64")], "emulates riscv64, not s390x") {
		t.Errorf("s390x: emulation-riscv64 refused with %q", a.Refused[EmulationOf("riscv64")])
	}
}
