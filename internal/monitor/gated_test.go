package monitor_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/polyvisor/polyvisor/internal/monitor"
	"github.com/polyvisor/polyvisor/internal/monitor/monitored"
)

// TestAGatedMonitorRunsTheContainerOnlyWhenLetGo: a monitor begun ahead
// of its guest runs nothing until Go, then runs it as a plain start does;
// a cancelled one ends without running anything or leaving a file.
func TestAGatedMonitorRunsTheContainerOnlyWhenLetGo(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	g := newTestGuest(t, []string{"/bin/sh"}, monitor.DefaultLogMax)
	l := &monitored.Launcher{Monitor: g.bin}
	defer l.Wait()
	state := filepath.Join(g.cfg.RuncRoot, g.cfg.ID)

	p, err := l.Begin(g.cfg)
	if err != nil {
		t.Fatal(err)
	}
	// Time enough for a monitor that did not wait to have run runc.
	waitFor(t, 10*time.Second, "the monitor's log", func() bool {
		_, err := os.Stat(filepath.Join(g.cfg.Dir, monitor.LogName))
		return err == nil
	})
	time.Sleep(500 * time.Millisecond)
	if _, err := os.Stat(state); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the container exists before Go: %v", err)
	}
	status, err := p.Go(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if processGone(status.InitPID) || processGone(status.MonitorPID) {
		t.Fatalf("after Go: init %d or monitor %d is not running", status.InitPID, status.MonitorPID)
	}
	if err := syscall.Kill(status.InitPID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the monitor to exit", func() bool { return processGone(status.MonitorPID) })
	g.checkNothingLeft()

	// A second start of the same guest, cancelled; the daemon resets the
	// run dir before each start.
	for _, name := range []string{monitor.InitPidName, monitor.ExitFileName} {
		if err := os.Remove(filepath.Join(g.cfg.Dir, name)); err != nil && !errors.Is(err, os.ErrNotExist) {
			t.Fatal(err)
		}
	}
	p, err = l.Begin(g.cfg)
	if err != nil {
		t.Fatal(err)
	}
	p.Cancel(ctx)
	if _, err := os.Stat(state); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a cancelled start made the container: %v", err)
	}
	for _, name := range []string{monitor.InitPidName, monitor.ExitFileName, monitor.ConsoleSocketName, monitor.ConsoleRecvSocketName} {
		if _, err := os.Stat(filepath.Join(g.cfg.Dir, name)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("a cancelled start left %s: %v", name, err)
		}
	}
	if pids := pidsOf(g.bin); len(pids) > 0 {
		t.Errorf("monitors still running after Cancel returned: %v", pids)
	}
}

// TestStartFdGoesWithAContainer: --start-fd is refused with a command
// and when negative, and survives Args.
func TestStartFdGoesWithAContainer(t *testing.T) {
	cfg := monitor.Config{ID: "web", Dir: "/run/x", Log: "/var/x.log", LogMax: 1, Bundle: "/b", Runc: "/runc", RuncRoot: "/r", StartFd: 4}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("a container with --start-fd 4: %v", err)
	}
	if args := cfg.Args(); !containsPair(args, "--start-fd", "4") {
		t.Errorf("Args %q lack --start-fd 4", args)
	}
	bad := cfg
	bad.StartFd = -1
	if err := bad.Validate(); !errors.Is(err, monitor.ErrInvalid) {
		t.Errorf("--start-fd -1: got %v, want ErrInvalid", err)
	}
	bad = monitor.Config{ID: "vm", Dir: "/run/x", Log: "/var/x.log", LogMax: 1, Command: []string{"/bin/true"}, StartFd: 4}
	if err := bad.Validate(); !errors.Is(err, monitor.ErrInvalid) {
		t.Errorf("--start-fd with a command: got %v, want ErrInvalid", err)
	}
}

func containsPair(args []string, flag, value string) bool {
	for i := 0; i+1 < len(args); i++ {
		if args[i] == flag && args[i+1] == value {
			return true
		}
	}
	return false
}
