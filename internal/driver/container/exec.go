package container

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os/exec"
	"strconv"
	"syscall"
	"time"

	"github.com/creack/pty"

	"github.com/polyvisor/polyvisor/internal/api"
	"github.com/polyvisor/polyvisor/internal/driver"
	"github.com/polyvisor/polyvisor/internal/driver/monitored"
	"github.com/polyvisor/polyvisor/internal/guest"
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
	args := []string{"--root", d.opts.Layout.RuncRoot(), "exec", "--cwd", cwd}
	for _, e := range append(append([]string{}, defaultEnv...), req.Env...) {
		args = append(args, "--env", e)
	}
	if req.TTY {
		return d.execTTY(ctx, def, args, req, stdio)
	}
	args = append(append(args, def.Name), req.Command...)
	cmd := exec.CommandContext(ctx, d.opts.Runtime, args...)
	cmd.Stdout, cmd.Stderr = stdio.Stdout, stdio.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return 0, fmt.Errorf("exec in %s: %w", def.Name, err)
	}
	// Streams are copied until the command ends, not until the client closes.
	cmd.WaitDelay = 2 * time.Second
	if err := cmd.Start(); err != nil {
		return 0, fmt.Errorf("exec in %s: %w", def.Name, err)
	}
	go func() {
		if stdio.Stdin != nil {
			io.Copy(stdin, stdio.Stdin)
		}
		stdin.Close()
	}()
	return exitCode(def.Name, cmd.Wait())
}

// execTTY runs the command on a terminal. runc only hands a pty's master
// over a console socket when it detaches, and then nobody could collect the
// exit code; so runc runs in the foreground with a pty of ours as its
// stdio and its controlling terminal: it puts that in raw mode, relays it to
// the guest's own pty, and follows its size on SIGWINCH, which the kernel
// sends whenever we resize our master.
func (d *Driver) execTTY(ctx context.Context, def *guest.Definition, args []string, req api.ExecRequest, stdio driver.Stdio) (int, error) {
	master, slave, err := pty.Open()
	if err != nil {
		return 0, fmt.Errorf("exec in %s: %w", def.Name, err)
	}
	defer master.Close()
	if req.Rows > 0 && req.Cols > 0 {
		pty.Setsize(master, &pty.Winsize{Rows: req.Rows, Cols: req.Cols})
	}
	args = append(args, "--tty", def.Name)
	cmd := exec.CommandContext(ctx, d.opts.Runtime, append(args, req.Command...)...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = slave, slave, slave
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true}
	err = cmd.Start()
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
	err = cmd.Wait()
	select {
	case <-output:
	case <-time.After(2 * time.Second):
	}
	return exitCode(def.Name, err)
}

// exitCode turns the runtime's wait result into the command's exit code.
func exitCode(name string, err error) (int, error) {
	if err == nil {
		return 0, nil
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode(), nil
	}
	return 0, fmt.Errorf("exec in %s: %w", name, err)
}

// AttachConsole implements driver.Consoler: the monitor's console socket.
func (d *Driver) AttachConsole(ctx context.Context, def *guest.Definition) (net.Conn, error) {
	return monitored.AttachConsole(ctx, def, d.runDir(def))
}

// UpdateLimits implements driver.LimitUpdater with `runc update`, which
// writes the new values into the running guest's cgroups.
func (d *Driver) UpdateLimits(ctx context.Context, def *guest.Definition) error {
	res := resources(def)
	args := []string{"update",
		"--memory", strconv.FormatInt(*res.Memory.Limit, 10),
		"--cpu-quota", strconv.FormatInt(*res.CPU.Quota, 10),
		"--cpu-period", strconv.FormatUint(*res.CPU.Period, 10),
		"--pids-limit", strconv.FormatInt(*res.Pids.Limit, 10),
	}
	if res.Memory.Swap != nil {
		args = append(args, "--memory-swap", strconv.FormatInt(*res.Memory.Swap, 10))
	}
	if err := d.runc(ctx, append(args, def.Name)...); err != nil {
		return fmt.Errorf("update limits of %s: %w", def.Name, err)
	}
	return nil
}
