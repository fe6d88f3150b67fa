// Package monitor is polyvisor-monitor's logic: the small per-guest process
// that starts a container with runc, owns its console and outlives the
// daemon, in the way conmon does for podman and the shim for containerd.
//
// The daemon starts `polyvisor-monitor` (see Config.Args) in a new session,
// with stdin, stdout and stderr on /dev/null and the write end of a pipe as
// fd 3, and reads one line from that pipe: "ok <init pid>" or
// "error <message>" (see ParseReady). While the guest runs, the monitor
// keeps its console in a rotated log file and serves it on
// RUNDIR/console.sock in the framed protocol of package stream. When the
// guest's init exits, the monitor writes RUNDIR/exit.json (see ExitStatus),
// runs `runc delete --force`, removes its sockets and exits 0.
//
// The monitor ignores SIGHUP, SIGINT and SIGTERM: it forwards nothing to the
// guest and keeps running, because the daemon stops a guest by signalling
// its init directly and the monitor must finish by itself once init is gone.
// SIGKILL does kill it; the guest then loses its console (the shell on it
// gets SIGHUP) and no exit.json is written, which the daemon's reconcile
// handles.
package monitor

import (
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
)

// Names of the files the monitor keeps in its run directory (Config.Dir).
const (
	// ConsoleSocketName is the unix socket that attach clients connect to.
	ConsoleSocketName = "console.sock"
	// ConsoleRecvSocketName is the socket passed to runc's --console-socket;
	// it exists only while the container starts.
	ConsoleRecvSocketName = "console-recv.sock"
	// InitPidName is runc's --pid-file: the container init's host pid.
	InitPidName = "init.pid"
	// ExitFileName holds the ExitStatus once the guest's init has exited.
	ExitFileName = "exit.json"
	// LogName is the monitor's own diagnostic log (slog text format).
	LogName = "monitor.log"
)

// DefaultLogMax is the console log size at which it is rotated.
const DefaultLogMax = 1 << 20

// ErrInvalid marks a Config the monitor cannot run with.
var ErrInvalid = errors.New("invalid monitor configuration")

// Config is what one monitor needs to start and supervise one container.
type Config struct {
	ID       string // runc's container id
	Bundle   string // the OCI bundle directory; runc runs with it as cwd
	Runc     string // path of the runc binary
	RuncRoot string // runc's --root: where it keeps container state
	Dir      string // the monitor's run directory: sockets, pid, exit file, log
	Log      string // the console log file; rotated to Log+".1"
	LogMax   int64  // console log size that triggers rotation, in bytes
}

// Validate reports the first missing or unusable field.
func (c Config) Validate() error {
	for _, f := range []struct{ flag, value string }{
		{"--id", c.ID}, {"--bundle", c.Bundle}, {"--runc", c.Runc},
		{"--runc-root", c.RuncRoot}, {"--dir", c.Dir}, {"--log", c.Log},
	} {
		if f.value == "" {
			return fmt.Errorf("%s is required: %w", f.flag, ErrInvalid)
		}
	}
	if c.LogMax <= 0 {
		return fmt.Errorf("--log-max must be positive, got %d: %w", c.LogMax, ErrInvalid)
	}
	if !filepath.IsAbs(c.Dir) {
		return fmt.Errorf("--dir %q must be absolute: %w", c.Dir, ErrInvalid)
	}
	return nil
}

// Args returns the command-line arguments that make polyvisor-monitor run
// with c, for the daemon to start it with.
func (c Config) Args() []string {
	return []string{
		"--id", c.ID,
		"--bundle", c.Bundle,
		"--runc", c.Runc,
		"--runc-root", c.RuncRoot,
		"--dir", c.Dir,
		"--log", c.Log,
		"--log-max", strconv.FormatInt(c.LogMax, 10),
	}
}

// path returns the path of a file in the run directory.
func (c Config) path(name string) string {
	return filepath.Join(c.Dir, name)
}
