package monitor

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/polyvisor/polyvisor/internal/runc"
)

// Time limits for runc commands. runc starts a busybox bundle in about
// 20 ms; these only bound a runc that hangs, so the daemon blocked on the
// ready pipe gets an answer.
const (
	runcRunTimeout    = time.Minute
	runcDeleteTimeout = 30 * time.Second
)

// ErrExists is returned when runc already has a container with the id: the
// monitor refuses to start, and must not delete a container it did not make.
var ErrExists = errors.New("container already exists")

// checkNotExists fails when runc's state directory for the id exists.
func (m *monitor) checkNotExists() error {
	_, err := os.Stat(filepath.Join(m.cfg.RuncRoot, m.cfg.ID))
	if err == nil {
		return fmt.Errorf("runc state %s: %w", filepath.Join(m.cfg.RuncRoot, m.cfg.ID), ErrExists)
	}
	if !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("check runc state: %w", err)
	}
	return nil
}

// runtime is the guest's runc, through the one wrapper: its error output
// goes to an unlinked file in the run dir rather than a pipe, so that no
// process runc leaves behind can hold the monitor waiting for end-of-file.
func (m *monitor) runtime() *runc.Runtime {
	return &runc.Runtime{Binary: m.cfg.Runc, Root: m.cfg.RuncRoot, LogDir: m.cfg.Dir}
}

// runcRun starts the container detached; runc sends its console to
// consoleSocket and writes the init pid to RUNDIR/init.pid before exiting.
// The container's init, a child of runc, becomes the monitor's child when
// runc exits, because the monitor is a child subreaper.
func (m *monitor) runcRun(ctx context.Context, consoleSocket string) error {
	defer m.runningCommand()()
	ctx, cancel := context.WithTimeout(ctx, runcRunTimeout)
	defer cancel()
	started := time.Now()
	err := m.runtime().Run(ctx, m.cfg.ID, runc.RunOpts{
		Bundle: m.cfg.Bundle, Detach: true,
		ConsoleSocket: consoleSocket, PidFile: m.cfg.path(InitPidName),
	})
	m.log.Debug("runc run finished", "duration", time.Since(started), "err", err)
	return err
}

// runcDelete removes the container, killing whatever still runs in it, and
// its cgroups. It runs even when the caller's context is done: it is the
// cleanup.
func (m *monitor) runcDelete() error {
	defer m.runningCommand()()
	ctx, cancel := context.WithTimeout(context.Background(), runcDeleteTimeout)
	defer cancel()
	started := time.Now()
	err := m.runtime().Delete(ctx, m.cfg.ID, true)
	m.log.Debug("runc delete finished", "duration", time.Since(started), "err", err)
	return err
}

// readPidFile reads the pid runc wrote with --pid-file.
func readPidFile(path string) (int, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, fmt.Errorf("read init pid: %w", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil || pid <= 0 {
		return 0, fmt.Errorf("read init pid: %q in %s is not a pid", data, path)
	}
	return pid, nil
}
