package main

import (
	"bytes"
	"context"
	"errors"
	"os/exec"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/polyvisor/polyvisor/internal/agent"
	"github.com/polyvisor/polyvisor/internal/agent/agenttest"
	"github.com/polyvisor/polyvisor/internal/testenv"
)

// TestCrossCompiles checks that the agent builds static for every guest
// architecture.
func TestCrossCompiles(t *testing.T) { testenv.CheckStaticCrossBuilds(t, "polyvisor-agent") }

func TestBinaryServesAHost(t *testing.T) {
	bin := testenv.BuildStatic(t, "polyvisor-agent", runtime.GOARCH, t.TempDir())
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
	if _, err := parseArgs([]string{"--version"}); !errors.Is(err, errVersion) {
		t.Errorf("--version: %v", err)
	}
}
