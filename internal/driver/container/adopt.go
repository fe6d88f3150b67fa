package container

import (
	"context"
	"fmt"

	"github.com/polyvisor/polyvisor/internal/guest"
)

// Recover implements driver.Driver: the container is found again from its
// handle, and one the runtime reports paused was frozen by a snapshot or
// copy whose daemon died before thawing it (polyvisor pauses containers
// for nothing else), and is resumed, or exec, stop and delete would fail
// on it for good.
func (d *Driver) Recover(ctx context.Context, def *guest.Definition) error {
	h, err := d.readHandle(def)
	if err != nil {
		return fmt.Errorf("adopt %s: %w", def.Name, err)
	}
	state, err := d.runtime().State(ctx, h.ID)
	if err != nil {
		return fmt.Errorf("adopt %s: %w", def.Name, err)
	}
	if h.Supervised {
		// The copy of its console that hands it to another supervisor,
		// should this one die.
		if runtime, err := d.runtimePath(); err == nil {
			if err := d.supervisor.Reclaim(ctx, d.monitorConfig(def, runtime), initIdentity(def)); err != nil {
				d.log.Warn("the guest's console would not outlive its supervisor", "guest", def.Name, "err", err)
			}
		}
	}
	if state.Status != "paused" {
		return nil
	}
	if err := d.runtime().Resume(ctx, h.ID); err != nil {
		return fmt.Errorf("adopt %s: thaw the container an interrupted operation froze: %w", def.Name, err)
	}
	d.log.Info("thawed a container an interrupted snapshot or copy had frozen", "guest", def.Name)
	return nil
}
