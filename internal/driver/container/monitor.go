package container

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/polyvisor/polyvisor/internal/api"
	"github.com/polyvisor/polyvisor/internal/guest"
	"github.com/polyvisor/polyvisor/internal/monitor"
	"github.com/polyvisor/polyvisor/internal/procutil"
)

const (
	sigTERM = unix.SIGTERM
	sigKILL = unix.SIGKILL
	// consoleLogMax bounds the console log kept under the guest's directory
	// (plus one rotated generation).
	consoleLogMax = monitor.DefaultLogMax
	// monitorReadyTimeout bounds how long a start may take.
	monitorReadyTimeout = 60 * time.Second
)

func initIdentity(def *guest.Definition) procutil.Identity {
	return procutil.Identity{PID: def.Status.InitPID, Start: def.Status.InitStart}
}

func monitorIdentity(def *guest.Definition) procutil.Identity {
	return procutil.Identity{PID: def.Status.MonitorPID, Start: def.Status.MonitorStart}
}

// ConsoleLog implements driver.Consoler.
func (d *Driver) ConsoleLog(def *guest.Definition) string {
	return filepath.Join(d.guestDir(def), "console.log")
}

// startMonitor starts polyvisor-monitor in its own session, which runs the
// container and keeps its console; it waits for the monitor's "ok PID" (or
// "error MESSAGE") line on the ready pipe.
func (d *Driver) startMonitor(ctx context.Context, def *guest.Definition) (guest.Status, error) {
	runtime, err := exec.LookPath(d.opts.Runtime)
	if err != nil {
		return guest.Status{}, fmt.Errorf("%w: OCI runtime %s is not installed: run make deps", api.ErrNotAvailable, d.opts.Runtime)
	}
	readyR, readyW, err := os.Pipe()
	if err != nil {
		return guest.Status{}, fmt.Errorf("start %s: %w", def.Name, err)
	}
	defer readyR.Close()
	cfg := monitor.Config{
		ID: def.Name, Bundle: filepath.Join(d.guestDir(def), bundleDir), Runc: runtime,
		RuncRoot: d.opts.Layout.RuncRoot(), Dir: d.runDir(def), Log: d.ConsoleLog(def), LogMax: consoleLogMax,
	}
	cmd := exec.Command(d.opts.Monitor, cfg.Args()...)
	cmd.ExtraFiles = []*os.File{readyW}
	// One P from the start keeps the monitor small; set here, it spares the
	// monitor re-executing itself to get it (see cmd/polyvisor-monitor).
	cmd.Env = append(os.Environ(), "GOMAXPROCS=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		readyW.Close()
		return guest.Status{}, fmt.Errorf("start monitor for %s: %w", def.Name, err)
	}
	readyW.Close()
	mon, idErr := procutil.Identify(cmd.Process.Pid)
	// The monitor outlives this daemon; while we live, we reap it.
	d.monitors.Add(1)
	go func() {
		defer d.monitors.Done()
		cmd.Wait()
	}()
	if idErr != nil {
		return guest.Status{}, fmt.Errorf("start %s: %w", def.Name, idErr)
	}
	status := guest.Status{MonitorPID: mon.PID, MonitorStart: mon.Start}
	line, err := readReady(ctx, readyR)
	if err != nil {
		mon.Signal(sigKILL)
		return status, fmt.Errorf("start %s: %w", def.Name, err)
	}
	pid, err := monitor.ParseReady(line)
	if err != nil {
		return status, fmt.Errorf("start %s: %w", def.Name, err)
	}
	init, err := procutil.Identify(pid)
	if err != nil {
		return status, fmt.Errorf("start %s: init exited at once: %w (see polyvisor console --log %s)", def.Name, err, def.Name)
	}
	status.State = api.StateRunning
	status.HandleVersion = handleVersion
	status.InitPID, status.InitStart = init.PID, init.Start
	status.StartedAt = time.Now().UTC()
	return status, nil
}

// readReady reads one line from the ready pipe, giving up with ctx or after
// monitorReadyTimeout.
func readReady(ctx context.Context, r *os.File) (string, error) {
	deadline := time.Now().Add(monitorReadyTimeout)
	if dl, ok := ctx.Deadline(); ok && dl.Before(deadline) {
		deadline = dl
	}
	r.SetReadDeadline(deadline)
	stop := context.AfterFunc(ctx, func() { r.SetReadDeadline(time.Now()) })
	defer stop()
	line, err := bufio.NewReader(r).ReadString('\n')
	if err != nil {
		if ctx.Err() != nil {
			return "", ctx.Err()
		}
		if line == "" {
			return "", fmt.Errorf("monitor exited without saying whether the container started: %w", err)
		}
	}
	return strings.TrimSpace(line), nil
}
