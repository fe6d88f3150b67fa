package e2e

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/polyvisor/polyvisor/internal/evaluation/benchreport"
	"github.com/polyvisor/polyvisor/internal/evaluation/probe"
)

// TestBenchMeasuresTheJailUMLAndBochs runs the quick bench on the
// chapter's other classes: the chroot jail, User-Mode Linux and Bochs,
// each beside native in the same rounds, and checks what the chapter
// says of them against the measured ratios: the jail runs at native
// speed, UML pays in system calls, Bochs interprets every instruction.
func TestBenchMeasuresTheJailUMLAndBochs(t *testing.T) {
	requireRoot(t)
	// Minutes of Bochs: it runs beside the other slow emulators. Its
	// verdicts are not asserted, only what the ratios show beyond noise.
	t.Parallel()
	biosTemplate(t)
	d := env.main
	out := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	began := time.Now()
	cmd := d.Command(ctx, "bench", "--quick", "--classes", "uml,bochs,chroot", "--peers", "none", "--out", out)
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("bench --quick --classes uml,bochs,chroot: %v\n%s%s", err, stdout.String(), stderr.String())
	}
	t.Logf("bench --quick --classes uml,bochs,chroot took %s", time.Since(began).Round(time.Second))
	r := readReport(t, out)
	var names []string
	for _, c := range r.Classes {
		names = append(names, c.Name)
		if !c.Works || c.Probe == nil || c.ProbeError != "" {
			t.Errorf("%s: works %v, probe error %q, reason %q", c.Name, c.Works, c.ProbeError, c.Reason)
		}
		if c.Name != benchreport.Native && len(c.Lifecycle) != 4 {
			t.Errorf("%s: lifecycle %+v", c.Name, c.Lifecycle)
		}
	}
	if got := strings.Join(names, ","); got != "native,uml,bochs,chroot" {
		t.Fatalf("classes %s, want native,uml,bochs,chroot", got)
	}
	rows := benchreport.Rows(r)
	ratio := func(class, figure string) float64 {
		row, ok := benchreport.FindRow(rows, figure)
		cell := row.Cell(class)
		if !ok || !cell.HasRatio {
			t.Fatalf("%s %s has no ratio to native: %s", class, figure, cell.Text)
		}
		return cell.Ratio
	}
	if jail := ratio(benchreport.Chroot, probe.CPUInt); jail < 0.5 {
		t.Errorf("the jail's cpu.int at %.2f× of native: a chroot runs on the host's CPU", jail)
	}
	// UML runs its code on the host's CPU, and serves every system call
	// from another host process: far dearer than the jail's.
	if uml, jail := ratio(benchreport.UML, probe.Syscall), ratio(benchreport.Chroot, probe.Syscall); uml > jail/4 {
		t.Errorf("uml's getppid at %.3f× of native, the jail's at %.3f×: want UML's system calls far dearer", uml, jail)
	}
	if uml := ratio(benchreport.UML, probe.CPUInt); uml < 0.3 {
		t.Errorf("uml's cpu.int at %.2f× of native: its code runs on the host's CPU", uml)
	}
	if bochs := ratio(benchreport.Bochs, probe.CPUInt); bochs > 0.25 {
		t.Errorf("bochs's cpu.int at %.2f× of native: an interpreter cannot be that fast", bochs)
	}
	for _, c := range benchreport.Claims(r) {
		if (c.ID == benchreport.ClaimJailNative || c.ID == benchreport.ClaimUMLSyscalls) && (c.Verdict == benchreport.NotMeasured || c.Evidence == "") {
			t.Errorf("claim %s: %s: %s", c.ID, c.Verdict, c.Evidence)
		}
	}
	for _, want := range []string{"chroot (jail", "uml (User-Mode Linux)", "bochs (x86_64"} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("bench's table lacks %q:\n%s", want, stdout.String())
		}
	}
	advice := d.Must(t, "advise", "--priority", "isolation", "--report", filepath.Join(out, "report.json"))
	if first := strings.SplitN(advice, "\n", 2)[0]; !strings.Contains(first, "bochs") {
		t.Errorf("advise for isolation among uml, bochs and chroot does not pick the emulator's separate kernel:\n%s", advice)
	}
	if strings.Contains(strings.SplitN(advice, "\n", 2)[0], "chroot") {
		t.Errorf("advise for isolation picks the jail:\n%s", advice)
	}
}
