package main

import (
	"bufio"
	"bytes"
	"debug/elf"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"

	"github.com/polyvisor/polyvisor/internal/probe"
)

// buildProbe builds the probe as the Makefile does, for goarch, into dir.
func buildProbe(t *testing.T, goarch, dir string) string {
	t.Helper()
	out := filepath.Join(dir, "polyvisor-probe-"+goarch)
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags=-s", "-o", out, ".")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+goarch)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build for %s: %v\n%s", goarch, err, b)
	}
	return out
}

// TestCrossCompiles builds the probe for every guest architecture and
// checks that each is a static executable for that machine, which any
// guest userland can run.
func TestCrossCompiles(t *testing.T) {
	dir := t.TempDir()
	for goarch, machine := range map[string]elf.Machine{
		"amd64":   elf.EM_X86_64,
		"arm64":   elf.EM_AARCH64,
		"riscv64": elf.EM_RISCV,
	} {
		t.Run(goarch, func(t *testing.T) {
			f, err := elf.Open(buildProbe(t, goarch, dir))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if f.Machine != machine || f.Class != elf.ELFCLASS64 || f.Type != elf.ET_EXEC {
				t.Fatalf("machine %v class %v type %v, want %v ELFCLASS64 ET_EXEC", f.Machine, f.Class, f.Type, machine)
			}
			for _, p := range f.Progs {
				if p.Type == elf.PT_INTERP || p.Type == elf.PT_DYNAMIC {
					t.Fatalf("dynamically linked: has %v", p.Type)
				}
			}
		})
	}
}

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
	bin := buildProbe(t, runtime.GOARCH, t.TempDir())

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
