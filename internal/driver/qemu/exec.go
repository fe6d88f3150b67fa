package qemu

import (
	"context"
	"fmt"
	"net"
	"time"

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
	c, err := d.execAgent(ctx, def)
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

// agentWaitNoAgent bounds the wait for an agent in a guest whose disk may
// have none (an imported one), so exec fails instead of hanging; a guest
// that started less than BootTimeout ago may still be booting and gets
// the rest of it.
const agentWaitNoAgent = 15 * time.Second

// execAgent returns the guest's agent for an exec.
func (d *Driver) execAgent(ctx context.Context, def *guest.Definition) (*agent.Client, error) {
	t, _, err := d.template(def)
	if err != nil || !t.Boot.NoAgent {
		return d.agent(ctx, def)
	}
	deadline := time.Now().Add(agentWaitNoAgent)
	if booting := def.Status.StartedAt.Add(BootTimeout); booting.After(deadline) {
		deadline = booting
	}
	wait, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	c, err := d.agent(wait, def)
	if err != nil && ctx.Err() == nil {
		return nil, fmt.Errorf("%w: exec in %s: no polyvisor agent answered: its disk was imported and may have none; use 'polyvisor console %s'", api.ErrNotAvailable, def.Name, def.Name)
	}
	return c, err
}
