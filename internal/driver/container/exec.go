package container

import (
	"context"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/creack/pty"

	"github.com/polyvisor/polyvisor/internal/driver"
	"github.com/polyvisor/polyvisor/internal/guest"
	"github.com/polyvisor/polyvisor/internal/monitor/monitored"
	"github.com/polyvisor/polyvisor/internal/runc"
	"github.com/polyvisor/polyvisor/pkg/api"
)

// Exec implements driver.Execer with `runc exec`. The command's exit code
// is returned as is; a command killed by a signal reports 128+signal, as a
// shell would.
func (d *Driver) Exec(ctx context.Context, def *guest.Definition, req api.ExecRequest, stdio driver.Stdio) (int, error) {
	if !initIdentity(def).Alive() {
		return 0, fmt.Errorf("guest %s: %w: start it first", def.Name, api.ErrNotRunning)
	}
	cwd := req.Cwd
	if cwd == "" {
		cwd = "/"
	}
	opts := runc.ExecOpts{Cwd: cwd, Env: append(append([]string{}, defaultEnv...), req.Env...), TTY: req.TTY}
	p, err := d.runtime().Exec(ctx, def.Name, opts, req.Command)
	if err != nil {
		return 0, fmt.Errorf("exec in %s: %w", def.Name, err)
	}
	if req.TTY {
		return d.execTTY(def, p, req, stdio)
	}
	p.Cmd.Stdout, p.Cmd.Stderr = stdio.Stdout, stdio.Stderr
	stdin, err := p.Cmd.StdinPipe()
	if err != nil {
		return 0, fmt.Errorf("exec in %s: %w", def.Name, err)
	}
	// Streams are copied until the command ends, not until the client closes.
	p.Cmd.WaitDelay = 2 * time.Second
	if err := p.Start(); err != nil {
		return 0, fmt.Errorf("exec in %s: %w", def.Name, err)
	}
	go func() {
		if stdio.Stdin != nil {
			io.Copy(stdin, stdio.Stdin)
		}
		stdin.Close()
	}()
	return exitCode(def.Name, p)
}

// execTTY runs the command on a terminal. runc only hands a pty's master
// over a console socket when it detaches, and then nobody could collect the
// exit code; so runc runs in the foreground with a pty of ours as its
// stdio and its controlling terminal: it puts that in raw mode, relays it to
// the guest's own pty, and follows its size on SIGWINCH, which the kernel
// sends whenever we resize our master.
func (d *Driver) execTTY(def *guest.Definition, p *runc.Process, req api.ExecRequest, stdio driver.Stdio) (int, error) {
	master, slave, err := pty.Open()
	if err != nil {
		return 0, fmt.Errorf("exec in %s: %w", def.Name, err)
	}
	defer master.Close()
	if req.Rows > 0 && req.Cols > 0 {
		pty.Setsize(master, &pty.Winsize{Rows: req.Rows, Cols: req.Cols})
	}
	p.Cmd.Stdin, p.Cmd.Stdout, p.Cmd.Stderr = slave, slave, slave
	err = p.Start()
	slave.Close()
	if err != nil {
		return 0, fmt.Errorf("exec in %s: %w", def.Name, err)
	}
	resizeDone := make(chan struct{})
	defer close(resizeDone)
	go func() {
		for {
			select {
			case size := <-stdio.Resize:
				pty.Setsize(master, &pty.Winsize{Rows: size[0], Cols: size[1]})
			case <-resizeDone:
				return
			}
		}
	}()
	if stdio.Stdin != nil {
		go io.Copy(master, stdio.Stdin)
	}
	output := make(chan struct{})
	go func() {
		io.Copy(stdio.Stdout, master) // ends with EIO once runc exits and the slave closes
		close(output)
	}()
	code, err := exitCode(def.Name, p)
	select {
	case <-output:
	case <-time.After(2 * time.Second):
	}
	return code, err
}

// exitCode waits for the runtime and returns the command's exit code: the
// runtime passes it on, or exits 255 itself when it could not run the
// command (as before, the code is what the caller gets).
func exitCode(name string, p *runc.Process) (int, error) {
	code, err := p.Wait()
	if err != nil {
		return 0, fmt.Errorf("exec in %s: %w", name, err)
	}
	return code, nil
}

// AttachConsole implements driver.Consoler: the monitor's console socket.
func (d *Driver) AttachConsole(ctx context.Context, def *guest.Definition) (net.Conn, error) {
	return monitored.AttachConsole(ctx, def, d.runDir(def))
}

// UpdateLimits implements driver.LimitUpdater with `runc update`, which
// writes the new values into the running guest's cgroups.
func (d *Driver) UpdateLimits(ctx context.Context, def *guest.Definition) error {
	res := resources(def)
	limits := runc.Limits{
		Memory: res.Memory.Limit, MemorySwap: res.Memory.Swap,
		CPUQuota: res.CPU.Quota, CPUPeriod: res.CPU.Period, Pids: res.Pids.Limit,
	}
	if err := d.runtime().Update(ctx, def.Name, limits); err != nil {
		return fmt.Errorf("update limits of %s: %w", def.Name, err)
	}
	return nil
}
