package container

import (
	"context"
	"fmt"

	"github.com/polyvisor/polyvisor/internal/guest"
)

// Adopt implements driver.Adopter: a container the runtime reports paused
// was frozen by a snapshot or copy whose daemon died before thawing it
// (polyvisor pauses containers for nothing else), and is resumed, or exec,
// stop and delete would fail on it for good.
func (d *Driver) Adopt(ctx context.Context, def *guest.Definition) error {
	state, err := d.runtime().State(ctx, def.Name)
	if err != nil {
		return fmt.Errorf("adopt %s: %w", def.Name, err)
	}
	if state.Status != "paused" {
		return nil
	}
	if err := d.runtime().Resume(ctx, def.Name); err != nil {
		return fmt.Errorf("adopt %s: thaw the container an interrupted operation froze: %w", def.Name, err)
	}
	d.log.Info("thawed a container an interrupted snapshot or copy had frozen", "guest", def.Name)
	return nil
}
