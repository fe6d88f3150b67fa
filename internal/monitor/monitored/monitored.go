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
	p, err := l.begin(cfg, false)
	if err != nil {
		return guest.Status{}, err
	}
	return p.wait(ctx, cfg.ID)
}

// Pending is a container's monitor started ahead of its guest: it waits
// for Go while the caller makes the bundle and the root tree.
type Pending struct {
	id     string
	mon    procutil.Identity
	readyR *os.File
	startW *os.File
	done   chan struct{} // closed once the monitor has been reaped
}

// Begin starts a monitor for the container of cfg, which waits to run it
// until Go: starting a Go process costs milliseconds that the caller's
// mounts and bundle then overlap. Exactly one of Go and Cancel must
// follow. Should the daemon die in between, the monitor reads end-of-file
// and ends without running anything.
func (l *Launcher) Begin(cfg monitor.Config) (*Pending, error) {
	return l.begin(cfg, true)
}

func (l *Launcher) begin(cfg monitor.Config, gated bool) (*Pending, error) {
	readyR, readyW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	defer readyW.Close()
	p := &Pending{id: cfg.ID, readyR: readyR, done: make(chan struct{})}
	files := []*os.File{readyW}
	if gated {
		startR, startW, err := os.Pipe()
		if err != nil {
			readyR.Close()
			return nil, err
		}
		defer startR.Close()
		p.startW = startW
		files = append(files, startR)
		cfg.StartFd = 3 + len(files) - 1
	}
	cmd := exec.Command(l.Monitor, cfg.Args()...)
	cmd.ExtraFiles = files
	// One P from the start keeps the monitor small; set here, it spares the
	// monitor re-executing itself to get it (see cmd/polyvisor-monitor).
	cmd.Env = append(os.Environ(), "GOMAXPROCS=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		p.close()
		return nil, fmt.Errorf("start monitor: %w", err)
	}
	mon, idErr := procutil.Identify(cmd.Process.Pid)
	l.reaped.Add(1)
	go func() {
		defer l.reaped.Done()
		defer close(p.done)
		// Parked on a pidfd until the monitor exits, then reaped at once:
		// cmd.Wait alone would block in waitid and hold an OS thread of
		// the daemon's for each running guest.
		if idErr == nil {
			_ = mon.Wait(context.Background())
		}
		cmd.Wait()
	}()
	if idErr != nil {
		cmd.Process.Kill()
		p.close()
		return nil, idErr
	}
	p.mon = mon
	return p, nil
}

// Go lets the monitor run the container, and waits for its ready line.
func (p *Pending) Go(ctx context.Context) (guest.Status, error) {
	// A monitor that has ended already (bad arguments, say) cannot take the
	// byte, and has said why on its ready pipe, which wait reads.
	_, _ = p.startW.Write([]byte{'g'})
	p.startW.Close()
	p.startW = nil
	return p.wait(ctx, p.id)
}

// Cancel ends a monitor that has not been let go, and waits until it has
// ended, so that nothing of it outlives the caller's cleanup.
func (p *Pending) Cancel(ctx context.Context) {
	p.close() // end-of-file on its start pipe ends it
	select {
	case <-p.done:
	case <-ctx.Done():
		p.mon.Signal(syscall.SIGKILL)
	case <-time.After(5 * time.Second):
		p.mon.Signal(syscall.SIGKILL)
		<-p.done
	}
}

// close releases the daemon's ends of the pipes.
func (p *Pending) close() {
	if p.startW != nil {
		p.startW.Close()
		p.startW = nil
	}
	p.readyR.Close()
}

// wait reads the monitor's ready line and identifies the guest's process.
func (p *Pending) wait(ctx context.Context, id string) (guest.Status, error) {
	defer p.close()
	status := guest.Status{MonitorPID: p.mon.PID, MonitorStart: p.mon.Start}
	line, err := readReady(ctx, p.readyR)
	if err != nil {
		p.mon.Signal(syscall.SIGKILL)
		return status, err
	}
	pid, err := monitor.ParseReady(line)
	if err != nil {
		return status, err
	}
	return runningStatus(status, pid, id)
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
