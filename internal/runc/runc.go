package runc

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// DefaultWaitDelay bounds how long a command's Wait waits, once the
// runtime has exited or been killed, for whatever it left behind to let go
// of its output, and how long a killed runtime has to go.
const DefaultWaitDelay = 5 * time.Second

// logFD is the descriptor, in the runtime, of the log file this package
// hands it: the first of cmd.ExtraFiles.
const logFD = 3

// Runtime runs one OCI runtime binary (runc, or crun, which takes the same
// commands and global flags) against one state root. Every command logs in
// JSON to a file of its own, read for the error message; runs in a process
// group of its own, killed as a whole when its context ends; and cannot
// hold its caller longer than WaitDelay past its own end.
type Runtime struct {
	Binary string // runc, crun or a runtime's path; "" is runc
	Root   string // the runtime's --root; "" leaves its default
	// LogDir holds the unlinked file a command logs to (its stderr, too,
	// so a detached container's init may keep it open); "" is
	// os.TempDir().
	LogDir    string
	WaitDelay time.Duration // 0 is DefaultWaitDelay
}

// New is a Runtime of binary over the state root.
func New(binary, root string) *Runtime { return &Runtime{Binary: binary, Root: root} }

// Name is the runtime's binary as given, for messages.
func (r *Runtime) Name() string {
	if r.Binary == "" {
		return "runc"
	}
	return r.Binary
}

// RunOpts are the options of Run.
type RunOpts struct {
	Bundle        string // the bundle directory; "" is the working directory
	Detach        bool   // return once the container's init has started
	ConsoleSocket string // where the runtime sends the pty master of a terminal container
	PidFile       string // where the runtime writes the init's host pid
}

// Run creates and starts container id. Detached, it returns once the
// container's init has started, else once the container has exited (a
// non-zero exit is an error).
func (r *Runtime) Run(ctx context.Context, id string, opts RunOpts) error {
	args := []string{"run"}
	if opts.Bundle != "" {
		args = append(args, "--bundle", opts.Bundle)
	}
	if opts.Detach {
		args = append(args, "--detach")
	}
	if opts.ConsoleSocket != "" {
		args = append(args, "--console-socket", opts.ConsoleSocket)
	}
	if opts.PidFile != "" {
		args = append(args, "--pid-file", opts.PidFile)
	}
	_, err := r.run(ctx, nil, id, append(args, id)...)
	return err
}

// Delete removes container id; force kills whatever still runs in it
// first. A container that does not exist is an error matching
// api.ErrNotFound.
func (r *Runtime) Delete(ctx context.Context, id string, force bool) error {
	args := []string{"delete"}
	if force {
		args = append(args, "--force")
	}
	_, err := r.run(ctx, nil, id, append(args, id)...)
	return err
}

// State is what the runtime's state command reports of a container.
type State struct {
	ID     string `json:"id"`
	Status string `json:"status"` // creating, created, running, paused, stopped
	Pid    int    `json:"pid"`
	Bundle string `json:"bundle"`
}

// State asks the runtime how container id is.
func (r *Runtime) State(ctx context.Context, id string) (State, error) {
	var st State
	out, err := r.run(ctx, new(bytes.Buffer), id, "state", id)
	if err != nil {
		return st, err
	}
	if err := json.Unmarshal(out, &st); err != nil {
		return st, fmt.Errorf("%s state %s: %w", r.Name(), id, err)
	}
	return st, nil
}

// Pause freezes container id.
func (r *Runtime) Pause(ctx context.Context, id string) error {
	_, err := r.run(ctx, nil, id, "pause", id)
	return err
}

// Resume thaws container id.
func (r *Runtime) Resume(ctx context.Context, id string) error {
	_, err := r.run(ctx, nil, id, "resume", id)
	return err
}

// Kill sends signal (a name, SIGTERM, or a number) to container id's init.
func (r *Runtime) Kill(ctx context.Context, id, signal string) error {
	_, err := r.run(ctx, nil, id, "kill", id, signal)
	return err
}

// Limits are the cgroup limits Update sets; nil leaves one as it is.
type Limits struct {
	Memory     *int64 // bytes
	MemorySwap *int64 // bytes of memory and swap together
	CPUQuota   *int64 // microseconds per period
	CPUPeriod  *uint64
	Pids       *int64
}

// Update writes new limits into running container id's cgroups.
func (r *Runtime) Update(ctx context.Context, id string, l Limits) error {
	args := []string{"update"}
	if l.Memory != nil {
		args = append(args, "--memory", strconv.FormatInt(*l.Memory, 10))
	}
	if l.CPUQuota != nil {
		args = append(args, "--cpu-quota", strconv.FormatInt(*l.CPUQuota, 10))
	}
	if l.CPUPeriod != nil {
		args = append(args, "--cpu-period", strconv.FormatUint(*l.CPUPeriod, 10))
	}
	if l.Pids != nil {
		args = append(args, "--pids-limit", strconv.FormatInt(*l.Pids, 10))
	}
	if l.MemorySwap != nil {
		args = append(args, "--memory-swap", strconv.FormatInt(*l.MemorySwap, 10))
	}
	_, err := r.run(ctx, nil, id, append(args, id)...)
	return err
}

// Version is the first line of the runtime's --version.
func (r *Runtime) Version(ctx context.Context) (string, error) {
	cmd := r.bare(ctx, "--version")
	var out bytes.Buffer
	cmd.Stdout = &out
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("%s --version: %w", r.Name(), err)
	}
	first, _, _ := strings.Cut(strings.TrimSpace(out.String()), "\n")
	return first, nil
}

// run runs one command with stdout into out (nil: /dev/null) and returns
// what it printed there.
func (r *Runtime) run(ctx context.Context, out *bytes.Buffer, id string, args ...string) ([]byte, error) {
	log, err := r.openLog()
	if err != nil {
		return nil, fmt.Errorf("%s %s %s: %w", r.Name(), args[0], id, err)
	}
	defer log.Close()
	cmd := r.command(ctx, log, args...)
	if out != nil {
		cmd.Stdout = out
	}
	// Its complaints go to the log too: what it says outside the JSON
	// log (a Go panic, a missing library) is the message where the log
	// has none. A file, not a pipe a detached init could hold open.
	cmd.Stderr = log
	if err := cmd.Run(); err != nil {
		return nil, r.failure(ctx, args[0], id, log, err)
	}
	if out == nil {
		return nil, nil
	}
	return out.Bytes(), nil
}

// command is the runtime's command line for args, logging in JSON to log
// (nil: the caller sets cmd.ExtraFiles to it before starting).
func (r *Runtime) command(ctx context.Context, log *os.File, args ...string) *exec.Cmd {
	global := []string{"--log", "/proc/self/fd/" + strconv.Itoa(logFD), "--log-format", "json"}
	if r.Root != "" {
		global = append(global, "--root", r.Root)
	}
	cmd := r.bare(ctx, append(global, args...)...)
	if log != nil {
		cmd.ExtraFiles = []*os.File{log}
	}
	return cmd
}

// bare is the runtime's command line for args, in a process group of its
// own that the context's end kills whole.
func (r *Runtime) bare(ctx context.Context, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, r.Name(), args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return killGroup(cmd) }
	cmd.WaitDelay = r.WaitDelay
	if cmd.WaitDelay == 0 {
		cmd.WaitDelay = DefaultWaitDelay
	}
	// NOTIFY_SOCKET makes runc talk to systemd for the container.
	cmd.Env = withoutVar(os.Environ(), "NOTIFY_SOCKET")
	return cmd
}

// killGroup kills the process group cmd leads (its own, or its session's).
func killGroup(cmd *exec.Cmd) error {
	if err := syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL); err != nil {
		return cmd.Process.Kill()
	}
	return nil
}

// withoutVar is env without the variable name.
func withoutVar(env []string, name string) []string {
	out := env[:0:0]
	for _, kv := range env {
		if !strings.HasPrefix(kv, name+"=") {
			out = append(out, kv)
		}
	}
	return out
}

// openLog makes the unlinked, append-only file a command logs to; the
// runtime opens it again through /proc/self/fd, so it needs no name and
// leaves nothing behind.
func (r *Runtime) openLog() (*os.File, error) {
	f, err := os.CreateTemp(r.LogDir, ".runtime-log-*")
	if err != nil {
		return nil, fmt.Errorf("runtime log: %w", err)
	}
	os.Remove(f.Name())
	// Append-only, so the runtime's stderr and its JSON log, two
	// descriptions of the one file, do not write over each other.
	raw, err := f.SyscallConn()
	if err == nil {
		ctlErr := raw.Control(func(fd uintptr) {
			_, err = fcntlSetAppend(int(fd))
		})
		if err == nil {
			err = ctlErr
		}
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("runtime log: %w", err)
	}
	return f, nil
}
