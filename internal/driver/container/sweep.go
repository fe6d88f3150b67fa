package container

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/polyvisor/polyvisor/internal/fsutil"
	"github.com/polyvisor/polyvisor/internal/monitor/monitored"
)

// Sweep implements driver.Sweeper: after a daemon crash, or a guest that
// ended while no daemon watched, it unmounts orphaned root trees, an
// isolated guest's idmapped template mount (lower) with its rootfs, and
// disk quota images (their loop devices go with the mounts), and removes
// orphaned cgroups, runtime state and run directories.
func (d *Driver) Sweep(ctx context.Context, live map[string]bool) error {
	var errs []error
	guests := d.opts.Layout.GuestsDir() + string(filepath.Separator)
	mounts, err := fsutil.MountPoints()
	if err != nil {
		return err
	}
	// Newest first: a guest's overlay goes before the quota image under it.
	slices.Reverse(mounts)
	for _, point := range mounts {
		rel, ok := strings.CutPrefix(point, guests)
		if !ok {
			continue
		}
		name, sub, _ := strings.Cut(rel, string(filepath.Separator))
		// A dot entry is a temporary mount of an export that a crash
		// interrupted (no operation runs while the daemon starts).
		if !live[name] || strings.HasPrefix(sub, ".") {
			d.log.Info("unmounting orphaned rootfs", "path", point)
			errs = append(errs, fsutil.Unmount(point))
		}
	}
	if states, err := os.ReadDir(d.opts.Layout.RuncRoot()); err == nil {
		for _, s := range states {
			if !live[s.Name()] {
				d.log.Info("removing orphaned runtime state", "container", s.Name())
				if err := d.deleteContainer(ctx, s.Name()); err != nil {
					errs = append(errs, err)
				}
			}
		}
	}
	errs = append(errs, monitored.SweepOrphans(d.opts.Layout, live, d.log))
	return errors.Join(errs...)
}
