package benchreport

import (
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/polyvisor/polyvisor/internal/probe"
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
