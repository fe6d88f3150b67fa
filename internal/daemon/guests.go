package daemon

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/polyvisor/polyvisor/internal/driver"
	"github.com/polyvisor/polyvisor/internal/fsutil"
	"github.com/polyvisor/polyvisor/internal/guest"
	"github.com/polyvisor/polyvisor/internal/network"
	"github.com/polyvisor/polyvisor/internal/procutil"
	"github.com/polyvisor/polyvisor/pkg/api"
)

// DefaultStopTimeout is how long stop waits after SIGTERM before SIGKILL.
const DefaultStopTimeout = 10 * time.Second

// stagingPrefix starts the names of guest directories being created.
const stagingPrefix = ".creating-"

// newDefinition validates a create request and fills its defaults.
func (d *Daemon) newDefinition(req api.GuestCreate) (*guest.Definition, error) {
	def := &guest.Definition{
		SchemaVersion: guest.SchemaVersion, Name: req.Name, Type: req.Type, Template: req.Template,
		Arch: req.Arch, CPUs: req.CPUs, Memory: guest.DefaultMemory, Processes: req.Processes,
		Privileged: req.Privileged, CreatedAt: time.Now().UTC(),
		Status: guest.Status{State: api.StateStopped},
	}
	if err := guest.ValidateName(def.Name); err != nil {
		return nil, err
	}
	if def.Type == "" {
		def.Type = guest.DefaultType
	}
	// Zero is what the request carries when the user did not say (the
	// CLI refuses an explicit 0 itself); a negative count is refused.
	if def.CPUs == 0 {
		def.CPUs = guest.DefaultCPUs
	}
	if def.Processes == 0 {
		def.Processes = guest.DefaultProcesses
	}
	if err := guest.CheckCPUs("cpus", def.CPUs); err != nil {
		return nil, err
	}
	if err := guest.CheckProcesses("processes", def.Processes); err != nil {
		return nil, err
	}
	if req.Memory != "" {
		m, err := guest.ParseSize(req.Memory)
		if err != nil {
			return nil, fmt.Errorf("%w: memory: %v", api.ErrInvalid, err)
		}
		if err := checkMemory(m, req.Force); err != nil {
			return nil, err
		}
		def.Memory = m
	}
	networks, err := network.ResolveNetworks(req.Networks, d.cfg.DefaultNetwork)
	if err != nil {
		return nil, err
	}
	def.Networks = networks
	for _, p := range req.Publish {
		f, err := network.ParsePublish(p)
		if err != nil {
			return nil, err
		}
		def.Publish = append(def.Publish, f.String())
	}
	if len(def.Publish) > 0 && len(def.Networks) == 0 {
		return nil, fmt.Errorf("%w: publish: the guest joins no network; drop --network none", api.ErrInvalid)
	}
	if def.Template == "" {
		return nil, fmt.Errorf("%w: template is empty: name one from 'polyvisor template list'", api.ErrInvalid)
	}
	if err := guest.ValidateName(def.Template); err != nil {
		return nil, fmt.Errorf("template: %w", err)
	}
	drv, err := d.cfg.Drivers.ForType(def.Type, req.Engine)
	if err != nil {
		return nil, err
	}
	def.Class = drv.Name()
	if err := drv.Define(def, req); err != nil {
		return nil, err
	}
	t, err := d.templates.Find(def.Template, def.Type, def.Arch)
	if err != nil {
		return nil, err
	}
	def.Arch, def.TemplateDigest = t.Arch, t.Digest
	if t.Boot != nil && def.Memory < guest.Size(t.Boot.MinMemory) {
		least := guest.Size(t.Boot.MinMemory)
		if req.Memory != "" {
			return nil, fmt.Errorf("%w: memory %s: guests of template %s need at least %s to boot", api.ErrInvalid, def.Memory, t.ID, least)
		}
		def.Memory = least
		if err := checkMemory(def.Memory, req.Force); err != nil {
			return nil, fmt.Errorf("template %s: %w", t.ID, err)
		}
	}
	return def, nil
}

// reserve claims def's name and, for an isolated guest, a host id range
// of its own, which it records in def, and validates the definition as it
// will be stored; create or copy releases both, and so does a refusal.
func (d *Daemon) reserve(def *guest.Definition) (err error) {
	if err := d.guests.reserve(def.Name, templateKey(def), def.Networks); err != nil {
		return err
	}
	defer func() {
		if err != nil {
			d.guests.release(def.Name, nil)
		}
	}()
	// The name is taken cluster-wide too.
	if err := d.claim(d.ctx, def); err != nil {
		return err
	}
	defer func() {
		if err != nil {
			d.unclaim(def.Name)
		}
	}()
	// Found before the reservation pinned it, the template may have been
	// deleted in between: it must still be there.
	if _, err := d.templates.Load(templateKey(def)); err != nil {
		return err
	}
	if def.Isolated() {
		m, err := d.guests.allocateIDMap(def.Name)
		if err != nil {
			return err
		}
		def.Security.IDMapBase = m.HostBase
	}
	return def.Validate()
}

// create makes a guest transactionally: its directory is assembled under a
// staging name and renamed into place only when complete. With start, a
// failed start deletes the guest again, so launch leaves nothing half-made.
func (d *Daemon) create(ctx context.Context, req api.GuestCreate, def *guest.Definition) (err error) {
	defer func() {
		if err != nil {
			d.guests.release(def.Name, nil)
			d.unclaim(def.Name)
		}
	}()
	drv, err := d.driverFor(def)
	if err != nil {
		return err
	}
	staging, err := os.MkdirTemp(d.layout.GuestsDir(), stagingPrefix+def.Name+"-")
	if err != nil {
		return fmt.Errorf("create %s: %w", def.Name, err)
	}
	defer func() {
		if err != nil {
			os.RemoveAll(staging)
		}
	}()
	if err = gateGuestDir(staging, rootGroup(def)); err != nil {
		return fmt.Errorf("create %s: %w", def.Name, err)
	}
	// Published ports are claimed first: a port in use fails the create
	// before any disk is made.
	if err = d.publish(ctx, def, true); err != nil {
		return fmt.Errorf("create %s: %w", def.Name, err)
	}
	defer func() {
		if err != nil {
			d.unpublish(context.WithoutCancel(ctx), def)
		}
	}()
	// The template cannot go away meanwhile: the reservation pins it.
	if err = drv.Create(ctx, staging, def); err != nil {
		return fmt.Errorf("create %s: %w", def.Name, err)
	}
	if err = d.fault("create-after-disks"); err != nil {
		return err
	}
	// A launch's guest lands with its intent: a daemon killed before the
	// start recorded its own leaves nothing of a launch that failed.
	if req.Start {
		def.Status.Intent = guest.IntentLaunch
	}
	if err = d.store.Save(staging, def); err != nil {
		return err
	}
	final := d.layout.GuestDir(def.Name)
	if err = os.Rename(staging, final); err != nil {
		return fmt.Errorf("create %s: %w", def.Name, err)
	}
	if err = fsutil.SyncDir(d.layout.GuestsDir()); err != nil {
		return err
	}
	d.crashPoint("create-after-rename")
	d.log.Info("guest created", "guest", def.Name, "class", def.Class, "template", def.Template, "rootfs", def.Rootfs)
	d.lifecycle(api.GuestCreated, def.Name)
	if !req.Start {
		d.guests.release(def.Name, def)
		return nil
	}
	// The launch's guest joins the table held: no request comes between
	// its creation and its start.
	e := d.guests.releaseHeld(def.Name, def)
	defer e.release()
	if err = d.startLocked(ctx, e, guest.IntentLaunch); err != nil {
		if derr := d.deleteLocked(context.WithoutCancel(ctx), e, true); derr != nil {
			d.log.Error("remove guest after failed launch", "guest", def.Name, "err", derr)
		}
		return fmt.Errorf("launch %s: %w", def.Name, err)
	}
	return nil
}

// save persists def and makes it the entry's current definition.
func (d *Daemon) save(e *entry, def *guest.Definition) error {
	if err := d.store.Save(d.layout.GuestDir(def.Name), def); err != nil {
		return err
	}
	e.def.Store(def)
	return nil
}

// startLocked starts the guest as part of intent (guest.IntentStart or
// guest.IntentLaunch); e.op is held. The intent is recorded before the
// first process starts, so that a daemon killed before the start is
// recorded finds it and ends what was left (see finishInterrupted).
func (d *Daemon) startLocked(ctx context.Context, e *entry, intent string) error {
	def := e.def.Load()
	if running(def) {
		return fmt.Errorf("guest %s: %w: it is already running", def.Name, api.ErrConflict)
	}
	drv, err := d.driverFor(def)
	if err != nil {
		return err
	}
	if err := d.networks.Prepare(ctx, def, def.Networks); err != nil {
		return fmt.Errorf("start %s: %w", def.Name, err)
	}
	if err := d.recordIntent(e, intent, ""); err != nil {
		return err
	}
	status, err := drv.Start(ctx, def)
	if err != nil {
		d.forgetIntent(e, def)
		return err
	}
	next := def.Clone()
	status.LastExit = def.Status.LastExit
	next.Status = status
	if err := d.fault("start-after-boot"); err != nil {
		d.stopAndRelease(ctx, drv, next)
		d.forgetIntent(e, def)
		return err
	}
	if err := d.save(e, next); err != nil {
		d.stopAndRelease(ctx, drv, next)
		d.forgetIntent(e, def)
		return err
	}
	d.watch(e, next)
	d.log.Info("guest started", "guest", def.Name, "pid", status.InitPID, "monitor", status.MonitorPID)
	d.lifecycle(api.GuestStarted, def.Name)
	return nil
}

// forgetIntent saves def, as it was before a start that failed and ended
// what it started.
func (d *Daemon) forgetIntent(e *entry, def *guest.Definition) {
	if err := d.save(e, def); err != nil {
		d.log.Error("forget the intent of a failed start", "guest", def.Name, "err", err)
	}
}

// stopAndRelease ends a guest whose start could not be recorded.
func (d *Daemon) stopAndRelease(ctx context.Context, drv driver.Driver, def *guest.Definition) {
	ctx = context.WithoutCancel(ctx)
	if err := drv.Stop(ctx, def, 0); err != nil {
		d.log.Error("stop after failed start", "guest", def.Name, "err", err)
	}
	if _, err := drv.Cleanup(ctx, def); err != nil {
		d.log.Error("clean up after failed start", "guest", def.Name, "err", err)
	}
}

// stopLocked stops the guest and releases what it held; e.op is held.
func (d *Daemon) stopLocked(ctx context.Context, e *entry, timeout time.Duration) error {
	def := e.def.Load()
	drv, err := d.driverFor(def)
	if err != nil {
		return err
	}
	if err := d.recordIntent(e, guest.IntentStop, ""); err != nil {
		return err
	}
	if err := drv.Stop(ctx, def, timeout); err != nil {
		if cerr := d.clearIntent(e); cerr != nil {
			d.log.Error("forget the intent of a failed stop", "guest", def.Name, "err", cerr)
		}
		return err
	}
	d.crashPoint("stop-after-processes")
	return d.markStopped(ctx, e, drv)
}

// markStopped releases a guest whose processes have ended and records how
// its init ended; e.op is held.
func (d *Daemon) markStopped(ctx context.Context, e *entry, drv driver.Driver) error {
	def := e.def.Load()
	exit, cleanErr := drv.Cleanup(ctx, def)
	next := def.Clone()
	next.Status = guest.Status{State: api.StateStopped, LastExit: exit}
	if exit == nil {
		next.Status.LastExit = def.Status.LastExit
	}
	if err := d.save(e, next); err != nil {
		return err
	}
	if cleanErr != nil {
		return cleanErr
	}
	d.log.Info("guest stopped", "guest", def.Name)
	d.lifecycle(api.GuestStopped, def.Name)
	return nil
}

// deleteLocked removes the guest: stop (force only), release, remove disks
// and directory; e.op is held.
func (d *Daemon) deleteLocked(ctx context.Context, e *entry, force bool) error {
	def := e.def.Load()
	drv, err := d.driverFor(def)
	if err != nil {
		return err
	}
	if running(def) && !force {
		return fmt.Errorf("guest %s: %w: it is running; stop it first or pass --force", def.Name, api.ErrConflict)
	}
	if err := d.recordIntent(e, guest.IntentDelete, ""); err != nil {
		return err
	}
	if running(def) {
		if err := drv.Stop(ctx, def, 0); err != nil {
			return d.deleteFailed(e, def, err)
		}
	}
	// Nothing of the guest may outlive its files: with force, whatever
	// still runs of it (a process the definition never named) is ended;
	// without, the delete is refused.
	if force {
		if _, err := d.endProcessesOf(def.Name); err != nil {
			return d.deleteFailed(e, def, fmt.Errorf("delete %s: %w", def.Name, err))
		}
	} else if pid, err := d.processOf(def.Name); err != nil || pid != 0 {
		if err == nil {
			err = fmt.Errorf("guest %s: %w: its process %d still runs; stop it, or pass --force", def.Name, api.ErrConflict, pid)
		}
		return d.deleteFailed(e, def, err)
	}
	d.crashPoint("delete-after-stop")
	if _, err := drv.Cleanup(ctx, def); err != nil {
		return fmt.Errorf("delete %s: %w", def.Name, err)
	}
	if err := drv.Delete(ctx, def); err != nil {
		return fmt.Errorf("delete %s: %w", def.Name, err)
	}
	d.crashPoint("delete-after-disks")
	if err := fsutil.RemoveAllAtomic(d.layout.GuestDir(def.Name)); err != nil {
		return fmt.Errorf("delete %s: %w", def.Name, err)
	}
	d.guests.remove(def.Name)
	d.unclaim(def.Name)
	d.unpublish(ctx, def)
	d.log.Info("guest deleted", "guest", def.Name)
	d.lifecycle(api.GuestDeleted, def.Name)
	return nil
}

// deleteFailed puts back def, as it was before a delete that failed
// before it removed anything (with the intent of an operation it was
// rolling back, if any), and returns err.
func (d *Daemon) deleteFailed(e *entry, def *guest.Definition, err error) error {
	if serr := d.save(e, def); serr != nil {
		d.log.Error("forget the intent of a failed delete", "guest", def.Name, "err", serr)
	}
	return err
}

// publish reserves the guest's address and forwards its published ports
// to it. check refuses ports in use (a new guest); a restarted daemon
// restoring what it published passes false.
func (d *Daemon) publish(ctx context.Context, def *guest.Definition, check bool) error {
	if len(def.Publish) == 0 {
		return nil
	}
	forwards := make([]network.Forward, 0, len(def.Publish))
	for _, p := range def.Publish {
		f, err := network.ParsePublish(p)
		if err != nil {
			return err
		}
		forwards = append(forwards, f)
	}
	if err := d.networks.Prepare(ctx, def, def.Networks[:1]); err != nil {
		return err
	}
	return d.networks.SetForwards(def.Name, network.GuestNIC(def, def.Networks[0]), forwards, check)
}

// unpublish takes a guest off its networks for good: its forwards, its
// reservations and its leases, so that its name stops resolving. A failure
// only leaves a lease to expire.
func (d *Daemon) unpublish(ctx context.Context, def *guest.Definition) {
	if err := d.networks.ClearForwards(def.Name); err != nil {
		d.log.Warn("unpublish the guest's ports", "guest", def.Name, "err", err)
	}
	for _, n := range def.Networks {
		if err := d.networks.Release(ctx, n, network.GuestNIC(def, n).MAC.String()); err != nil {
			d.log.Warn("release the guest's address", "guest", def.Name, "err", err)
		}
	}
}

// watch notices when a running guest ends on its own (poweroff inside, the
// OOM killer taking init, a kill from outside) and releases it. Its
// goroutine lives until the guest ends or the daemon stops.
func (d *Daemon) watch(e *entry, def *guest.Definition) {
	init := procutil.Identity{PID: def.Status.InitPID, Start: def.Status.InitStart}
	d.watchers.Add(1)
	go func() {
		defer d.watchers.Done()
		if err := init.Wait(d.ctx); err != nil {
			return // the daemon is stopping; the next one adopts the guest
		}
		e.acquireAlways()
		defer e.release()
		current, err := d.current(e)
		if err != nil {
			return // deleted meanwhile
		}
		if current.Status.State != api.StateRunning || current.Status.InitPID != init.PID || current.Status.InitStart != init.Start {
			return // stopped, deleted or restarted meanwhile
		}
		drv, err := d.driverFor(current)
		if err != nil {
			return
		}
		if err := d.markStopped(context.WithoutCancel(d.ctx), e, drv); err != nil && !errors.Is(err, os.ErrNotExist) {
			d.log.Warn("release ended guest", "guest", current.Name, "err", err)
		}
	}()
}

// setConfig changes settable keys, applying them live where the driver can.
func (d *Daemon) setConfig(ctx context.Context, e *entry, set map[string]string, force bool) (api.ConfigResult, error) {
	result := api.ConfigResult{Applied: map[string]string{}}
	def, err := d.lockGuest(e)
	if err != nil {
		return result, err
	}
	defer e.release()
	next := def.Clone()
	if len(set) == 0 {
		return result, fmt.Errorf("%w: nothing to set: pass KEY=VALUE, keys: %s", api.ErrInvalid, strings.Join(guest.Settable, ", "))
	}
	for key, value := range set {
		if err := next.Set(key, value); err != nil {
			return result, err
		}
	}
	if _, ok := set["memory"]; ok {
		if err := checkMemory(next.Memory, force); err != nil {
			return result, err
		}
	}
	drv, err := d.driverFor(def)
	if err != nil {
		return result, err
	}
	limits := map[string]string{}
	for key, value := range set {
		switch _, disk := guest.DiskOfKey(key); {
		case disk || key == "network" || key == "publish":
		case strings.HasPrefix(key, "security."):
			// The runtime's confinement is fixed when the guest starts.
			result.Applied[key] = "next-start"
			if running(def) {
				next.Status.Pending = appendOnce(next.Status.Pending, key)
			}
		default:
			limits[key] = value
		}
	}
	if err := d.checkNetworkChange(def, next, set); err != nil {
		return result, err
	}
	mode := "next-start"
	if running(def) && len(limits) > 0 {
		if updater, ok := drv.(driver.LimitUpdater); ok {
			if err := updater.UpdateLimits(ctx, next); err != nil {
				return result, err
			}
			mode = "live"
		} else {
			for key := range limits {
				next.Status.Pending = appendOnce(next.Status.Pending, key)
			}
		}
	}
	for key := range limits {
		result.Applied[key] = mode
	}
	if err := d.applyNetworkChange(ctx, def, next, set, result); err != nil {
		return result, err
	}
	// Disks last: growing one cannot be undone, so it comes after every
	// check, and the definition is saved even if a later disk fails.
	resizer, _ := drv.(driver.DiskResizer)
	var resizeErr error
	for key := range set {
		name, ok := guest.DiskOfKey(key)
		if !ok {
			continue
		}
		if resizer == nil {
			return result, fmt.Errorf("%w: %s: class %s cannot resize disks", api.ErrNotAvailable, key, def.Class)
		}
		if old, _ := def.Disk(name); old != nil {
			if disk, _ := next.Disk(name); disk.Size == old.Size {
				result.Applied[key] = "unchanged"
				continue
			}
		}
		applied, err := resizer.ResizeDisk(ctx, next, name)
		if err != nil {
			// Keep the size the disk had; what was grown before stays grown.
			disk, _ := next.Disk(name)
			old, _ := def.Disk(name)
			disk.Size = old.Size
			resizeErr = err
			break
		}
		result.Applied[key] = applied
	}
	if err := d.save(e, next); err != nil {
		return result, err
	}
	return result, resizeErr
}

// checkNetworkChange validates network and publish changes: a running
// guest keeps its interface, and published ports need a network.
func (d *Daemon) checkNetworkChange(def, next *guest.Definition, set map[string]string) error {
	if _, ok := set["network"]; ok && running(def) && !slices.Equal(def.Networks, next.Networks) {
		return fmt.Errorf("%w: network: %s is running and its interface does not move; stop it first", api.ErrConflict, def.Name)
	}
	for i, p := range next.Publish {
		f, err := network.ParsePublish(p)
		if err != nil {
			return err
		}
		next.Publish[i] = f.String()
	}
	if len(next.Publish) > 0 && len(next.Networks) == 0 {
		return fmt.Errorf("%w: publish: %s joins no network; set network=NAME too", api.ErrInvalid, def.Name)
	}
	return nil
}

// applyNetworkChange moves a stopped guest to its new network (its old
// address and forwards go, a new address is reserved) and publishes its
// ports again; forwards apply at once, a new network at next start. On
// failure what the guest had is restored.
func (d *Daemon) applyNetworkChange(ctx context.Context, def, next *guest.Definition, set map[string]string, result api.ConfigResult) error {
	_, netSet := set["network"]
	_, pubSet := set["publish"]
	if !netSet && !pubSet {
		return nil
	}
	moved := !slices.Equal(def.Networks, next.Networks)
	if moved {
		d.unpublish(ctx, def)
	} else if err := d.networks.ClearForwards(def.Name); err != nil {
		return err
	}
	if err := d.publish(ctx, next, true); err != nil {
		if rerr := d.publish(context.WithoutCancel(ctx), def, false); rerr != nil {
			d.log.Error("restore published ports", "guest", def.Name, "err", rerr)
		}
		return err
	}
	if netSet {
		result.Applied["network"] = "next-start"
		if !moved {
			result.Applied["network"] = "unchanged"
		}
	}
	if pubSet {
		result.Applied["publish"] = "live"
	}
	return nil
}

func appendOnce(list []string, s string) []string {
	for _, x := range list {
		if x == s {
			return list
		}
	}
	return append(list, s)
}

// sweepGuestDir removes staging and trash leftovers in the guests dir,
// unmounting first what an interrupted copy or create mounted in one (a
// quota image), which RemoveAll would otherwise reach into and then fail on.
func (d *Daemon) sweepGuestDir() {
	entries, _ := os.ReadDir(d.layout.GuestsDir())
	for _, ent := range entries {
		name := ent.Name()
		if len(name) > 0 && name[0] == '.' {
			path := filepath.Join(d.layout.GuestsDir(), name)
			d.log.Info("removing leftover of an interrupted operation", "path", path)
			if err := fsutil.UnmountUnder(path); err != nil {
				d.log.Warn("unmount leftover", "path", path, "err", err)
				continue
			}
			if err := os.RemoveAll(path); err != nil {
				d.log.Warn("remove leftover", "path", path, "err", err)
			}
		}
	}
}

// checkMemory refuses memory a guest could not boot with or, unless
// forced, the host does not have.
func checkMemory(m guest.Size, force bool) error {
	if err := guest.CheckMemory("memory", m); err != nil {
		return err
	}
	if force {
		return nil
	}
	return guest.CheckHostMemory("memory", m)
}
