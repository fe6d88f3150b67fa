package cli

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/cobra"

	"github.com/polyvisor/polyvisor/internal/evaluation/benchreport"
	"github.com/polyvisor/polyvisor/internal/evaluation/probe"
)

// runCLI runs the bench and advise commands with args, against a socket
// where no daemon listens: what it prints, and its error.
func runCLI(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out bytes.Buffer
	a := &app{socket: filepath.Join(t.TempDir(), "no-daemon.sock"), stdout: &out, stderr: &out}
	root := &cobra.Command{Use: "polyvisor", SilenceUsage: true, SilenceErrors: true}
	root.AddCommand(a.benchCmd(), a.adviseCmd())
	root.SetArgs(args)
	root.SetOut(&out)
	err := root.ExecuteContext(t.Context())
	return out.String(), err
}

// testReport is native and a container measured in five paired rounds:
// the container's cpu.int at ratio x of native, its boot at bootMs.
func testReport(x, bootMs float64) *benchreport.Report {
	r := &benchreport.Report{
		Version: benchreport.Version, Command: "polyvisor bench --quick", Size: probe.SizeQuick, Rounds: 5,
		StopReason: "intervals within ±3 %", Load: &benchreport.HostLoad{Quiet: true},
		Host: benchreport.Host{Hostname: "lab1", Arch: "x86_64", CPUs: 2, MemoryBytes: 8 << 30, Accel: "tcg"},
	}
	drift := []float64{1, 0.95, 1.05, 0.98, 1.02}
	jitter := []float64{1, 1.01, 0.99, 1.005, 0.995}
	class := func(name string, ratio float64, j []float64) benchreport.Class {
		c := benchreport.Class{Name: name, Label: name, Arch: "x86_64", Works: true}
		summary := probe.Result{Name: probe.CPUInt, Unit: "Mops/s", HigherIsBetter: true}
		for i, d := range drift {
			v := 1000 * ratio * d * j[i]
			summary.Runs = append(summary.Runs, v)
			c.Rounds = append(c.Rounds, benchreport.Round{Probe: &probe.Output{Results: []probe.Result{
				{Name: probe.CPUInt, Unit: "Mops/s", HigherIsBetter: true, Median: v},
			}}})
		}
		summary.Median = benchreport.Median(summary.Runs)
		c.Probe = &probe.Output{Results: []probe.Result{summary}}
		return c
	}
	ct := class(benchreport.Container, x, jitter)
	boot := []float64{bootMs * 0.95, bootMs, bootMs * 1.05}
	ct.Lifecycle = []benchreport.Figure{{Name: benchreport.Boot, Unit: "ms", Median: bootMs, Runs: boot}}
	r.Classes = []benchreport.Class{class(benchreport.Native, 1, []float64{1, 1, 1, 1, 1}), ct}
	return r
}

// saveReport writes r as dir/report.json.
func saveReport(t *testing.T, dir string, r *benchreport.Report) string {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := writeReport(dir, r); err != nil {
		t.Fatal(err)
	}
	return filepath.Join(dir, "report.json")
}

func TestBenchCompare(t *testing.T) {
	dir := t.TempDir()
	saveReport(t, filepath.Join(dir, "a"), testReport(0.98, 20))
	b := saveReport(t, filepath.Join(dir, "b"), testReport(0.80, 20))

	// A directory and a file, with no daemon.
	out, err := runCLI(t, "bench", "compare", filepath.Join(dir, "a"), b)
	if err != nil {
		t.Fatalf("bench compare: %v\n%s", err, out)
	}
	var line string
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, "cpu.int") && strings.Contains(l, "container") {
			line = l
		}
	}
	for _, want := range []string{"0.98× [0.97, 0.99]", "0.80× [0.79, 0.81]", "-18 %", "yes (worse)"} {
		if !strings.Contains(line, want) {
			t.Errorf("container cpu.int line lacks %q: %q\n%s", want, line, out)
		}
	}
	if !strings.Contains(out, "A: "+filepath.Join(dir, "a", "report.json")+" (lab1") {
		t.Errorf("the table does not say which file A is:\n%s", out)
	}

	out, err = runCLI(t, "bench", "compare", filepath.Join(dir, "a"), b, "--format", "json")
	if err != nil {
		t.Fatalf("bench compare --format json: %v\n%s", err, out)
	}
	var c benchreport.Comparison
	if err := json.Unmarshal([]byte(out), &c); err != nil {
		t.Fatalf("compare JSON: %v\n%s", err, out)
	}
	if c.A.Source != filepath.Join(dir, "a", "report.json") || c.B.Source != b || len(c.Changes) == 0 {
		t.Fatalf("comparison %+v", c)
	}
	var found bool
	for _, ch := range c.Changes {
		if ch.Figure == probe.CPUInt && ch.Class == benchreport.Container {
			found = true
			if !ch.Beyond || ch.Better || ch.A.CI == nil || ch.B.CI == nil || ch.ChangePct == nil {
				t.Errorf("container cpu.int change %+v, want beyond, worse, with both intervals", ch)
			}
		}
	}
	if !found {
		t.Errorf("no container cpu.int change in %+v", c.Changes)
	}
}

func TestBenchCompareRefusesBadInput(t *testing.T) {
	dir := t.TempDir()
	a := saveReport(t, filepath.Join(dir, "a"), testReport(0.98, 20))
	notReport := filepath.Join(dir, "other.json")
	if err := os.WriteFile(notReport, []byte(`{"classes": []}`), 0o644); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"bench", "compare", a}, "polyvisor bench compare needs two reports, A and B"},
		{[]string{"bench", "compare", a, a, a}, "needs two reports"},
		{[]string{"bench", "compare", a, filepath.Join(dir, "missing")}, "read report: open " + filepath.Join(dir, "missing") + ": no such file"},
		{[]string{"bench", "compare", filepath.Join(dir, "a"), dir}, "read report: open " + filepath.Join(dir, "report.json")},
		{[]string{"bench", "compare", a, notReport}, notReport + ": invalid: not a polyvisor bench report: it has no version"},
		{[]string{"bench", "compare", a, a, "--format", "yaml"}, `--format "yaml": use table, json`},
		{[]string{"bench", "comapre", a, a}, `polyvisor bench takes no arguments, got "comapre": to set two reports side by side use polyvisor bench compare A B`},
	}
	for _, c := range cases {
		out, err := runCLI(t, c.args...)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: %v, want an error with %q", c.args, err, c.want)
		}
		if out != "" {
			t.Errorf("%v printed %q before failing", c.args, out)
		}
	}
}

func TestAdviseJSON(t *testing.T) {
	report := saveReport(t, t.TempDir(), testReport(0.98, 20))
	out, err := runCLI(t, "advise", "--report", report, "--format", "json", "--priority", "cpu", "--count", "3")
	if err != nil {
		t.Fatalf("advise --format json: %v\n%s", err, out)
	}
	var a benchreport.Advice
	if err := json.Unmarshal([]byte(out), &a); err != nil {
		t.Fatalf("advice JSON: %v\n%s", err, out)
	}
	if a.Class != benchreport.Container || a.Needs.Priority != "cpu" || a.Needs.Count != 3 || a.Needs.GuestOS != "linux" {
		t.Errorf("advice %+v", a)
	}
	if len(a.Reasons) == 0 || !strings.Contains(a.Reasons[0], "cpu 0.98× [0.97, 0.99] of native") {
		t.Errorf("reasons do not quote the interval: %q", a.Reasons)
	}
	for _, key := range []string{`"needs": {`, `"guestOS": "linux"`, `"class": "container"`, `"reasons": [`, `"refused": {`} {
		if !strings.Contains(out, key) {
			t.Errorf("advice JSON lacks %s:\n%s", key, out)
		}
	}

	// The table is still the default; a directory names its report too.
	out, err = runCLI(t, "advise", "--report", filepath.Dir(report))
	if err != nil || !strings.HasPrefix(out, "Recommended: container\n") {
		t.Errorf("advise: %v\n%s", err, out)
	}
	if _, err := runCLI(t, "advise", "--report", report, "--format", "yaml"); err == nil || !strings.Contains(err.Error(), `--format "yaml": use table, json`) {
		t.Errorf("advise --format yaml: %v", err)
	}
}
