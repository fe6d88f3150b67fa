// Package monitored starts guests under polyvisor-monitor and finds them
// again: the part every driver whose guest is one host process (a runc
// container's init, a QEMU process) shares. The monitor owns the guest's
// console and is the guest's parent, so guests outlive the daemon.
package monitored

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/polyvisor/polyvisor/internal/cgroup"
	"github.com/polyvisor/polyvisor/internal/guest"
	"github.com/polyvisor/polyvisor/internal/layout"
	"github.com/polyvisor/polyvisor/internal/monitor"
	"github.com/polyvisor/polyvisor/internal/procutil"
	"github.com/polyvisor/polyvisor/pkg/api"
)

// ReadyTimeout bounds how long a monitor may take to say whether its guest
// started.
const ReadyTimeout = 60 * time.Second

// Launcher starts monitors and reaps the ones this daemon started.
type Launcher struct {
	// Monitor is the path of polyvisor-monitor.
	Monitor string
	// reaped counts the monitors started here that have not ended: while
	// the daemon lives it reaps them, so they do not linger as zombies.
	reaped sync.WaitGroup
}

// Start runs a monitor with cfg in its own session and waits for its
// ready line; the status identifies the monitor and the guest's process.
func (l *Launcher) Start(ctx context.Context, cfg monitor.Config) (guest.Status, error) {
	mon, line, err := l.launch(ctx, l.Monitor, cfg.Args())
	if err != nil {
		return guest.Status{}, err
	}
	status := guest.Status{MonitorPID: mon.PID, MonitorStart: mon.Start}
	pid, err := monitor.ParseReady(line)
	if err != nil {
		return status, err
	}
	return runningStatus(status, pid, cfg.ID)
}

// launch runs polyvisor-monitor (bin) with args in its own session, with
// the write end of a pipe as fd 3, and reads the ready line it writes
// there. It is reaped once it exits.
func (l *Launcher) launch(ctx context.Context, bin string, args []string) (procutil.Identity, string, error) {
	readyR, readyW, err := os.Pipe()
	if err != nil {
		return procutil.Identity{}, "", err
	}
	defer readyR.Close()
	cmd := exec.Command(bin, args...)
	cmd.ExtraFiles = []*os.File{readyW}
	// One P from the start keeps the monitor small; set here, it spares the
	// monitor re-executing itself to get it (see cmd/polyvisor-monitor).
	cmd.Env = append(os.Environ(), "GOMAXPROCS=1")
	// Its own session: the daemon's terminal or process group ending must
	// not reach it, nor through it the guests.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	err = cmd.Start()
	readyW.Close()
	if err != nil {
		return procutil.Identity{}, "", fmt.Errorf("start monitor: %w", err)
	}
	mon, err := procutil.Identify(cmd.Process.Pid)
	if err != nil {
		cmd.Process.Kill()
		cmd.Wait()
		return procutil.Identity{}, "", err
	}
	l.reapLater(cmd, mon)
	line, err := readReady(ctx, readyR)
	if err != nil {
		mon.Signal(syscall.SIGKILL)
		return mon, "", err
	}
	return mon, line, nil
}

// reapLater reaps cmd once it exits. Parked on a pidfd until then, it holds
// no thread of the daemon's: cmd.Wait alone would block in waitid, one OS
// thread per running guest.
func (l *Launcher) reapLater(cmd *exec.Cmd, id procutil.Identity) {
	l.reaped.Add(1)
	go func() {
		defer l.reaped.Done()
		_ = id.Wait(context.Background())
		cmd.Wait()
	}()
}

// Wait blocks until every monitor started here has ended and been reaped.
func (l *Launcher) Wait() { l.reaped.Wait() }

// deadlineReader is a ready pipe or a connection to the supervisor.
type deadlineReader interface {
	io.Reader
	SetReadDeadline(time.Time) error
}

// readReady reads one line from the ready pipe, giving up with ctx or after
// ReadyTimeout.
func readReady(ctx context.Context, r deadlineReader) (string, error) {
	deadline := time.Now().Add(ReadyTimeout)
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
			return "", fmt.Errorf("monitor exited without saying whether the guest started: %w", err)
		}
	}
	return strings.TrimSpace(line), nil
}

// Process is the guest's own process (container init, QEMU).
func Process(def *guest.Definition) procutil.Identity {
	return procutil.Identity{PID: def.Status.InitPID, Start: def.Status.InitStart}
}

// Monitor is the guest's monitor process.
func Monitor(def *guest.Definition) procutil.Identity {
	return procutil.Identity{PID: def.Status.MonitorPID, Start: def.Status.MonitorStart}
}

// WaitMonitor gives the monitor a moment to record the exit after the
// guest's process ended.
func WaitMonitor(ctx context.Context, def *guest.Definition) bool {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	return Monitor(def).Wait(ctx) == nil
}

// Ended is how a guest's process ended, once it has: the monitor is given
// a moment to record it, and its record is read from runDir.
func Ended(ctx context.Context, def *guest.Definition, runDir string) *api.Exit {
	if Monitor(def).Alive() && !Process(def).Alive() {
		WaitMonitor(ctx, def)
	}
	return ReadExit(runDir)
}

// Release is Cleanup for a guest run under a monitor of its own with
// nothing else on the host: how it ended, then its run directory and its
// cgroup go.
func Release(ctx context.Context, def *guest.Definition, runDir, cgroupPath string) (*api.Exit, error) {
	exit := Ended(ctx, def, runDir)
	if err := os.RemoveAll(runDir); err != nil {
		return exit, fmt.Errorf("clean up %s: %w", def.Name, err)
	}
	if err := cgroup.Remove(cgroupPath); err != nil {
		return exit, fmt.Errorf("clean up %s: %w", def.Name, err)
	}
	return exit, nil
}

// Kill SIGKILLs the guest's process and waits for its end, up to 10 s;
// program names it in the error (QEMU, Bochs).
func Kill(ctx context.Context, def *guest.Definition, program string) error {
	proc := Process(def)
	if err := proc.Signal(9); err != nil {
		return fmt.Errorf("stop %s: %w", def.Name, err)
	}
	hard, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := proc.Wait(hard); err != nil {
		return fmt.Errorf("stop %s: %s %d survived SIGKILL: %w", def.Name, program, proc.PID, err)
	}
	return nil
}

// ReadExit reads the exit record the monitor wrote in runDir, if any.
func ReadExit(runDir string) *api.Exit {
	data, err := os.ReadFile(filepath.Join(runDir, monitor.ExitFileName))
	if err != nil {
		return nil
	}
	var rec monitor.ExitStatus
	if json.Unmarshal(data, &rec) != nil {
		return nil
	}
	return &api.Exit{Code: rec.ExitCode, Signal: rec.Signal, ExitedAt: rec.ExitedAt}
}

// AttachConsole connects to the monitor's console socket in runDir, which
// speaks internal/stream frames.
func AttachConsole(ctx context.Context, def *guest.Definition, runDir string) (net.Conn, error) {
	if !Process(def).Alive() {
		return nil, fmt.Errorf("guest %s: %w: start it first (its saved log: polyvisor console --log %s)", def.Name, api.ErrNotRunning, def.Name)
	}
	var dialer net.Dialer
	conn, err := dialer.DialContext(ctx, "unix", filepath.Join(runDir, monitor.ConsoleSocketName))
	if err != nil {
		return nil, fmt.Errorf("attach console of %s: %w", def.Name, err)
	}
	return conn, nil
}

// SweepOrphans removes what guests run under a monitor leave on the host
// when they end while no daemon watched: their cgroups and run
// directories, for every guest not in live. Every class's guests share
// both parents, and each class's Sweep gets the live guests of all.
func SweepOrphans(l layout.Layout, live map[string]bool, log *slog.Logger) error {
	removed, err := cgroup.RemoveOrphans(l.CgroupParent(), live)
	if len(removed) > 0 {
		log.Info("removed orphaned cgroups", "cgroups", removed)
	}
	errs := []error{err}
	runs, _ := os.ReadDir(l.RunDir())
	for _, r := range runs {
		if r.IsDir() && !strings.HasPrefix(r.Name(), ".") && !live[r.Name()] {
			log.Info("removing orphaned run directory", "guest", r.Name())
			errs = append(errs, os.RemoveAll(filepath.Join(l.RunDir(), r.Name())))
		}
	}
	return errors.Join(errs...)
}
