package benchreport

import (
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/polyvisor/polyvisor/internal/evaluation/probe"
)

func writeTable(t *testing.T, r *Report) string {
	t.Helper()
	var b strings.Builder
	if err := WriteTable(&b, r); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for i, line := range strings.Split(out, "\n") {
		if n := utf8.RuneCountInString(line); n > 120 {
			t.Errorf("line %d is %d columns wide, over 120: %q", i+1, n, line)
		}
	}
	return out
}

// tableLine returns the table's line for a figure.
func tableLine(t *testing.T, out, figure string) string {
	t.Helper()
	for _, line := range strings.Split(out, "\n") {
		if strings.HasPrefix(line, figure+" ") {
			return line
		}
	}
	t.Fatalf("no line for %s in\n%s", figure, out)
	return ""
}

func TestWriteTable(t *testing.T) {
	out := writeTable(t, fullReport())
	for _, want := range []string{
		"polyvisor bench on lab1, 2025-03-14 09:26 UTC, size quick\n",
		"host:     x86_64, Intel Xeon Platinum 8480+, 2 CPUs, 24.0 GiB memory\n",
		"kernel:   6.1.0-18-amd64\n",
		"accel:    tcg: the KVM canary guest failed: /dev/kvm is kvm_pvm",
		"versions: polyvisor 0.1.0, qemu 7.2.0, runc 1.1.5\n",
		"command:  polyvisor bench --classes container,vm,emulation\n",
		"native (x86_64)", "container (runc)", "emulation (aarch64 on", // labels head the columns
		`ratios are "x of native"`,
		"The chapter's claims",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
	cpu := tableLine(t, out, probe.CPUInt)
	for _, want := range []string{"1000 Mops/s (1.00×)", "980 Mops/s (0.98×)", "60.0 Mops/s (0.06×)", "40.0 Mops/s (0.04×)"} {
		if !strings.Contains(cpu, want) {
			t.Errorf("cpu.int line lacks %q: %q", want, cpu)
		}
	}
	// Columns line up: each class's value starts where its header does.
	if i, j := strings.Index(cpu, "980 Mops/s"), strings.Index(tableLine(t, out, probe.MemCopy), "8800 MiB/s"); i != j {
		t.Errorf("container column starts at %d in cpu.int and %d in mem.copy", i, j)
	}
	boot := tableLine(t, out, LifecycleFigure(Boot))
	if !strings.Contains(boot, "n/a: not a guest") || !strings.Contains(boot, "1430 ms") {
		t.Errorf("boot line %q", boot)
	}
	if d := tableLine(t, out, DensityFigure); !strings.Contains(d, "230 MiB (102 fit)") {
		t.Errorf("density line %q", d)
	}
	for _, c := range Claims(fullReport()) {
		if !strings.Contains(out, c.Verdict) {
			t.Errorf("table lacks claim %s's verdict %s", c.ID, c.Verdict)
		}
	}
	t.Logf("\n%s", out)
}

func TestWriteTableFailuresAndNA(t *testing.T) {
	out := writeTable(t, brokenReport())
	fsync := tableLine(t, out, probe.DiskFsync)
	if !strings.Contains(fsync, "failed: fsync") {
		t.Errorf("failed workload not shown as failed: %q", fsync)
	}
	if strings.Contains(fsync, " 0 µs") || strings.Contains(fsync, "0.00×") {
		t.Errorf("a failure shows as a zero: %q", fsync)
	}
	for _, figure := range []string{probe.CPUInt, LifecycleFigure(Boot), DensityFigure} {
		if line := tableLine(t, out, figure); !strings.Contains(line, "n/a: qemu-system-x86_64") {
			t.Errorf("vm that does not work is not n/a with its reason: %q", line)
		}
	}
	if d := tableLine(t, out, DensityFigure); !strings.Contains(d, "failed: guest 4") {
		t.Errorf("failed density: %q", d)
	}
	if !strings.Contains(out, "vm does not work here: qemu-system-x86_64 not found: run make deps\n") {
		t.Errorf("the full reason of a class that does not work is missing:\n%s", out)
	}
	if !strings.Contains(out, NotMeasured) {
		t.Errorf("no claim is NOT MEASURED with a class missing:\n%s", out)
	}
	t.Logf("\n%s", out)
}

func TestWriteTableIntervalsAndWarnings(t *testing.T) {
	r := fullReport()
	out := writeTable(t, r)
	if !strings.Contains(out, "rounds:   5 rounds; stopped: intervals within ±3 %; intervals are 95 %") {
		t.Errorf("no rounds line:\n%s", out)
	}
	if strings.Contains(out, "WARNING") {
		t.Errorf("a quiet host's table warns:\n%s", out)
	}
	// Each interval sits under its value, in the value's column.
	lines := strings.Split(out, "\n")
	for i, line := range lines {
		if !strings.HasPrefix(line, probe.CPUInt+" ") {
			continue
		}
		next := lines[i+1]
		column := func(s, sub string) int { return utf8.RuneCountInString(s[:max(0, strings.Index(s, sub))]) }
		if !strings.Contains(next, "[0.97, 0.99]") || column(next, "[0.97, 0.99]") != column(line, "980 Mops/s") {
			t.Errorf("container cpu.int's interval is not under its value:\n%s\n%s", line, next)
		}
	}

	// A busy host: the warning block on top, with each warning; a noise
	// cell says so instead of a ratio.
	busy(r)
	setFigure(r, Container, probe.CPUInt, 1150)
	out = writeTable(t, r)
	warning := strings.Index(out, "WARNING: the host was not quiet while bench ran")
	if warning < 0 || warning > strings.Index(out, "figure ") {
		t.Errorf("no warning block above the table:\n%s", out)
	}
	for _, want := range []string{"  - after round 2, other work kept 85% of the CPUs busy (make (4242) 85%)\n", "  - after round 3, the hypervisor under this host took 12% of the CPUs (steal)\n", Inconclusive} {
		if !strings.Contains(out, want) {
			t.Errorf("busy host's table lacks %q:\n%s", want, out)
		}
	}
	cpu := tableLine(t, out, probe.CPUInt)
	if !strings.Contains(cpu, "noise, not a result") || strings.Contains(cpu, "1150 Mops/s") {
		t.Errorf("noise cell shown as a result: %q", cpu)
	}

	// A version 1 report says it has no rounds, and shows no intervals.
	out = writeTable(t, oldReport())
	if !strings.Contains(out, "rounds:   none: a report from before paired rounds (schema version 1)") || strings.Contains(out, "[0.97, 0.99]") {
		t.Errorf("version 1 table:\n%s", out)
	}
	t.Logf("\n%s", out)
}
