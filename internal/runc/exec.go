package runc

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"syscall"
)

// ExecOpts are the options of Exec.
type ExecOpts struct {
	Cwd string   // "" is the container's
	Env []string // KEY=value, added to the container's
	// TTY runs the process on a terminal: the command's stdin, stdout
	// and stderr must then be one terminal's slave, which becomes the
	// runtime's controlling terminal in a session of its own.
	TTY bool
}

// Process is a runtime's exec, made by Exec: set Cmd's stdio (and
// WaitDelay if the default does not suit), then Start and Wait.
type Process struct {
	Cmd *exec.Cmd
	r   *Runtime
	ctx context.Context
	log *os.File
	id  string

	failed *Error // what the runtime logged, set by Wait
}

// Exec prepares argv to run in container id with the runtime's exec, in
// the foreground: the runtime exits with the process's exit code.
func (r *Runtime) Exec(ctx context.Context, id string, opts ExecOpts, argv []string) (*Process, error) {
	if len(argv) == 0 {
		return nil, fmt.Errorf("%s exec %s: no command: give the program to run", r.Name(), id)
	}
	args := []string{"exec"}
	if opts.Cwd != "" {
		args = append(args, "--cwd", opts.Cwd)
	}
	for _, e := range opts.Env {
		args = append(args, "--env", e)
	}
	if opts.TTY {
		args = append(args, "--tty")
	}
	args = append(append(args, id), argv...)
	// The log is opened by Start, so a Process never started holds nothing.
	cmd := r.command(ctx, nil, args...)
	if opts.TTY {
		// A session leads its own process group too, which Cancel kills.
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true}
	}
	return &Process{Cmd: cmd, r: r, ctx: ctx, id: id}, nil
}

// Start starts the runtime; on failure the Process is done with.
func (p *Process) Start() error {
	log, err := p.r.openLog()
	if err != nil {
		return fmt.Errorf("%s exec %s: %w", p.r.Name(), p.id, err)
	}
	p.log = log
	p.Cmd.ExtraFiles = []*os.File{log}
	if err := p.Cmd.Start(); err != nil {
		defer log.Close()
		return p.r.failure(p.ctx, "exec", p.id, log, err)
	}
	return nil
}

// Wait waits for the runtime and returns the exit code it passed on: the
// process's, or its own when it could not run the process (runc exits 255
// then, and Failure says why). The error is for a runtime that gave no
// exit code: killed, or its output not released in time.
func (p *Process) Wait() (int, error) {
	defer p.log.Close()
	err := p.Cmd.Wait()
	if msg := logMessage(p.log); msg != "" {
		cause := err
		if cause == nil {
			cause = errors.New("the runtime logged an error")
		}
		p.failed = &Error{Runtime: p.r.Name(), Command: "exec", ID: p.id, Message: msg, Err: cause, Kind: kindOf(msg)}
	}
	if err == nil {
		return 0, nil
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) && ee.ExitCode() >= 0 && p.ctx.Err() == nil {
		return ee.ExitCode(), nil
	}
	return -1, p.r.failure(p.ctx, "exec", p.id, p.log, err)
}

// Failure is, once Wait has returned, the runtime's own complaint: an
// *Error when it logged an error (it could not run the process, and the
// exit code is its own), nil when the exit code is the process's.
func (p *Process) Failure() error {
	if p.failed == nil {
		return nil
	}
	return p.failed
}
