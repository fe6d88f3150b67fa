package monitor

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"time"

	"golang.org/x/sys/unix"
)

// drainTimeout bounds the wait for the guest's last console output after its
// init has exited; processes left in the container may hold the pty open
// until runc delete kills them.
const drainTimeout = time.Second

// monitor is the supervision of one guest: the whole of a polyvisor-monitor
// run, or one guest of a supervisor's.
type monitor struct {
	cfg Config
	log *slog.Logger
	gc  *collector // the process's
	// reaper, under a supervisor, is told of each runc command, whose exit
	// os/exec collects; nil in a monitor of its own.
	reaper *reaper
	// logFile, under a supervisor, is the guest's monitor.log, closed
	// when its supervision ends.
	logFile *os.File
}

// closeLog closes the guest's monitor.log, if the monitor opened it.
func (m *monitor) closeLog() {
	if m.logFile != nil {
		m.logFile.Close()
	}
}

// runningCommand brackets a runc command for the reaper, if any: call the
// function it returns when the command has ended.
func (m *monitor) runningCommand() func() {
	if m.reaper == nil {
		return func() {}
	}
	m.reaper.commandStarts()
	return m.reaper.commandEnded
}

// signals are those the monitor receives instead of dying from them.
type signals struct {
	child   chan os.Signal // SIGCHLD: reap
	ignored chan os.Signal // SIGHUP, SIGINT, SIGTERM: log and go on
}

// takeChildren makes the process a child subreaper, so that a guest's
// init, runc's child, becomes its child when runc exits, and has it
// handle SIGCHLD, SIGHUP, SIGINT and SIGTERM itself. Handled, not ignored:
// dispositions set to "ignore" would pass to runc and on into the guest
// through exec. Call stop once done, even after an error.
func takeChildren() (_ signals, stop func(), _ error) {
	sigs := signals{child: make(chan os.Signal, 1), ignored: make(chan os.Signal, 4)}
	signal.Notify(sigs.child, unix.SIGCHLD)
	signal.Notify(sigs.ignored, unix.SIGHUP, unix.SIGINT, unix.SIGTERM)
	stop = func() {
		signal.Stop(sigs.child)
		signal.Stop(sigs.ignored)
	}
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		return sigs, stop, fmt.Errorf("become child subreaper: %w", err)
	}
	return sigs, stop, nil
}

// Run starts the container described by cfg and supervises it until its
// init exits; ready receives the "ok PID" or "error MESSAGE" line and is
// closed (it may be nil). It returns nil once the guest has exited and been
// cleaned up, and an error if the guest could not be started. When ctx is
// done while the guest runs, Run kills the guest's init and finishes as
// though it had died.
//
// Run makes the calling process a child subreaper and handles SIGCHLD,
// SIGHUP, SIGINT and SIGTERM itself: run it only as the whole of a
// dedicated process.
func Run(ctx context.Context, cfg Config, ready io.WriteCloser) error {
	r := readiness{w: ready}
	if err := cfg.Validate(); err != nil {
		r.fail(err)
		return err
	}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		err = fmt.Errorf("create run directory: %w", err)
		r.fail(err)
		return err
	}
	logFile, err := os.OpenFile(cfg.path(LogName), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		err = fmt.Errorf("open monitor log: %w", err)
		r.fail(err)
		return err
	}
	defer logFile.Close()
	m := &monitor{cfg: cfg, log: slog.New(slog.NewTextHandler(logFile, nil)).With("id", cfg.ID), gc: &collector{}}
	// stderr is /dev/null; make it the log, so that a panic or a fatal
	// runtime error leaves its trace where the rest of the story is.
	if err := unix.Dup3(int(logFile.Fd()), 2, 0); err != nil {
		m.log.Warn("redirect stderr to the monitor log", "err", err)
	}
	m.log.Info("monitor starting", "pid", os.Getpid(), "bundle", cfg.Bundle)

	sigs, stopSignals, err := takeChildren()
	defer stopSignals()
	if err != nil {
		m.log.Error("start failed", "err", err)
		r.fail(err)
		return err
	}
	started := time.Now()
	g, err := m.start(ctx)
	if err != nil {
		m.log.Error("start failed", "err", err)
		r.fail(err)
		return err
	}
	m.log.Info("guest started", "initPid", g.pid, "console", g.console.Name(), "duration", time.Since(started))
	r.ok(g.pid)
	// Once the start has settled, the monitor gives its garbage back and
	// turns the collector off until a client attaches (see collector): one
	// monitor runs per guest, and it should cost the host little.
	trim := time.AfterFunc(firstTrimDelay, m.gc.quietIfIdle)
	defer trim.Stop()
	return m.supervise(g, func() (ExitStatus, error) { return m.waitForInit(ctx, g.pid, sigs) })
}

// supervise serves the console until the guest's init exits, as waitInit
// reports, then records the exit, deletes the container and releases
// everything.
func (m *monitor) supervise(g *guest, waitInit func() (ExitStatus, error)) error {
	clients := newAttachServer(g.attach, g.console, m.gc, m.log)
	attachCtx, stopAttach := context.WithCancel(context.Background())
	defer stopAttach()
	clients.serve(attachCtx)
	consoleDone := make(chan struct{})
	go func() {
		defer close(consoleDone)
		copyConsole(g.console, g.log, clients, m.log)
	}()

	status, waitErr := waitInit()
	if waitErr == nil {
		m.log.Info("guest init exited", "exitCode", status.ExitCode, "signal", status.Signal)
		select {
		case <-consoleDone:
		case <-time.After(drainTimeout):
			m.log.Warn("console still open after init exited")
		}
		if err := writeExitFile(m.cfg.Dir, status); err != nil {
			m.log.Error("record exit", "err", err)
			waitErr = err
		}
	}
	if !m.cfg.runsCommand() {
		if err := m.runcDelete(); err != nil {
			m.log.Error("delete container", "err", err)
		}
	}
	exitCode := int32(status.ExitCode)
	if waitErr != nil {
		exitCode = -1 // unknown
	}
	clients.shutdown(exitCode)
	g.close()
	<-consoleDone
	stopAttach()
	clients.wait()
	m.log.Info("monitor exiting", "err", waitErr)
	return waitErr
}

// waitForInit reaps children until the init with pid exits, and returns its
// status. Other children (processes reparented to the monitor as
// subreaper) are reaped and forgotten. When ctx is done it kills init, and
// goes on waiting for it. Nothing here wakes on a period, so an idle
// guest's monitor sleeps.
func (m *monitor) waitForInit(ctx context.Context, pid int, sigs signals) (ExitStatus, error) {
	done := ctx.Done()
	for {
		ws, found, err := m.reap(pid)
		if found {
			return exitStatusOf(pid, ws, time.Now()), nil
		}
		if err != nil {
			return ExitStatus{}, err
		}
		select {
		case <-sigs.child:
		case sig := <-sigs.ignored:
			m.log.Info("ignoring signal: the guest keeps running", "signal", sig)
		case <-done:
			done = nil
			m.log.Info("context done, killing guest init", "err", ctx.Err())
			if err := unix.Kill(pid, unix.SIGKILL); err != nil {
				m.log.Warn("kill guest init", "err", err)
			}
		}
	}
}

// reap collects every exited child without blocking, and reports whether
// pid was among them.
func (m *monitor) reap(pid int) (unix.WaitStatus, bool, error) {
	var initStatus unix.WaitStatus
	found := false
	for {
		var ws unix.WaitStatus
		wpid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
		switch {
		case errors.Is(err, unix.EINTR):
			continue
		case errors.Is(err, unix.ECHILD):
			if found {
				return initStatus, true, nil
			}
			// Init is not (or no longer) the monitor's child: nothing
			// would ever report its exit.
			return 0, false, fmt.Errorf("wait for guest init %d: it is not a child of the monitor", pid)
		case err != nil:
			return 0, found, fmt.Errorf("wait for guest init %d: %w", pid, err)
		case wpid == 0:
			return initStatus, found, nil
		case wpid == pid:
			initStatus, found = ws, true
		default:
			m.log.Debug("reaped orphan", "pid", wpid)
		}
	}
}
