package qemu

import (
	"context"
	"fmt"
	"net"

	"github.com/polyvisor/polyvisor/internal/agent"
	"github.com/polyvisor/polyvisor/internal/api"
	"github.com/polyvisor/polyvisor/internal/driver"
	"github.com/polyvisor/polyvisor/internal/driver/monitored"
	"github.com/polyvisor/polyvisor/internal/guest"
)

// Exec implements driver.Execer through the guest agent.
func (d *Driver) Exec(ctx context.Context, def *guest.Definition, req api.ExecRequest, stdio driver.Stdio) (int, error) {
	if !monitored.Process(def).Alive() {
		return 0, fmt.Errorf("guest %s: %w: start it first", def.Name, api.ErrNotRunning)
	}
	c, err := d.agent(ctx, def)
	if err != nil {
		return 0, err
	}
	code, err := c.Exec(ctx, agent.ExecRequest{
		Command: req.Command, Env: req.Env, Cwd: req.Cwd, TTY: req.TTY, Rows: req.Rows, Cols: req.Cols,
	}, stdio.Stdin, stdio.Stdout, stdio.Stderr, stdio.Resize)
	if err != nil {
		// A broken connection is redialled by the next exec.
		d.dropAgent(def.Name)
		return 0, fmt.Errorf("exec in %s: %w", def.Name, err)
	}
	return code, nil
}

// AttachConsole implements driver.Consoler: the serial console, held by
// the monitor.
func (d *Driver) AttachConsole(ctx context.Context, def *guest.Definition) (net.Conn, error) {
	return monitored.AttachConsole(ctx, def, d.runDir(def))
}
