package main

import (
	"bytes"
	"context"
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/polyvisor/polyvisor/internal/agent"
	"github.com/polyvisor/polyvisor/internal/agent/agenttest"
)

// buildAgent builds the agent as VM templates do, for goarch, into dir.
func buildAgent(t *testing.T, goarch, dir string) string {
	t.Helper()
	out := filepath.Join(dir, "polyvisor-agent-"+goarch)
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags=-s", "-o", out, ".")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+goarch)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build for %s: %v\n%s", goarch, err, b)
	}
	return out
}

// TestCrossCompiles builds the agent for every guest architecture polyvisor
// templates ship and checks that each is a static executable for that
// machine, which any guest userland can run.
func TestCrossCompiles(t *testing.T) {
	dir := t.TempDir()
	for goarch, machine := range map[string]elf.Machine{
		"amd64":   elf.EM_X86_64,
		"arm64":   elf.EM_AARCH64,
		"riscv64": elf.EM_RISCV,
	} {
		t.Run(goarch, func(t *testing.T) {
			f, err := elf.Open(buildAgent(t, goarch, dir))
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

func TestBinaryServesAHost(t *testing.T) {
	bin := buildAgent(t, runtime.GOARCH, t.TempDir())
	port := agenttest.NewPort(t)
	var logs bytes.Buffer
	cmd := exec.Command(bin, "--port", port.Device, "--log-level", "debug")
	cmd.Stderr = &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
	})

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := agent.Dial(ctx, port.Socket)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer c.Close()
	if c.Info().Version != agent.Version {
		t.Fatalf("info %+v", c.Info())
	}
	var out bytes.Buffer
	code, err := c.Exec(ctx, agent.ExecRequest{Command: []string{"sh", "-c", "echo hi; exit 4"}}, nil, &out, nil, nil)
	if err != nil || code != 4 || out.String() != "hi\n" {
		t.Fatalf("exec: code %d, %v, output %q", code, err, out.String())
	}

	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-exited:
		exited <- err // for the cleanup
		if err != nil {
			t.Fatalf("agent ended with %v after SIGTERM; log:\n%s", err, logs.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("agent still running 10s after SIGTERM; log:\n%s", logs.String())
	}
	if !strings.Contains(logs.String(), "host connected") {
		t.Errorf("log does not say the host connected:\n%s", logs.String())
	}
}

func TestArguments(t *testing.T) {
	cfg, err := parseArgs([]string{"--port", "/dev/hvc1", "--log-level", "warn"})
	if err != nil || cfg.Port != "/dev/hvc1" || cfg.Log == nil {
		t.Fatalf("parse: %+v %v", cfg, err)
	}
	for _, bad := range [][]string{{"extra"}, {"--log-level", "loud"}, {"--nope"}} {
		if _, err := parseArgs(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	if _, err := parseArgs([]string{"--version"}); err != errVersion {
		t.Errorf("--version: %v", err)
	}
}
