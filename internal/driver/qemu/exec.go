package qemu

import (
	"context"
	"fmt"
	"net"
	"time"

	"github.com/polyvisor/polyvisor/internal/agent"
	"github.com/polyvisor/polyvisor/internal/driver"
	"github.com/polyvisor/polyvisor/internal/guest"
	"github.com/polyvisor/polyvisor/internal/monitor/monitored"
	"github.com/polyvisor/polyvisor/pkg/api"
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
	return driver.ExecThroughAgent(ctx, &d.agents, def.Name, c, req, stdio)
}

// AttachConsole implements driver.Consoler: the serial console, held by
// the monitor.
func (d *Driver) AttachConsole(ctx context.Context, def *guest.Definition) (net.Conn, error) {
	return monitored.AttachConsole(ctx, def, d.runDir(def))
}

// agentWait bounds the wait for a guest's agent, so that exec fails with a
// clear line instead of hanging on an agent that is dead, frozen or
// talking garbage. A guest with an agent has booted when its start ends
// (the start waits for the agent); one whose disk was imported and may
// have none, and that started less than BootTimeout ago, may still be
// booting and gets the rest of it.
const agentWait = 15 * time.Second

// execAgent returns the guest's agent for an exec, within agentWait.
func (d *Driver) execAgent(ctx context.Context, def *guest.Definition) (*agent.Client, error) {
	t, _, terr := d.template(def)
	noAgent := terr == nil && t.Boot.NoAgent
	deadline := time.Now().Add(agentWait)
	if booting := def.Status.StartedAt.Add(BootTimeout); noAgent && booting.After(deadline) {
		deadline = booting
	}
	waited := time.Until(deadline).Round(time.Second)
	wait, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	c, err := d.agent(wait, def)
	if err == nil || ctx.Err() != nil {
		return c, err
	}
	if noAgent {
		return nil, fmt.Errorf("%w: exec in %s: no polyvisor agent answered: its disk was imported and may have none; use 'polyvisor console %s'", api.ErrNotAvailable, def.Name, def.Name)
	}
	return nil, fmt.Errorf("exec in %s: the guest agent did not answer within %s: is the guest booted? see 'polyvisor console %s --log'", def.Name, waited, def.Name)
}
