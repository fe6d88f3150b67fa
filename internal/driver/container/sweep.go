package container

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/polyvisor/polyvisor/internal/cgroup"
	"github.com/polyvisor/polyvisor/internal/fsutil"
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
	removed, err := cgroup.RemoveOrphans(d.opts.Layout.CgroupParent(), live)
	if len(removed) > 0 {
		d.log.Info("removed orphaned cgroups", "cgroups", removed)
	}
	errs = append(errs, err)
	if runs, err := os.ReadDir(d.opts.Layout.RunDir()); err == nil {
		for _, r := range runs {
			if r.IsDir() && !strings.HasPrefix(r.Name(), ".") && !live[r.Name()] {
				errs = append(errs, os.RemoveAll(filepath.Join(d.opts.Layout.RunDir(), r.Name())))
			}
		}
	}
	return errors.Join(errs...)
}
