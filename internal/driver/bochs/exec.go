package bochs

import (
	"context"
	"fmt"
	"time"

	"github.com/polyvisor/polyvisor/internal/driver"
	"github.com/polyvisor/polyvisor/internal/guest"
	"github.com/polyvisor/polyvisor/internal/monitor/monitored"
	"github.com/polyvisor/polyvisor/pkg/api"
)

// agentWait bounds the wait for a guest's agent at an exec: a booted guest
// with one answers within a second or two over Bochs's serial line.
const agentWait = 15 * time.Second

// Exec implements driver.Execer through the guest agent on com2; a guest
// whose agent does not answer there (its template's agent knows only
// virtio-serial) is refused in one line.
func (d *Driver) Exec(ctx context.Context, def *guest.Definition, req api.ExecRequest, stdio driver.Stdio) (int, error) {
	if !monitored.Process(def).Alive() {
		return 0, fmt.Errorf("guest %s: %w: start it first", def.Name, api.ErrNotRunning)
	}
	wait, cancel := context.WithTimeout(ctx, agentWait)
	c, err := d.agent(wait, def)
	cancel()
	if err != nil {
		if ctx.Err() != nil {
			return 0, ctx.Err()
		}
		return 0, fmt.Errorf("%w: exec: bochs guest %s has no agent channel: %w (rebuild its template with this polyvisor, whose agent serves /dev/ttyS1 too); use 'polyvisor console %s'", api.ErrNotAvailable, def.Name, errNoAgent, def.Name)
	}
	return driver.ExecThroughAgent(ctx, &d.agents, def.Name, c, req, stdio)
}
