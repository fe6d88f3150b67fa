package benchreport

import (
	"strings"
	"testing"

	"github.com/polyvisor/polyvisor/internal/probe"
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

func TestClaimsUnderTCG(t *testing.T) {
	r := fullReport()
	if n := len(Claims(r)); n != 5 {
		t.Fatalf("%d claims, want 5", n)
	}
	for _, c := range Claims(r) {
		if c.Statement == "" || c.Evidence == "" {
			t.Errorf("claim %s has no statement or evidence: %+v", c.ID, c)
		}
	}
	expect(t, r, ClaimContainerNative, Confirmed, "cpu.int 0.98×", "cpu.float 0.99×", "the lowest is 0.98×")
	expect(t, r, ClaimDensity, Confirmed, "3.00 MiB", "230 MiB", "76.7×", tcgSaid)
	expect(t, r, ClaimEmulationSlow, Confirmed, "emulation (aarch64) CPU 0.032× of native", "is not compared", tcgSaid)
	// Under TCG the vm is no hardware virtualization: not measured, with
	// the numbers and the reason.
	expect(t, r, ClaimVMDisk, NotMeasured, "disk 0.37× of native", "hardware virtualization was not measured", "kvm_pvm")
	expect(t, r, ClaimBoot, Confirmed, "container 18.0 ms", "vm 1430 ms", tcgSaid)
}

func TestClaimsUnderKVM(t *testing.T) {
	r := kvmReport()
	expect(t, r, ClaimVMDisk, Confirmed, "disk at 0.34× of CPU")
	expect(t, r, ClaimEmulationSlow, Confirmed, "the vm (kvm) CPU 0.96× of native")
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
	expect(t, r, ClaimVMDisk, Refuted, "disk 0.95× of native")
}

func TestClaimsRefuted(t *testing.T) {
	r := fullReport()
	setFigure(r, Container, probe.CPUFloat, 560) // 0.70× of native
	expect(t, r, ClaimContainerNative, Refuted, "the lowest is 0.70×")

	r = fullReport()
	r.FindClass(Container).Density.PerGuestBytes = 200 * mib
	expect(t, r, ClaimDensity, Refuted, "1.15×")

	r = fullReport()
	for _, f := range r.FindClass(Container).Lifecycle {
		if f.Name == Boot {
			r.FindClass(Container).Lifecycle[1].Median = 1300
		}
	}
	expect(t, r, ClaimBoot, Refuted, "container 1300 ms")

	// Emulation at half of native is slow, not painfully.
	r = fullReport()
	for _, name := range []string{probe.CPUInt, probe.CPUFloat, probe.CPUHash} {
		setFigure(r, Emulation, name, nativeFigures[name]/2)
	}
	expect(t, r, ClaimEmulationSlow, Refuted, "CPU 0.50× of native")

	// Under KVM, emulation must also be well below the vm.
	r = kvmReport()
	for _, name := range []string{probe.CPUInt, probe.CPUFloat, probe.CPUHash} {
		setFigure(r, VM, name, nativeFigures[name]*0.04)
	}
	expect(t, r, ClaimEmulationSlow, Refuted, "emulation is 0.80× of it")
}

func TestClaimsNotMeasured(t *testing.T) {
	r := brokenReport()
	expect(t, r, ClaimDensity, NotMeasured, "container density.per_guest failed: guest 4")
	expect(t, r, ClaimEmulationSlow, NotMeasured, "the report has no emulation class")
	expect(t, r, ClaimVMDisk, NotMeasured, "qemu-system-x86_64 not found")
	expect(t, r, ClaimBoot, NotMeasured, "qemu-system-x86_64 not found")

	// One failed CPU workload is enough: the claim is not guessed from the
	// others.
	r = fullReport()
	c := r.FindClass(Container)
	c.Probe.Results[1] = probe.Result{Name: probe.CPUFloat, Unit: "Mflops/s", HigherIsBetter: true, Error: "signal: killed"}
	expect(t, r, ClaimContainerNative, NotMeasured, "container cpu.float failed: signal: killed")

	// Nor from a class without a native counterpart.
	r = fullReport()
	r.Classes[0].Probe, r.Classes[0].ProbeError = nil, "probe binary missing"
	expect(t, r, ClaimContainerNative, NotMeasured, "native cpu.int failed: probe binary missing")

	// Under KVM, emulation needs the vm to compare with.
	r = kvmReport()
	r.FindClass(VM).Probe, r.FindClass(VM).ProbeError = nil, "vm did not answer"
	expect(t, r, ClaimEmulationSlow, NotMeasured, "no vm to compare with", "vm did not answer")

	// A report without the class at all.
	r = fullReport()
	r.Classes = r.Classes[:1]
	for _, c := range Claims(r) {
		if c.Verdict != NotMeasured || !strings.Contains(c.Evidence, "the report has no") {
			t.Errorf("native-only report: %s is %s: %s", c.ID, c.Verdict, c.Evidence)
		}
	}
}
