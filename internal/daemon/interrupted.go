package daemon

import (
	"context"
	"errors"
	"fmt"
	"os"
	"syscall"
	"time"

	"github.com/polyvisor/polyvisor/internal/cgroup"
	"github.com/polyvisor/polyvisor/internal/driver"
	"github.com/polyvisor/polyvisor/internal/fsutil"
	"github.com/polyvisor/polyvisor/internal/guest"
	"github.com/polyvisor/polyvisor/internal/procutil"
	"github.com/polyvisor/polyvisor/pkg/api"
)

// endTimeout bounds the wait for the processes an interrupted start left
// to go once killed.
const endTimeout = 10 * time.Second

// recordIntent saves the guest's definition with intent (and the snapshot
// it is about) before an operation's first side effect, so that a daemon
// killed during it lets the next one finish or roll it back; e.op is held.
// An intent already on disk (a launch's, saved with the new guest) is not
// written again: that would cost two fsyncs on the launch path for nothing.
func (d *Daemon) recordIntent(e *entry, intent, snap string) error {
	current := e.def.Load()
	if current.Status.Intent != intent || current.Status.IntentSnapshot != snap {
		pending := current.Clone()
		pending.Status.Intent, pending.Status.IntentSnapshot = intent, snap
		if err := d.save(e, pending); err != nil {
			return fmt.Errorf("%s %s: record the intent: %w", intent, pending.Name, err)
		}
	}
	d.crashPoint(intent + "-recorded")
	return nil
}

// clearIntent saves the guest's definition without its intent, once the
// operation completed or was undone; e.op is held.
func (d *Daemon) clearIntent(e *entry) error {
	def := e.def.Load()
	if def.Status.Intent == "" {
		return nil
	}
	next := def.Clone()
	next.Status.Intent, next.Status.IntentSnapshot = "", ""
	return d.save(e, next)
}

// finishInterrupted finishes or rolls back the operation a crash
// interrupted after it recorded its intent (see guest.Status.Intent); e.op
// need not be held, nothing else runs yet. It reports whether the guest is
// settled (removed or stopped); otherwise the caller adopts it as usual.
func (d *Daemon) finishInterrupted(ctx context.Context, e *entry, drv driver.Driver) (settled bool, err error) {
	def := e.def.Load()
	intent := def.Status.Intent
	defer func() {
		if err == nil {
			d.log.Info("finished an interrupted operation", "guest", def.Name, "intent", intent, "snapshot", def.Status.IntentSnapshot)
		}
	}()
	switch intent {
	case guest.IntentStart, guest.IntentLaunch, guest.IntentStop, guest.IntentDelete:
		// A start or launch never recorded the processes it started, a
		// stop or delete may have ended some of them: either way the
		// guest's processes go (found by its run dir and cgroup).
		if _, err := d.endProcessesOf(def.Name); err != nil {
			return false, fmt.Errorf("end what the interrupted %s of %s left: %w", intent, def.Name, err)
		}
		if intent == guest.IntentLaunch || intent == guest.IntentDelete {
			if err := d.deleteLocked(ctx, e, true); err != nil {
				return false, fmt.Errorf("remove %s, whose %s was interrupted: %w", def.Name, intent, err)
			}
			return true, nil
		}
		if err := d.markStopped(ctx, e, drv); err != nil {
			return true, fmt.Errorf("stop %s, whose %s was interrupted: %w", def.Name, intent, err)
		}
		return true, nil
	case guest.IntentSnapshotCreate:
		// Its client saw it fail: the snapshot goes, whether or not it
		// was complete.
		if err := d.undoSnapshot(ctx, def, def.Status.IntentSnapshot); err != nil {
			return false, err
		}
	case guest.IntentSnapshotRestore:
		if err := d.restoreSnapshot(ctx, e, def.Status.IntentSnapshot); err != nil {
			d.log.Error("make an interrupted restore again", "guest", def.Name, "snapshot", def.Status.IntentSnapshot, "err", err)
		}
	case guest.IntentSnapshotDelete:
		if err := d.deleteSnapshot(ctx, e, def.Status.IntentSnapshot); err != nil && !errors.Is(err, api.ErrNotFound) {
			return false, err
		}
	}
	return false, d.clearIntent(e)
}

// undoSnapshot removes snapshot snap of def, complete or not: the
// driver's part (a qcow2 tag) and its directory.
func (d *Daemon) undoSnapshot(ctx context.Context, def *guest.Definition, snap string) error {
	s, err := d.snapshotter(def)
	if err != nil {
		return err
	}
	dir := d.snapshotDir(def.Name, snap)
	if err := s.DeleteSnapshot(ctx, def, snap, dir); err != nil {
		return fmt.Errorf("remove snapshot %s of %s, whose creation was interrupted: %w", snap, def.Name, err)
	}
	if _, err := os.Lstat(dir); err == nil {
		if err := fsutil.RemoveAllAtomic(dir); err != nil {
			return fmt.Errorf("remove snapshot %s of %s, whose creation was interrupted: %w", snap, def.Name, err)
		}
	}
	return nil
}

// endProcessesOf kills every process of the guest (processesOf) and waits
// until they are gone. They were started by this daemon's predecessor for
// an operation that never completed; nothing else names the guest's run
// dir or lives in its cgroup. Each one is waited for on its pidfd; the list
// is read again after, for any process one of them started meanwhile.
func (d *Daemon) endProcessesOf(name string) ([]int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), endTimeout)
	defer cancel()
	var killed []int
	for {
		// A forced stop or delete freezes the guest's cgroup before it
		// kills: one interrupted in between left it frozen, and a frozen
		// process dies of SIGKILL only once thawed. Kill freezes (nothing
		// to do then), kills and thaws.
		if err := cgroup.Kill(ctx, d.layout.GuestCgroup(name)); err != nil {
			return killed, err
		}
		pids, err := d.processesOf(name)
		if err != nil {
			return killed, err
		}
		var live []procutil.Identity
		for _, pid := range pids {
			// A zombie has ended: it holds no files, and its cgroup
			// is free once it is reaped (cgroup.Remove waits for that).
			if id, err := procutil.Identify(pid); err == nil && id.Alive() {
				live = append(live, id)
			}
		}
		if len(live) == 0 {
			return killed, nil
		}
		for _, id := range live {
			if syscall.Kill(id.PID, syscall.SIGKILL) == nil {
				killed = append(killed, id.PID)
			}
		}
		for _, id := range live {
			if err := id.Wait(ctx); err != nil {
				return killed, fmt.Errorf("process %d did not end within %s of SIGKILL: %w", id.PID, endTimeout, err)
			}
		}
	}
}
