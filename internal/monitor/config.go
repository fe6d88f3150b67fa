package monitor

import (
	"errors"
	"flag"
	"fmt"
	"io"
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
	// Command, when set, is run as the guest instead of a runc container,
	// on the console pty the monitor makes (a QEMU VM); Bundle, Runc and
	// RuncRoot are then unused.
	Command []string
	// ReadySocket is a path the Command creates once it is up (QEMU's QMP
	// socket); the start is reported only then.
	ReadySocket string
	// Cgroup, with a Command, is the cgroup (made by the daemon, as
	// "/parent/name") that the Command starts in.
	Cgroup string
	// AgentSerial, with a Command, is a unix socket (made 0600) relayed to
	// a second pty pair in raw mode, whose slave's path replaces
	// AgentPtyArg in the Command's arguments: the guest agent's serial
	// line, for emulators that give a serial port a terminal device, not
	// a socket. One client at a time; a new one replaces the old.
	AgentSerial string
}

// runsCommand reports whether the guest is a plain command, not a container.
func (c Config) runsCommand() bool { return len(c.Command) > 0 }

// Validate reports the first missing or unusable field.
func (c Config) Validate() error {
	required := []struct{ flag, value string }{{"--id", c.ID}, {"--dir", c.Dir}, {"--log", c.Log}}
	if !c.runsCommand() {
		required = append(required, []struct{ flag, value string }{
			{"--bundle", c.Bundle}, {"--runc", c.Runc}, {"--runc-root", c.RuncRoot},
		}...)
	}
	for _, f := range required {
		if f.value == "" {
			return fmt.Errorf("%s is required: %w", f.flag, ErrInvalid)
		}
	}
	if !isValidID(c.ID) {
		return fmt.Errorf("--id %q: use letters, digits and + - . _ only: %w", c.ID, ErrInvalid)
	}
	// runc runs in the bundle directory: a relative path would mean one
	// thing to the monitor and another to runc.
	for _, f := range []struct{ flag, value string }{
		{"--bundle", c.Bundle}, {"--runc-root", c.RuncRoot}, {"--dir", c.Dir}, {"--log", c.Log}, {"--ready-socket", c.ReadySocket}, {"--cgroup", c.Cgroup}, {"--agent-serial", c.AgentSerial},
	} {
		if f.value != "" && !filepath.IsAbs(f.value) {
			return fmt.Errorf("%s %q must be an absolute path: %w", f.flag, f.value, ErrInvalid)
		}
	}
	if c.AgentSerial != "" && !c.runsCommand() {
		return fmt.Errorf("--agent-serial goes with a command after --: %w", ErrInvalid)
	}
	if c.Cgroup != "" && !c.runsCommand() {
		return fmt.Errorf("--cgroup goes with a command after --; a container's cgroup is in its bundle: %w", ErrInvalid)
	}
	if c.LogMax <= 0 {
		return fmt.Errorf("--log-max must be positive, got %d: %w", c.LogMax, ErrInvalid)
	}
	return nil
}

// isValidID reports whether runc accepts id as a container id
// (^[\w+-\.]+$); it also keeps id a single path element.
func isValidID(id string) bool {
	if id == "" || id == "." || id == ".." {
		return false
	}
	for _, r := range id {
		ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' ||
			r == '_' || r == '+' || r == '-' || r == '.'
		if !ok {
			return false
		}
	}
	return true
}

// Args returns the command-line arguments that make polyvisor-monitor run
// with c, for the daemon to start it with.
func (c Config) Args() []string {
	args := []string{"--id", c.ID, "--dir", c.Dir, "--log", c.Log, "--log-max", strconv.FormatInt(c.LogMax, 10)}
	if !c.runsCommand() {
		return append(args, "--bundle", c.Bundle, "--runc", c.Runc, "--runc-root", c.RuncRoot)
	}
	if c.ReadySocket != "" {
		args = append(args, "--ready-socket", c.ReadySocket)
	}
	if c.Cgroup != "" {
		args = append(args, "--cgroup", c.Cgroup)
	}
	if c.AgentSerial != "" {
		args = append(args, "--agent-serial", c.AgentSerial)
	}
	return append(append(args, "--"), c.Command...)
}

// path returns the path of a file in the run directory.
func (c Config) path(name string) string {
	return filepath.Join(c.Dir, name)
}

// ParseArgs reads a command line written by Config.Args.
func ParseArgs(args []string) (Config, error) {
	var cfg Config
	fs := flag.NewFlagSet("polyvisor-monitor", flag.ContinueOnError)
	fs.SetOutput(io.Discard) // the error goes back to the caller, once
	fs.StringVar(&cfg.ID, "id", "", "runc container id")
	fs.StringVar(&cfg.Bundle, "bundle", "", "OCI bundle directory")
	fs.StringVar(&cfg.Runc, "runc", "runc", "runc binary")
	fs.StringVar(&cfg.RuncRoot, "runc-root", "", "runc state directory (runc --root)")
	fs.StringVar(&cfg.Dir, "dir", "", "run directory for sockets, pid and exit files, monitor.log")
	fs.StringVar(&cfg.Log, "log", "", "console log file")
	fs.Int64Var(&cfg.LogMax, "log-max", DefaultLogMax, "console log size that triggers rotation, in bytes")
	fs.StringVar(&cfg.ReadySocket, "ready-socket", "", "with a command: report the start once this path exists")
	fs.StringVar(&cfg.Cgroup, "cgroup", "", "with a command: the cgroup (/parent/name, made beforehand) it starts in")
	fs.StringVar(&cfg.AgentSerial, "agent-serial", "", "with a command: relay a raw pty, whose slave replaces "+AgentPtyArg+" in its arguments, to this unix socket")
	if err := fs.Parse(args); err != nil {
		return cfg, err
	}
	// After "--": a command to run as the guest instead of a container.
	if fs.NArg() > 0 {
		if args[len(args)-fs.NArg()-1] != "--" {
			return cfg, errors.New("unexpected argument " + fs.Arg(0) + ": a guest command goes after --")
		}
		cfg.Command = fs.Args()
	}
	return cfg, cfg.Validate()
}
