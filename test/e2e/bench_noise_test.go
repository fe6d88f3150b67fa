package e2e

import (
	"bufio"
	"context"
	"fmt"
	"os/exec"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/polyvisor/polyvisor/internal/evaluation/benchreport"
)

// hogs are CPU hogs the test starts, one per CPU, and stops by their PIDs.
type hogs []*exec.Cmd

func startHogs(t *testing.T) hogs {
	t.Helper()
	var h hogs
	for range runtime.NumCPU() {
		cmd := exec.Command("sh", "-c", "while :; do :; done")
		if err := cmd.Start(); err != nil {
			h.stop()
			t.Fatalf("start a CPU hog: %v", err)
		}
		h = append(h, cmd)
	}
	return h
}

func (h hogs) stop() {
	for _, cmd := range h {
		cmd.Process.Signal(syscall.SIGKILL)
		cmd.Wait()
	}
}

// TestBenchOnANoisyHostDecidesNothingItsIntervalsDoNotSupport makes the
// host noisy on purpose: CPU hogs start once the first round is done and
// stop after the third. The report must say the host was not quiet,
// naming a hog, and every CONFIRMED or REFUTED verdict must be one the
// intervals decide.
func TestBenchOnANoisyHostDecidesNothingItsIntervalsDoNotSupport(t *testing.T) {
	d := env.main
	out := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	cmd := d.Command(ctx, "bench", "--quick", "--classes", "container", "--peers", "none", "--out", out)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stdout strings.Builder
	cmd.Stdout = &stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var running hogs
	defer func() { running.stop() }()
	var hogPIDs []int
	var progress []string
	lines := bufio.NewScanner(stderr)
	for lines.Scan() {
		line := lines.Text()
		progress = append(progress, line)
		switch {
		case strings.Contains(line, "round 2:") && running == nil:
			running = startHogs(t)
			for _, h := range running {
				hogPIDs = append(hogPIDs, h.Process.Pid)
			}
		case strings.Contains(line, "round 4:"):
			running.stop()
		}
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("bench: %v\n%s", err, strings.Join(progress, "\n"))
	}
	if hogPIDs == nil {
		t.Fatalf("bench never said it began round 2:\n%s", strings.Join(progress, "\n"))
	}
	r := readReport(t, out)
	if r.Load == nil || r.Load.Quiet || len(r.Load.Warnings) == 0 {
		t.Fatalf("the report calls a host with %d CPU hogs quiet: %+v", len(hogPIDs), r.Load)
	}
	named := false
	for _, w := range r.Load.Warnings {
		for _, pid := range hogPIDs {
			named = named || strings.Contains(w, fmt.Sprintf("(%d)", pid))
		}
	}
	if !named {
		t.Errorf("no load warning names a hog %v: %q", hogPIDs, r.Load.Warnings)
	}
	if !strings.Contains(stdout.String(), r.Load.Warnings[0]) {
		t.Errorf("the table does not show the load warning %q:\n%s", r.Load.Warnings[0], stdout.String())
	}
	if r.Rounds < 3 || r.StopReason == "" {
		t.Errorf("rounds %d, stop reason %q", r.Rounds, r.StopReason)
	}
	checkVerdictsFollowIntervals(t, r)
}

// checkVerdictsFollowIntervals fails t for a decided verdict of the
// container claim that the intervals of its cells do not support: each
// CPU workload's ratio interval all at or above NativeLikeRatio confirms
// it, one all below refutes it; a cell flagged as noise decides nothing.
func checkVerdictsFollowIntervals(t *testing.T, r *benchreport.Report) {
	t.Helper()
	rows := benchreport.Rows(r)
	for _, c := range benchreport.Claims(r) {
		if c.ID != benchreport.ClaimContainerNative || (c.Verdict != benchreport.Confirmed && c.Verdict != benchreport.Refuted) {
			continue
		}
		allAbove, someBelow := true, false
		for _, row := range rows {
			if !strings.HasPrefix(row.Figure, "cpu.") {
				continue
			}
			cell := row.Cell(benchreport.Container)
			if cell.CI == nil || cell.Noise != "" {
				t.Errorf("%s: %s on %s, a cell without an interval or flagged as noise (%q)", c.ID, c.Verdict, row.Figure, cell.Noise)
				allAbove = false
				continue
			}
			allAbove = allAbove && cell.CI.Low >= benchreport.NativeLikeRatio
			someBelow = someBelow || cell.CI.High < benchreport.NativeLikeRatio
		}
		if c.Verdict == benchreport.Confirmed && !allAbove || c.Verdict == benchreport.Refuted && !someBelow {
			t.Errorf("%s: %s, which the intervals do not support: %s", c.ID, c.Verdict, c.Evidence)
		}
	}
}
