package container

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/polyvisor/polyvisor/internal/runc"
)

// runtime is the OCI runtime against this daemon's state root.
func (d *Driver) runtime() *runc.Runtime {
	return runc.New(d.opts.Runtime, d.opts.Layout.RuncRoot())
}

// deleteContainer removes the runtime's container name, killing whatever
// still runs in it; one already gone is fine.
func (d *Driver) deleteContainer(ctx context.Context, name string) error {
	// The runtime keeps a container's state in a directory of its root
	// (runc and crun alike); once the monitor has deleted the container,
	// as it does when init ends, asking the runtime again would only add
	// a process start to every stop.
	if _, err := os.Lstat(filepath.Join(d.opts.Layout.RuncRoot(), name)); errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err := d.runtime().Delete(ctx, name, true); err != nil && !runc.IsNotExist(err) {
		return err
	}
	return nil
}
