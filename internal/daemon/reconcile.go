package daemon

import (
	"context"
	"path/filepath"

	"github.com/polyvisor/polyvisor/internal/driver"
	"github.com/polyvisor/polyvisor/internal/network"
	"github.com/polyvisor/polyvisor/pkg/api"
)

// reconcile brings the daemon's table in line with the host on start: it
// loads every definition, adopts guests whose processes are alive, releases
// those that ended while no daemon watched, and lets each driver sweep what
// crashed operations left behind. Liveness comes from the processes, never
// from the files.
func (d *Daemon) reconcile(ctx context.Context) error {
	if err := d.templates.Sweep(); err != nil {
		d.log.Warn("sweep templates", "err", err)
	}
	d.sweepGuestDir()
	names, err := d.store.Names()
	if err != nil {
		return err
	}
	live := map[string]bool{}
	liveIfs := map[string]bool{}
	bridges, _ := d.networks.Names()
	adopted, released := 0, 0
	for _, name := range names {
		def, err := d.store.Load(name)
		if err != nil {
			// Nothing is lost: the directory stays for the admin to fix,
			// and whatever of the guest may still run is left running
			// (a typo in a running guest's file must not kill it): the
			// sweeps below count it live, on any of our networks.
			d.log.Error("skipping a guest whose definition does not load", "guest", name, "err", err)
			d.guests.markBroken(name, err, d.store.IDMapBase(name))
			live[name] = true
			for _, bridge := range bridges {
				liveIfs[network.NICOf(name, bridge).HostIf] = true
			}
			continue
		}
		e := d.guests.release(name, def)
		// No snapshot operation runs yet: a staging one is a crash's.
		sweepDotEntries(d.snapshotsDir(name), d.log)
		sweepDotEntries(filepath.Join(d.layout.GuestDir(name), "disks"), d.log) // a restore's staging tree
		if def.Status.State != api.StateRunning && def.Status.Intent == "" {
			continue
		}
		drv, err := d.driverFor(def)
		if err != nil {
			d.log.Error("guest of an unknown class", "guest", name, "class", def.Class)
			continue
		}
		if def.Status.Intent != "" {
			settled, err := d.finishInterrupted(ctx, e, drv)
			if err != nil {
				d.log.Error("finish an interrupted operation", "guest", name, "intent", def.Status.Intent, "err", err)
			}
			if settled {
				released++
				continue
			}
			if def = e.def.Load(); def.Status.State != api.StateRunning {
				continue
			}
		}
		if running(def) {
			live[name] = true
			for _, nic := range network.GuestNICs(def) {
				liveIfs[nic.HostIf] = true
			}
			// A guest the driver cannot recover (a handle it does not
			// know) is left running as it is, never killed.
			if err := drv.Recover(ctx, def); err != nil {
				d.log.Error("recover adopted guest", "guest", name, "err", err)
			}
			d.watch(e, def)
			adopted++
			continue
		}
		if err := d.markStopped(ctx, e, drv); err != nil {
			d.log.Warn("release guest that ended while the daemon was down", "guest", name, "err", err)
		}
		released++
	}
	d.finishInterruptedImports(ctx)
	for _, drv := range d.cfg.Drivers.All() {
		if s, ok := drv.(driver.Sweeper); ok {
			if err := s.Sweep(ctx, live); err != nil {
				d.log.Warn("sweep orphans", "class", drv.Name(), "err", err)
			}
		}
	}
	// Interfaces of guests that ended unwatched: a veth whose container's
	// namespace lingers, a tap of ours that QEMU did not take away.
	if removed, err := network.SweepInterfaces(liveIfs, bridges); err != nil || len(removed) > 0 {
		d.log.Info("swept orphaned guest interfaces", "removed", removed, "err", err)
	}
	d.log.Info("reconciled", "guests", len(names), "adopted", adopted, "released", released)
	return nil
}
