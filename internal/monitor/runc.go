package monitor

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
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

// runcRun starts the container detached; runc sends its console to
// consoleSocket and writes the init pid to RUNDIR/init.pid before exiting.
// The container's init, a child of runc, becomes the monitor's child when
// runc exits, because the monitor is a child subreaper.
func (m *monitor) runcRun(ctx context.Context, consoleSocket string) error {
	ctx, cancel := context.WithTimeout(ctx, runcRunTimeout)
	defer cancel()
	return m.runc(ctx, "run", "--detach",
		"--console-socket", consoleSocket,
		"--pid-file", m.cfg.path(InitPidName),
		m.cfg.ID)
}

// runcDelete removes the container, killing whatever still runs in it, and
// its cgroups. It runs even when the caller's context is done: it is the
// cleanup.
func (m *monitor) runcDelete() error {
	ctx, cancel := context.WithTimeout(context.Background(), runcDeleteTimeout)
	defer cancel()
	return m.runc(ctx, "delete", "--force", m.cfg.ID)
}

// runc runs one runc command in the bundle directory. Its error output goes
// to an unlinked file rather than a pipe, so that no process runc leaves
// behind can hold the monitor waiting for end-of-file.
func (m *monitor) runc(ctx context.Context, args ...string) error {
	stderr, err := os.CreateTemp(m.cfg.Dir, ".runc-stderr-*")
	if err != nil {
		return fmt.Errorf("runc %s: %w", args[0], err)
	}
	os.Remove(stderr.Name())
	defer stderr.Close()

	cmd := exec.CommandContext(ctx, m.cfg.Runc, append([]string{"--root", m.cfg.RuncRoot}, args...)...)
	cmd.Dir = m.cfg.Bundle
	cmd.Stderr = stderr
	started := time.Now()
	err = cmd.Run()
	m.log.Debug("runc finished", "args", args, "duration", time.Since(started), "err", err)
	if err != nil {
		if ctx.Err() != nil {
			err = fmt.Errorf("%w (%w)", err, ctx.Err())
		}
		return fmt.Errorf("runc %s: %w: %s", args[0], err, runcErrors(stderr))
	}
	return nil
}

// runcErrors returns what runc wrote to stderr, on one line. runc logs in
// logrus text format (time="…" level=error msg="…"); the messages of error
// lines are kept, or every line when there are none.
func runcErrors(f *os.File) string {
	data, err := io.ReadAll(io.NewSectionReader(f, 0, 64<<10))
	if err != nil {
		return "(runc's stderr unreadable: " + err.Error() + ")"
	}
	var errs, all []string
	for _, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		msg := logrusMessage(line)
		all = append(all, msg)
		if strings.Contains(line, "level=error") || strings.Contains(line, "level=fatal") {
			errs = append(errs, msg)
		}
	}
	if len(errs) == 0 {
		errs = all
	}
	if len(errs) == 0 {
		return "(no output from runc)"
	}
	return strings.Join(errs, "; ")
}

// logrusMessage returns the msg field of a logrus text line, or the line.
func logrusMessage(line string) string {
	_, quoted, found := strings.Cut(line, "msg=")
	if !found {
		return line
	}
	if prefix, err := strconv.QuotedPrefix(quoted); err == nil {
		if msg, err := strconv.Unquote(prefix); err == nil {
			return msg
		}
	}
	return line
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
