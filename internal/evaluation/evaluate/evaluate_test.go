package evaluate

import (
	"bufio"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"syscall"
	"testing"

	"github.com/polyvisor/polyvisor/internal/arch"
	"github.com/polyvisor/polyvisor/internal/evaluation/probe"
	"github.com/polyvisor/polyvisor/pkg/api"
	"github.com/polyvisor/polyvisor/pkg/client"
)

func TestRunRefusesBadOptionsBeforeTouchingTheDaemon(t *testing.T) {
	probeDir := t.TempDir()
	if err := os.WriteFile(filepath.Join(probeDir, ProbeName(arch.Host().GOARCH)), nil, 0o755); err != nil {
		t.Fatal(err)
	}
	// No daemon listens there: a refusal must come first.
	c := client.New(filepath.Join(t.TempDir(), "none.sock"))
	for name, opts := range map[string]Options{
		"size":  {Size: "huge"},
		"class": {Size: probe.SizeQuick, Classes: []string{"zone"}},
		"peer":  {Size: probe.SizeQuick, Peers: []string{"vmware"}},
		"probe": {Size: probe.SizeQuick, ProbeDir: t.TempDir()},
	} {
		opts.Client = c
		if opts.ProbeDir == "" {
			opts.ProbeDir = probeDir
		}
		_, err := Run(context.Background(), opts)
		if !errors.Is(err, api.ErrInvalid) && !errors.Is(err, api.ErrNotAvailable) {
			t.Errorf("%s: %v, want a refusal", name, err)
		}
	}
}

func TestFigureOfTakesTheMedianAndSpread(t *testing.T) {
	f := figureOf("boot", "ms", false, []float64{30, 10, 20, 40})
	if f.Median != 25 || f.Min != 10 || f.Max != 40 || len(f.Runs) != 4 {
		t.Errorf("figure %+v", f)
	}
	if f := figureOf("boot", "ms", false, []float64{3, 1, 2}); f.Median != 2 {
		t.Errorf("odd median %v", f.Median)
	}
	if f := figureOf("boot", "ms", false, nil); f.Median != 0 || f.Runs != nil {
		t.Errorf("no runs: %+v", f)
	}
}

func TestParseProbeRefusesOtherOutput(t *testing.T) {
	for _, out := range []string{"", "not json", `{"probe":"other","version":1}`, `{"probe":"polyvisor-probe","version":2}`} {
		if _, err := parseProbe([]byte(out)); err == nil {
			t.Errorf("%q parsed", out)
		}
	}
	o, err := parseProbe([]byte(`{"probe":"polyvisor-probe","version":1,"results":[{"name":"cpu.int","median":3}]}`))
	if err != nil || len(o.Results) != 1 {
		t.Errorf("good output: %+v, %v", o, err)
	}
}

func TestTreePSSCountsAProcessTree(t *testing.T) {
	pss, err := treePSS([]int{os.Getpid()}, nil)
	if err != nil || pss <= 0 {
		t.Errorf("PSS of this test process: %d, %v", pss, err)
	}
	if pss, err := treePSS([]int{1 << 30}, nil); err != nil || pss != 0 {
		t.Errorf("a missing process: %d, %v", pss, err)
	}
}

// TestTreePIDsCountsASharedRootOnceAndSkipsOthers runs a shell with two
// children, as a supervisor runs two guests: the shell named as the root
// of both is listed once, and a child that is not measured is left out.
func TestTreePIDsCountsASharedRootOnceAndSkipsOthers(t *testing.T) {
	cmd := exec.Command("sh", "-c", "sleep 60 & echo $!; sleep 60 & echo $!; wait")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		cmd.Wait()
	})
	var kids []int
	lines := bufio.NewScanner(out)
	for len(kids) < 2 && lines.Scan() {
		pid, err := strconv.Atoi(lines.Text())
		if err != nil {
			t.Fatalf("the shell printed %q, want a pid", lines.Text())
		}
		kids = append(kids, pid)
	}
	if len(kids) != 2 {
		t.Fatalf("the shell printed %d pids, want 2: %v", len(kids), lines.Err())
	}
	sh := cmd.Process.Pid
	for _, c := range []struct {
		roots, skip, want []int
	}{
		{roots: []int{sh, sh}, want: []int{sh, kids[0], kids[1]}},
		{roots: []int{sh, kids[0]}, want: []int{sh, kids[0], kids[1]}},
		{roots: []int{sh, sh}, skip: kids[:1], want: []int{sh, kids[1]}},
		{roots: []int{kids[0], sh}, skip: kids[:1], want: []int{sh, kids[1]}},
	} {
		got, err := treePIDs(c.roots, c.skip)
		if err != nil {
			t.Fatal(err)
		}
		slices.Sort(got)
		slices.Sort(c.want)
		if !slices.Equal(got, c.want) {
			t.Errorf("roots %v, skip %v: %v, want %v", c.roots, c.skip, got, c.want)
		}
	}
}
