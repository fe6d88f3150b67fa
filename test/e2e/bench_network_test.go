package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/polyvisor/polyvisor/internal/evaluation/benchreport"
	"github.com/polyvisor/polyvisor/internal/evaluation/evaluate"
	"github.com/polyvisor/polyvisor/internal/evaluation/probe"
	"github.com/polyvisor/polyvisor/internal/testenv"
)

// networkLeftovers lists what bench's network phase may leave: its
// network namespaces, veth links in the host's namespace or the daemon's,
// its network and guests, and host probes still running.
func networkLeftovers(t *testing.T, d *testenv.Daemon) []string {
	t.Helper()
	var left []string
	if out, err := exec.Command("ip", "netns", "list").Output(); err != nil {
		t.Fatalf("ip netns list: %v", err)
	} else {
		for _, line := range strings.Split(string(out), "\n") {
			if strings.HasPrefix(line, "pv-bench-net") {
				left = append(left, "netns "+line)
			}
		}
	}
	for _, ns := range []string{"/proc/self/ns/net", "/run/netns/" + d.Netns} {
		out, err := exec.Command("nsenter", "--net="+ns, "--", "ip", "-br", "link").Output()
		if err != nil {
			t.Fatalf("links in %s: %v", ns, err)
		}
		for _, line := range strings.Split(string(out), "\n") {
			if strings.HasPrefix(line, "pvb") || strings.HasPrefix(line, "pv-bench-net") {
				left = append(left, "link in "+ns+": "+line)
			}
		}
	}
	if _, ok := networks(t, d)["pv-bench-net"]; ok {
		left = append(left, "network pv-bench-net")
	}
	guests, err := d.Guests()
	if err != nil {
		t.Fatal(err)
	}
	for _, g := range guests {
		left = append(left, "guest "+g.Name)
	}
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		if argv, err := os.ReadFile(p); err == nil && strings.Contains(string(argv), filepath.Join(env.bin, "polyvisor-probe")) {
			left = append(left, "process: "+strings.ReplaceAll(string(argv), "\x00", " "))
		}
	}
	return left
}

func TestBenchNetworkMeasuresEachPathAgainstVethAndLeavesNothing(t *testing.T) {
	requireVMTemplates(t)
	// The daemon runs in a network namespace of the test's own, as a
	// daemon may: bench's host side must follow it there.
	d := netnsDaemon(t)
	d.Must(t, "template", "build", "busybox")
	copyTemplate(t, env.main, d, "busybox.vm.amd64")
	opts := evaluate.Options{
		Client: d.Client(), ProbeDir: env.bin, Size: probe.SizeQuick,
		Classes:  []string{benchreport.Container, benchreport.VM},
		Progress: func(phase string) { t.Log(phase) },
	}
	// The namespaces of a bench that was killed (its pid gone) are
	// removed by the next.
	dead := exec.Command("sleep", "0")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	stale := fmt.Sprintf("pv-bench-net-%d-a", dead.Process.Pid)
	if out, err := exec.Command("ip", "netns", "add", stale).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add %s: %v: %s", stale, err, out)
	}
	t.Cleanup(func() { exec.Command("ip", "netns", "delete", stale).Run() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	began := time.Now()
	paths, err := evaluate.MeasureNetwork(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	var table bytes.Buffer
	if err := benchreport.WriteNetworkTable(&table, &benchreport.Report{Network: paths}); err != nil {
		t.Fatal(err)
	}
	t.Logf("network phase took %s:\n%s", time.Since(began).Round(time.Second), table.String())
	want := []string{benchreport.NetBaseline,
		benchreport.GuestToGuest(benchreport.Container), benchreport.HostToGuest(benchreport.Container),
		benchreport.GuestToGuest(benchreport.VM), benchreport.HostToGuest(benchreport.VM)}
	if len(paths) != len(want) {
		t.Fatalf("%d paths, want %d: %+v", len(paths), len(want), paths)
	}
	for i, p := range paths {
		if p.Name != want[i] {
			t.Errorf("path %d is %q, want %q", i, p.Name, want[i])
		}
		measured := p.Error == "" && p.Reason == "" && p.Figure.Median > 0 && p.Figure.CI != nil && len(p.Figure.Runs) > 0 && p.Ratio > 0
		// Each class's paths are compared with the veth pair measured
		// right before them.
		if measured && i > 0 && (p.Baseline == nil || !(p.Baseline.Median > 0) || p.Ratio != p.Figure.Median/p.Baseline.Median) {
			t.Errorf("%s is not compared with the baseline beside it: ratio %v, baseline %+v", p.Name, p.Ratio, p.Baseline)
		}
		// The baseline and the container's paths must measure; a TCG VM
		// may fail, but with an error that says what failed.
		if !measured && (i < 3 || len(p.Error+p.Reason) < 10) {
			t.Errorf("%s: %+v", p.Name, p)
		}
	}
	if paths[0].Ratio != 1 {
		t.Errorf("the baseline's ratio to itself is %v", paths[0].Ratio)
	}
	if left := networkLeftovers(t, d); len(left) > 0 {
		t.Errorf("the network phase left: %q", left)
	}

	// Cancelled while the guests are being launched: what was made goes
	// all the same.
	cctx, cancelRun := context.WithCancel(context.Background())
	defer cancelRun()
	opts.Classes = []string{benchreport.Container}
	opts.Progress = func(phase string) {
		if strings.Contains(phase, "launch pv-bench-container-net-1") {
			cancelRun()
		}
	}
	paths, err = evaluate.MeasureNetwork(cctx, opts)
	if !errors.Is(err, context.Canceled) {
		t.Errorf("a cancelled network phase returned %v, want context.Canceled", err)
	}
	if len(paths) != 3 || paths[1].Error == "" || paths[2].Error == "" {
		t.Errorf("a cancelled network phase's paths: %+v", paths)
	}
	if left := networkLeftovers(t, d); len(left) > 0 {
		t.Errorf("the cancelled network phase left: %q", left)
	}

	// A network of that name already there (another bench's, or left by a
	// killed one) is not bench's to use or delete: the guests' paths say
	// how to remove it, and the baseline is measured all the same.
	d.Must(t, "network", "create", "pv-bench-net", "--isolated")
	opts.Progress = nil
	paths, err = evaluate.MeasureNetwork(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	if len(paths) != 3 || paths[0].Error != "" || !(paths[0].Figure.Median > 0) {
		t.Errorf("the baseline beside a taken network name: %+v", paths)
	}
	for _, p := range paths[1:] {
		if !strings.Contains(p.Error, "polyvisor network delete pv-bench-net") {
			t.Errorf("%s beside a taken network name: %+v", p.Name, p)
		}
	}
	if _, ok := networks(t, d)["pv-bench-net"]; !ok {
		t.Error("bench deleted a network it did not make")
	}
	d.Must(t, "network", "delete", "pv-bench-net")
	if left := networkLeftovers(t, d); len(left) > 0 {
		t.Errorf("the network phase beside a taken name left: %q", left)
	}

	// Bad input is refused before anything is made.
	if _, err := evaluate.MeasureNetwork(ctx, evaluate.Options{Client: d.Client(), ProbeDir: env.bin, Size: "huge"}); err == nil || !strings.Contains(err.Error(), "size") {
		t.Errorf("size huge: %v", err)
	}
}
