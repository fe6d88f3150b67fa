package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"

	"github.com/polyvisor/polyvisor/internal/evaluation/probe"
	"github.com/polyvisor/polyvisor/internal/testenv"
)

// TestCrossCompiles checks that the probe builds static for every guest
// architecture.
func TestCrossCompiles(t *testing.T) { testenv.CheckStaticCrossBuilds(t, "polyvisor-probe") }

// probeOutput runs the binary with args and returns its parsed stdout
// and its stderr; it must exit 0.
func probeOutput(t *testing.T, bin string, args ...string) (probe.Output, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%v: %v\n%s", args, err, stderr.String())
	}
	var out probe.Output
	if err := json.Unmarshal(stdout.Bytes(), &out); err != nil {
		t.Fatalf("stdout is not the JSON: %v\n%s", err, stdout.String())
	}
	return out, stderr.String()
}

// TestBinary runs the built probe: proc.spawn runs it again with --exit,
// net.tcp sends to another probe's --serve, and only JSON is on stdout.
func TestBinary(t *testing.T) {
	bin := testenv.BuildStatic(t, "polyvisor-probe", runtime.GOARCH, t.TempDir())

	serve := exec.Command(bin, "--serve", "127.0.0.1:0")
	stdout, err := serve.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := serve.Start(); err != nil {
		t.Fatal(err)
	}
	defer serve.Process.Kill()
	addr, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}

	out, stderr := probeOutput(t, bin, "--size", "quick", "--only", "proc.spawn,net.tcp,disk.fsync", "--dir", t.TempDir(), "--peer", strings.TrimSpace(addr))
	if out.Size != probe.SizeQuick || len(out.Results) != 3 {
		t.Fatalf("output %+v", out)
	}
	for _, res := range out.Results {
		if res.Error != "" || res.Median <= 0 || len(res.Runs) != 3 {
			t.Errorf("%s: %+v", res.Name, res)
		}
	}
	if !strings.Contains(stderr, "workload=net.tcp") {
		t.Errorf("no progress on stderr:\n%s", stderr)
	}

	serve.Process.Signal(syscall.SIGTERM)
	if err := serve.Wait(); err != nil {
		t.Errorf("--serve after SIGTERM: %v", err)
	}
}

// TestExitStatus checks that bad arguments exit 2 and a failing workload
// exits 0 with its error in the JSON.
func TestExitStatus(t *testing.T) {
	for _, args := range [][]string{
		{"--size", "huge"},
		{"--only", "cpu.int,cpu.bogus"},
		{"extra"},
		{"--serve", "127.0.0.1:0", "--peer", "127.0.0.1:1"},
		{"--serve", "no-port"},
	} {
		var stdout, stderr bytes.Buffer
		if status := run(args, &stdout, &stderr); status != 2 || stdout.Len() != 0 || !strings.HasPrefix(stderr.String(), "polyvisor-probe: ") {
			t.Errorf("%v: status %d, stdout %q, stderr %q", args, status, stdout.String(), stderr.String())
		}
	}

	var stdout, stderr bytes.Buffer
	missing := filepath.Join(t.TempDir(), "missing")
	if status := run([]string{"--only", "disk.fsync", "--dir", missing}, &stdout, &stderr); status != 0 {
		t.Fatalf("status %d: %s", status, stderr.String())
	}
	var out probe.Output
	if err := json.Unmarshal(stdout.Bytes(), &out); err != nil {
		t.Fatal(err)
	}
	if len(out.Results) != 1 || !strings.Contains(out.Results[0].Error, "no such file or directory") || out.DiskDir != missing {
		t.Errorf("output %+v", out)
	}
}
