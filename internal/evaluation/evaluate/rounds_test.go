package evaluate

import (
	"archive/tar"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/polyvisor/polyvisor/internal/evaluation/benchreport"
	"github.com/polyvisor/polyvisor/internal/evaluation/probe"
	"github.com/polyvisor/polyvisor/internal/testgate"
)

// round is a probe output with one result per name/figure pair.
func round(figures map[string]float64) benchreport.Round {
	out := &probe.Output{Probe: "polyvisor-probe", Version: 1}
	for _, name := range []string{probe.CPUInt, probe.Syscall} {
		f, ok := figures[name]
		if !ok {
			continue
		}
		res := probe.Result{Name: name, Unit: "x", HigherIsBetter: name == probe.CPUInt, Median: f}
		if f == 0 {
			res = probe.Result{Name: name, Unit: "x", HigherIsBetter: name == probe.CPUInt, Error: "failed"}
		}
		out.Results = append(out.Results, res)
	}
	return benchreport.Round{Probe: out}
}

func TestSummarizeRoundsKeepsRoundOrderAndLeavesFailuresOut(t *testing.T) {
	c := benchreport.Class{Name: "container", Rounds: []benchreport.Round{
		round(map[string]float64{probe.CPUInt: 100, probe.Syscall: 0}),
		{Error: "the guest stopped"},
		round(map[string]float64{probe.CPUInt: 90, probe.Syscall: 0}),
		round(map[string]float64{probe.CPUInt: 110, probe.Syscall: 0}),
	}}
	summarizeRounds(&c)
	if c.Probe == nil || len(c.Probe.Results) != 2 {
		t.Fatalf("summary %+v", c.Probe)
	}
	cpu, sys := c.Probe.Results[0], c.Probe.Results[1]
	if fmt.Sprint(cpu.Runs) != "[100 90 110]" || cpu.Median != 100 || cpu.Min != 90 || cpu.Max != 110 || cpu.Error != "" {
		t.Errorf("cpu.int summed up as %+v", cpu)
	}
	if sys.Error != "failed" || len(sys.Runs) != 0 {
		t.Errorf("a workload no round measured: %+v, want its error", sys)
	}

	failed := benchreport.Class{Name: "vm", Rounds: []benchreport.Round{{Error: "one"}, {Error: "two"}}}
	summarizeRounds(&failed)
	if failed.Probe != nil || failed.ProbeError != "two" {
		t.Errorf("no round ran: probe %+v, error %q", failed.Probe, failed.ProbeError)
	}
}

func TestWidestIntervalComparesPairedRounds(t *testing.T) {
	r := &benchreport.Report{Classes: []benchreport.Class{{Name: benchreport.Native}, {Name: "container"}}}
	// Native and the container move together, round by round: the paired
	// ratio is 0.5 every time, however much the host's speed changed.
	for _, f := range []float64{100, 200, 50, 400} {
		r.Classes[0].Rounds = append(r.Classes[0].Rounds, round(map[string]float64{probe.CPUInt: f}))
		r.Classes[1].Rounds = append(r.Classes[1].Rounds, round(map[string]float64{probe.CPUInt: f / 2}))
	}
	if w, where := widestInterval(r); w != 0 {
		t.Errorf("widest %v at %s, want 0: every paired ratio is 0.5", w, where)
	}
	r.Classes[1].Rounds[3] = round(map[string]float64{probe.CPUInt: 400})
	if w, where := widestInterval(r); w == 0 || where != "container cpu.int" {
		t.Errorf("widest %v at %q after one round's ratio became 1", w, where)
	}
}

func TestJudgeLoadWarnsOfOtherWorkAndSteal(t *testing.T) {
	l := &benchreport.HostLoad{Samples: []benchreport.LoadSample{
		{Phase: "before the run", Busy: 0.02},
		{Phase: "after round 1", Busy: 0.6, Top: []string{"sh (42) 99%"}},
		{Phase: "after round 2", Steal: 0.2},
	}}
	judgeLoad(l)
	if l.Quiet || len(l.Warnings) != 2 || !strings.Contains(l.Warnings[0], "sh (42) 99%") || !strings.Contains(l.Warnings[1], "steal") {
		t.Errorf("quiet %v, warnings %q", l.Quiet, l.Warnings)
	}
	quiet := &benchreport.HostLoad{Samples: []benchreport.LoadSample{{Phase: "before the run", Busy: 0.05}}}
	if judgeLoad(quiet); !quiet.Quiet || len(quiet.Warnings) != 0 {
		t.Errorf("a quiet host: %+v", quiet)
	}
}

// orphanHog starts a CPU hog that is not this process's descendant (its
// parent exits at once), as another program's work would be, and returns
// its PID; the test kills it by that PID.
func orphanHog(t *testing.T) int {
	t.Helper()
	out, err := exec.Command("sh", "-c", "sh -c 'while :; do :; done' >/dev/null 2>&1 </dev/null & echo $!").Output()
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(out)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Kill(pid, syscall.SIGKILL) })
	return pid
}

// TestSampleLoadNamesABusyProcessAndSparesOurs runs two CPU hogs outside
// this process's tree, one of them counted as bench's own: the sample
// must name the other and count its work, not bench's.
func TestSampleLoadNamesABusyProcessAndSparesOurs(t *testing.T) {
	other, ours := orphanHog(t), orphanHog(t)
	s, err := sampleLoad(context.Background(), "test", []int{ours})
	if err != nil {
		t.Fatal(err)
	}
	top := strings.Join(s.Top, ", ")
	if !strings.Contains(top, fmt.Sprintf("(%d)", other)) {
		t.Errorf("the busiest other processes %q do not name the hog %d", top, other)
	}
	if strings.Contains(top, fmt.Sprintf("(%d)", ours)) {
		t.Errorf("bench's own process %d named as other work: %s", ours, top)
	}
	if min := 0.5 / float64(runtime.NumCPU()); s.Busy < min {
		t.Errorf("busy %.2f with a hog on one CPU of %d, want at least %.2f", s.Busy, runtime.NumCPU(), min)
	}
}

func TestWriteRootTarShiftsOwnersToRoot(t *testing.T) {
	testgate.RequireRoot(t, "giving files the id map's owners needs root")
	root := t.TempDir()
	const base = 1000000
	if err := os.MkdirAll(filepath.Join(root, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "bin", "busybox"), []byte("#!"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/bin/busybox", filepath.Join(root, "bin", "sh")); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"bin", "bin/busybox", "bin/sh"} {
		if err := os.Lchown(filepath.Join(root, p), base, base+5); err != nil {
			t.Fatal(err)
		}
	}
	dst := filepath.Join(t.TempDir(), "root.tar")
	if err := writeRootTar(root, dst, base); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(dst)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tr := tar.NewReader(f)
	seen := map[string]string{}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		seen[h.Name] = fmt.Sprintf("%d:%d %c %s", h.Uid, h.Gid, h.Typeflag, h.Linkname)
	}
	want := map[string]string{"bin/": "0:5 5 ", "bin/busybox": "0:5 0 ", "bin/sh": "0:5 2 /bin/busybox"}
	if fmt.Sprint(seen) != fmt.Sprint(want) {
		t.Errorf("tar holds %v, want %v", seen, want)
	}
}
