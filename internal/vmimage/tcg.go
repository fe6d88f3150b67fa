package vmimage

import "strconv"

// TCGCmdline returns the kernel command line options a guest of the Debian architecture arch
// needs to boot reliably under TCG on this host, to be appended to Boot.Cmdline (and to the
// canary's command line) when QEMU runs with accel=tcg; "" when it needs none.
//
// An x86 guest on microvm has hardware-reduced ACPI, hence no PIT clockevent, no HPET and no
// PM timer: its kernel must learn the TSC frequency by polling the PIT, and under TCG that
// calibration fails whenever the vCPU thread is preempted during it ("tsc: Unable to calibrate
// against PIT", "No reference (HPET/PMTIMER) available"), after which the kernel waits
// forever for a timer tick. Measured here: 3 of 10 boots hung on a quiet host, 5 to 10 of 10
// with the host busy; none of 18 with the frequency given. Under TCG the guest's TSC is the
// host's (QEMU returns the host's counter), so the host's TSC frequency is the right value;
// tsc=reliable keeps the guest's clocksource watchdog, whose jiffies reference is what TCG
// delays, from demoting that TSC. Measuring takes about a tenth of a second: cache the result.
// KVM guests need nothing of this (kvmclock tells them the frequency).
func TCGCmdline(arch string) string {
	if arch != "amd64" {
		return "" // arm64 and riscv64 have an architected timer of known frequency
	}
	khz, ok := hostTSCkHz()
	if !ok {
		return ""
	}
	return "tsc_early_khz=" + strconv.FormatUint(khz, 10) + " tsc=reliable"
}
