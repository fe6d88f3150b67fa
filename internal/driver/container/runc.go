package container

import (
	"context"

	"github.com/polyvisor/polyvisor/internal/runc"
)

// runtime is the OCI runtime against this daemon's state root.
func (d *Driver) runtime() *runc.Runtime {
	return runc.New(d.opts.Runtime, d.opts.Layout.RuncRoot())
}

// deleteContainer removes the runtime's container name, killing whatever
// still runs in it; one already gone is fine.
func (d *Driver) deleteContainer(ctx context.Context, name string) error {
	if err := d.runtime().Delete(ctx, name, true); err != nil && !runc.IsNotExist(err) {
		return err
	}
	return nil
}
