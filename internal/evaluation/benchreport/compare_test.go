package benchreport

import (
	"bytes"
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/polyvisor/polyvisor/internal/evaluation/probe"
)

func findChange(t *testing.T, c Comparison, figure, class string) Change {
	t.Helper()
	for _, ch := range c.Changes {
		if ch.Figure == figure && ch.Class == class {
			return ch
		}
	}
	t.Fatalf("no change of %s %s", class, figure)
	return Change{}
}

// dropWorkload removes a workload from every class of r.
func dropWorkload(r *Report, name string) {
	for i := range r.Classes {
		c := &r.Classes[i]
		drop := func(o *probe.Output) {
			if o != nil {
				o.Results = slices.DeleteFunc(o.Results, func(res probe.Result) bool { return res.Name == name })
			}
		}
		drop(c.Probe)
		for _, round := range c.Rounds {
			drop(round.Probe)
		}
	}
}

func TestCompare(t *testing.T) {
	a, b := fullReport(), fullReport()
	setFigure(b, Container, probe.CPUInt, 900)   // 0.98× to 0.90×: beyond, worse
	setFigure(b, Container, probe.CPUFloat, 792) // 0.99× to 0.99×: within
	setFigure(b, Container, probe.Syscall, 55)   // 60/62 to 60/55: beyond, better
	setFigure(b, Container, probe.MemCopy, 9900) // noise in B
	setLifecycle(b, VM, Boot, 700, 720, 740)     // 1430 ms to 720 ms: beyond, better
	b.Classes = append(b.Classes[:3], Class{Name: PeerPrefix + "lxc", Label: "lxc (peer)", Reason: "lxc-start not found"})
	dropWorkload(b, probe.DiskFsync)
	c := Compare(a, b)

	ch := findChange(t, c, probe.CPUInt, Container)
	if ch.Compared != CompareRatio || !near(ch.A.Value, 0.98) || !near(ch.B.Value, 0.90) || !ch.Beyond || ch.Better ||
		ch.ChangePct == nil || !near(*ch.ChangePct, (0.90/0.98-1)*100) || ch.A.Text != "0.98× [0.97, 0.99]" {
		t.Errorf("container cpu.int: %+v, want 0.98 to 0.90, beyond and worse", ch)
	}
	if ch := findChange(t, c, probe.CPUFloat, Container); ch.Beyond || !ch.Within || ch.Note != "" || ch.ChangePct == nil {
		t.Errorf("container cpu.float: %+v, want a change within the intervals", ch)
	}
	if ch := findChange(t, c, probe.Syscall, Container); !ch.Beyond || !ch.Better {
		t.Errorf("container syscall at 55 ns from 62: %+v, want beyond and better", ch)
	}
	if ch := findChange(t, c, probe.MemCopy, Container); ch.Beyond || ch.Note != "noise" || !strings.HasPrefix(ch.B.Text, "noise: 1.10×") {
		t.Errorf("noise in B: %+v, want no verdict and said", ch)
	}
	ch = findChange(t, c, LifecycleFigure(Boot), VM)
	if ch.Compared != CompareMedian || ch.A.Value != 1430 || ch.B.Value != 720 || !ch.Beyond || !ch.Better || ch.HigherIsBetter {
		t.Errorf("vm boot: %+v, want 1430 to 720 ms, beyond and better", ch)
	}
	// Native's own value, with its rounds' interval.
	if ch := findChange(t, c, probe.CPUInt, Native); ch.Compared != CompareMedian || ch.A.Value != 1000 || ch.A.CI == nil || ch.A.CI.N != 5 || ch.Beyond {
		t.Errorf("native cpu.int: %+v", ch)
	}
	if ch := findChange(t, c, DensityFigure, Container); ch.Beyond || ch.Note != "one launch" || *ch.ChangePct != 0 {
		t.Errorf("density: %+v", ch)
	}
	// Beyond: container cpu.int and syscall, vm boot; compared: every
	// change but the noise and the two densities.
	if c.Beyond != 3 || c.Compared != len(c.Changes)-3 || c.Within != c.Compared-3 {
		t.Errorf("%d beyond and %d within of %d, want 3 and %d of %d", c.Beyond, c.Within, c.Compared, len(c.Changes)-6, len(c.Changes)-3)
	}
	if !slices.Equal(c.OnlyInA, []string{"class emulation", "figure disk.fsync"}) || !slices.Equal(c.OnlyInB, []string{"class peer-lxc"}) {
		t.Errorf("only in A %q, only in B %q", c.OnlyInA, c.OnlyInB)
	}
	for _, ch := range c.Changes {
		if ch.Class == Emulation || ch.Class == PeerPrefix+"lxc" || ch.Figure == probe.DiskFsync {
			t.Errorf("a change of what only one report has: %+v", ch)
		}
	}

	// Against a version 1 report: changes, never beyond.
	c = Compare(oldReport(), b)
	if ch := findChange(t, c, probe.CPUInt, Container); ch.Beyond || ch.Note != "no interval" || ch.ChangePct == nil {
		t.Errorf("against version 1: %+v", ch)
	}
	if c.A.Rounds != 0 || c.A.Version != 1 || c.B.Rounds != 5 || !c.B.Quiet {
		t.Errorf("report infos %+v %+v", c.A, c.B)
	}
}

func TestWriteComparison(t *testing.T) {
	a, b := fullReport(), fullReport()
	setFigure(b, Container, probe.CPUInt, 900)
	b.Classes = b.Classes[:3]
	c := Compare(a, b)
	c.A.Source, c.B.Source = "/var/lib/polyvisor/bench/20250314-092653/report.json", "b/report.json"
	var out bytes.Buffer
	if err := WriteComparison(&out, c); err != nil {
		t.Fatal(err)
	}
	text := out.String()
	for i, line := range strings.Split(text, "\n") {
		if n := len([]rune(line)); n > 120 {
			t.Errorf("line %d is %d columns: %q", i+1, n, line)
		}
	}
	for _, want := range []string{
		"A: /var/lib/polyvisor/bench/20250314-092653/report.json (lab1, 2025-03-14 09:26 UTC, size quick, 5 rounds)",
		"B: b/report.json", "Only in A: class emulation", "1 of 38 changes with intervals on both sides are beyond them; in 37, each value lies inside the other's interval.",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("comparison lacks %q:\n%s", want, text)
		}
	}
	var cpu string
	for _, line := range strings.Split(text, "\n") {
		if strings.HasPrefix(line, "cpu.int") && strings.Contains(line, "container") {
			cpu = line
		}
	}
	for _, want := range []string{"0.98× [0.97, 0.99]", "0.90× [0.89, 0.91]", "-8.2 %", "yes (worse)"} {
		if !strings.Contains(cpu, want) {
			t.Errorf("container cpu.int line lacks %q: %q", want, cpu)
		}
	}
	t.Logf("\n%s", text)

	// JSON carries the same, with the documented names.
	data, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"a":{"source":"/var/lib`, `"changes":[`, `"changePct":-8.16`, `"beyond":true`, `"compared":"ratio"`, `"onlyInA":["class emulation"]`, `"ci":{"low":0.97`} {
		if !strings.Contains(string(data), want) {
			t.Errorf("comparison JSON lacks %q", want)
		}
	}
}
