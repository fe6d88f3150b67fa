package uml

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

// linkWindow bounds the bytes in flight to the guest's agent on ssl1: the
// UML kernel's line driver stops reading its host side for good when the
// guest's line discipline throttles input (over 3968 of its 4096 bytes
// unread), so the host never has more than this much unread by the agent.
const linkWindow = 3 << 10

// agentWait bounds the wait for a booted guest's agent, so that exec fails
// with a clear line instead of hanging on an agent that is dead or frozen.
const agentWait = 15 * time.Second

// agent returns the guest's agent connection, dialling the monitor's
// agent socket if needed (see agent.Pool).
func (d *Driver) agent(ctx context.Context, def *guest.Definition) (*agent.Client, error) {
	c, err := d.agents.Get(ctx, def.Name, func(ctx context.Context) (*agent.Client, error) {
		h, err := d.readHandle(def)
		if err != nil {
			return nil, err
		}
		return agent.Dial(ctx, h.Agent, agent.LinkWindow(linkWindow))
	})
	if err != nil {
		return nil, fmt.Errorf("reach the agent of %s: %w", def.Name, err)
	}
	return c, nil
}

// dropAgent forgets the guest's agent connection.
func (d *Driver) dropAgent(name string) { d.agents.Drop(name) }

// Exec implements driver.Execer through the guest agent.
func (d *Driver) Exec(ctx context.Context, def *guest.Definition, req api.ExecRequest, stdio driver.Stdio) (int, error) {
	if !monitored.Process(def).Alive() {
		return 0, fmt.Errorf("guest %s: %w: start it first", def.Name, api.ErrNotRunning)
	}
	wait, cancel := context.WithTimeout(ctx, agentWait)
	c, err := d.agent(wait, def)
	cancel()
	if err != nil {
		if ctx.Err() != nil {
			return 0, err
		}
		return 0, fmt.Errorf("exec in %s: the guest agent did not answer within %s: is the guest booted? see 'polyvisor console %s --log'", def.Name, agentWait, def.Name)
	}
	return driver.ExecThroughAgent(ctx, &d.agents, def.Name, c, req, stdio)
}

// AttachConsole implements driver.Consoler: the kernel's console (con0),
// held by the monitor.
func (d *Driver) AttachConsole(ctx context.Context, def *guest.Definition) (net.Conn, error) {
	return monitored.AttachConsole(ctx, def, d.runDir(def))
}

// Usage implements driver.UsageReporter: the cgroup's CPU time and memory
// (the guest's RAM included, its tmpfs file being charged there) and the
// taps' bytes. Disk bytes are not counted: the kernel's I/O thread reads
// its files through the page cache, which no per-guest counter splits.
func (d *Driver) Usage(ctx context.Context, def *guest.Definition) (api.GuestUsage, error) {
	return driver.CgroupUsage(d.cgroupPath(def), def)
}
