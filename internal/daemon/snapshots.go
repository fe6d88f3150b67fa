package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/polyvisor/polyvisor/internal/driver"
	"github.com/polyvisor/polyvisor/internal/fsutil"
	"github.com/polyvisor/polyvisor/internal/guest"
	"github.com/polyvisor/polyvisor/pkg/api"
)

// A guest's snapshots live in its own directory, so deleting the guest
// deletes them: snapshots/NAME/ holds the snapshot's record
// (snapshot.yaml) and whatever the driver keeps there (a container's copied
// tree, a VM's UEFI variable store; a VM's disk snapshot lives inside its
// qcow2 image). A snapshot is assembled under a staging name and renamed
// into place once its record is written: a name without a record is no
// snapshot.
const (
	snapshotsDirName   = "snapshots"
	snapshotRecordFile = "snapshot.yaml"
)

// snapshotRecord is snapshot.yaml.
type snapshotRecord struct {
	Name      string    `yaml:"name"`
	CreatedAt time.Time `yaml:"createdAt"`
	Kind      string    `yaml:"kind"`
	Size      int64     `yaml:"size,omitempty"`
	Running   bool      `yaml:"running,omitempty"`
}

func (d *Daemon) snapshotsDir(name string) string {
	return filepath.Join(d.layout.GuestDir(name), snapshotsDirName)
}

func (d *Daemon) snapshotDir(name, snap string) string {
	return filepath.Join(d.snapshotsDir(name), snap)
}

// validateSnapshotName checks that a snapshot's name is a DNS label, like
// a guest's: it names a directory and a qcow2 snapshot tag.
func validateSnapshotName(snap string) error {
	if guest.ValidateName(snap) != nil {
		return fmt.Errorf("%w: snapshot name %q: use 1-63 lower-case letters, digits and '-', starting with a letter and not ending with '-'", api.ErrInvalid, snap)
	}
	return nil
}

// snapshotter returns the driver of a guest's class as a Snapshotter.
func (d *Daemon) snapshotter(def *guest.Definition) (driver.Snapshotter, error) {
	drv, err := d.driverFor(def)
	if err != nil {
		return nil, err
	}
	s, ok := drv.(driver.Snapshotter)
	if !ok {
		return nil, fmt.Errorf("%w: class %s cannot take snapshots", api.ErrNotAvailable, def.Class)
	}
	return s, nil
}

// loadSnapshot reads one snapshot's record.
func (d *Daemon) loadSnapshot(name, snap string) (snapshotRecord, error) {
	var rec snapshotRecord
	data, err := os.ReadFile(filepath.Join(d.snapshotDir(name, snap), snapshotRecordFile))
	if errors.Is(err, os.ErrNotExist) {
		return rec, fmt.Errorf("snapshot %s of %s: %w: see 'polyvisor snapshot list %s'", snap, name, api.ErrNotFound, name)
	}
	if err != nil {
		return rec, fmt.Errorf("snapshot %s of %s: %w", snap, name, err)
	}
	if err := yaml.Unmarshal(data, &rec); err != nil {
		return rec, fmt.Errorf("snapshot %s of %s: %s: %w", snap, name, snapshotRecordFile, err)
	}
	return rec, nil
}

// snapshots lists a guest's snapshots, oldest first.
func (d *Daemon) snapshots(name string) ([]api.Snapshot, error) {
	entries, err := os.ReadDir(d.snapshotsDir(name))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("snapshots of %s: %w", name, err)
	}
	list := []api.Snapshot{}
	for _, ent := range entries {
		if !ent.IsDir() || strings.HasPrefix(ent.Name(), ".") {
			continue // staging or trash
		}
		rec, err := d.loadSnapshot(name, ent.Name())
		if err != nil {
			d.log.Warn("skipping a snapshot whose record does not load", "guest", name, "snapshot", ent.Name(), "err", err)
			continue
		}
		list = append(list, api.Snapshot{Name: rec.Name, CreatedAt: rec.CreatedAt, Kind: rec.Kind, Size: rec.Size, Running: rec.Running})
	}
	sort.Slice(list, func(i, j int) bool {
		if !list[i].CreatedAt.Equal(list[j].CreatedAt) {
			return list[i].CreatedAt.Before(list[j].CreatedAt)
		}
		return list[i].Name < list[j].Name
	})
	return list, nil
}

// current returns the entry's definition if the guest is still in the
// table: an operation that waited for e.op may find it deleted.
func (d *Daemon) current(e *entry) (*guest.Definition, error) {
	def := e.def.Load()
	if now, err := d.guests.get(def.Name); err != nil || now != e {
		return nil, fmt.Errorf("guest %s: %w: it was deleted meanwhile", def.Name, api.ErrNotFound)
	}
	return def, nil
}

// createSnapshot takes snapshot snap of the guest, running or not; e.op is
// held. It fails whole: no record, no copied tree, no qcow2 snapshot.
func (d *Daemon) createSnapshot(ctx context.Context, e *entry, snap string) (err error) {
	def, err := d.current(e)
	if err != nil {
		return err
	}
	s, err := d.snapshotter(def)
	if err != nil {
		return err
	}
	if _, err := os.Lstat(d.snapshotDir(def.Name, snap)); err == nil {
		return fmt.Errorf("snapshot %s of %s: %w: pick another name or delete it first", snap, def.Name, api.ErrExists)
	}
	if err := d.recordIntent(e, guest.IntentSnapshotCreate, snap); err != nil {
		return err
	}
	defer func() {
		if cerr := d.clearIntent(e); cerr != nil {
			d.log.Error("forget the intent of a snapshot", "guest", def.Name, "snapshot", snap, "err", cerr)
		}
	}()
	parent := d.snapshotsDir(def.Name)
	if err := os.MkdirAll(parent, 0o700); err != nil {
		return fmt.Errorf("snapshot %s of %s: %w", snap, def.Name, err)
	}
	sweepDotEntries(parent, d.log)
	staging, err := os.MkdirTemp(parent, stagingPrefix+snap+"-")
	if err != nil {
		return fmt.Errorf("snapshot %s of %s: %w", snap, def.Name, err)
	}
	defer func() {
		if err != nil {
			os.RemoveAll(staging)
		}
	}()
	rec := snapshotRecord{Name: snap, CreatedAt: time.Now().UTC(), Running: running(def)}
	info, err := s.CreateSnapshot(ctx, def, snap, staging)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			if derr := s.DeleteSnapshot(context.WithoutCancel(ctx), def, snap, staging); derr != nil {
				d.log.Error("remove the disk snapshot of a failed snapshot", "guest", def.Name, "snapshot", snap, "err", derr)
			}
		}
	}()
	if err = d.fault("snapshot-after-disks"); err != nil {
		return err
	}
	rec.Kind, rec.Size = info.Kind, info.Size
	data, err := yaml.Marshal(rec)
	if err != nil {
		return fmt.Errorf("snapshot %s of %s: %w", snap, def.Name, err)
	}
	if err = fsutil.WriteFileAtomic(filepath.Join(staging, snapshotRecordFile), data, 0o600); err != nil {
		return err
	}
	if err = os.Rename(staging, d.snapshotDir(def.Name, snap)); err != nil {
		return fmt.Errorf("snapshot %s of %s: %w", snap, def.Name, err)
	}
	if serr := fsutil.SyncDir(parent); serr != nil {
		d.log.Warn("sync the snapshots dir", "guest", def.Name, "err", serr)
	}
	d.crashPoint("snapshot-after-rename")
	d.log.Info("snapshot taken", "guest", def.Name, "snapshot", snap, "kind", rec.Kind, "running", rec.Running, "took", time.Since(rec.CreatedAt).Round(time.Millisecond))
	return nil
}

// restoreSnapshot puts the guest's disks back to snapshot snap; the guest
// must be stopped. e.op is held.
func (d *Daemon) restoreSnapshot(ctx context.Context, e *entry, snap string) error {
	def, err := d.current(e)
	if err != nil {
		return err
	}
	if running(def) {
		return fmt.Errorf("guest %s: %w: it is running; stop it first, then restore", def.Name, api.ErrConflict)
	}
	s, err := d.snapshotter(def)
	if err != nil {
		return err
	}
	if _, err := d.loadSnapshot(def.Name, snap); err != nil {
		return err
	}
	if err := d.recordIntent(e, guest.IntentSnapshotRestore, snap); err != nil {
		return err
	}
	next := def.Clone()
	next.Status.Intent, next.Status.IntentSnapshot = "", ""
	if err := s.RestoreSnapshot(ctx, next, snap, d.snapshotDir(def.Name, snap)); err != nil {
		if cerr := d.clearIntent(e); cerr != nil {
			d.log.Error("forget the intent of a failed restore", "guest", def.Name, "err", cerr)
		}
		return err
	}
	d.crashPoint("snapshot-restore-after-disks")
	if err := d.save(e, next); err != nil {
		return err
	}
	d.log.Info("snapshot restored", "guest", def.Name, "snapshot", snap)
	return nil
}

// deleteSnapshot removes snapshot snap, running or not; e.op is held.
func (d *Daemon) deleteSnapshot(ctx context.Context, e *entry, snap string) error {
	def, err := d.current(e)
	if err != nil {
		return err
	}
	s, err := d.snapshotter(def)
	if err != nil {
		return err
	}
	if _, err := d.loadSnapshot(def.Name, snap); err != nil {
		return err
	}
	if err := d.recordIntent(e, guest.IntentSnapshotDelete, snap); err != nil {
		return err
	}
	defer func() {
		if cerr := d.clearIntent(e); cerr != nil {
			d.log.Error("forget the intent of a snapshot delete", "guest", def.Name, "snapshot", snap, "err", cerr)
		}
	}()
	dir := d.snapshotDir(def.Name, snap)
	if err := s.DeleteSnapshot(ctx, def, snap, dir); err != nil {
		return err
	}
	d.crashPoint("snapshot-delete-after-disks")
	if err := fsutil.RemoveAllAtomic(dir); err != nil {
		return fmt.Errorf("delete snapshot %s of %s: %w", snap, def.Name, err)
	}
	d.log.Info("snapshot deleted", "guest", def.Name, "snapshot", snap)
	return nil
}

// copyGuest makes guest name, a copy of the entry's guest with an identity
// of its own, transactionally like create: the name is reserved (pinning
// the template) by the caller, the directory is assembled under a staging
// name and renamed into place when complete, and a failure leaves nothing.
func (d *Daemon) copyGuest(ctx context.Context, e *entry, name string) (err error) {
	defer func() {
		if err != nil {
			d.guests.release(name, nil)
		}
	}()
	// The caller holds the source (startLong).
	src, err := d.current(e)
	if err != nil {
		return err
	}
	drv, err := d.driverFor(src)
	if err != nil {
		return err
	}
	copier, ok := drv.(driver.Copier)
	if !ok {
		return fmt.Errorf("%w: class %s cannot copy guests", api.ErrNotAvailable, src.Class)
	}
	def := copyDefinition(src, name)
	if def.Isolated() {
		// A copy of an isolated guest gets a range of its own too; the
		// driver shifts the copied tree into it.
		m, err := d.guests.allocateIDMap(name)
		if err != nil {
			return err
		}
		def.Security.IDMapBase = m.HostBase
	}
	staging, err := os.MkdirTemp(d.layout.GuestsDir(), stagingPrefix+name+"-")
	if err != nil {
		return fmt.Errorf("copy %s to %s: %w", src.Name, name, err)
	}
	defer func() {
		if err != nil {
			os.RemoveAll(staging)
		}
	}()
	if err = gateGuestDir(staging, rootGroup(def)); err != nil {
		return fmt.Errorf("copy %s to %s: %w", src.Name, name, err)
	}
	if err = copier.Copy(ctx, src, staging, def); err != nil {
		return err
	}
	if err = d.fault("copy-after-disks"); err != nil {
		return err
	}
	if err = def.Validate(); err != nil {
		return err
	}
	if err = d.store.Save(staging, def); err != nil {
		return err
	}
	if err = os.Rename(staging, d.layout.GuestDir(name)); err != nil {
		return fmt.Errorf("copy %s to %s: %w", src.Name, name, err)
	}
	d.crashPoint("copy-after-rename")
	if err = fsutil.SyncDir(d.layout.GuestsDir()); err != nil {
		return err
	}
	d.guests.release(name, def)
	d.log.Info("guest copied", "guest", name, "from", src.Name, "class", def.Class)
	d.lifecycle(api.GuestCreated, name)
	return nil
}

// copyDefinition is the definition of a copy of src named name: a guest
// of its own, stopped, with the source's settings but not what identifies
// the source on a network (its MACs, which derive from the name unless the
// definition overrides them; its published ports, which would conflict).
func copyDefinition(src *guest.Definition, name string) *guest.Definition {
	def := src.Clone()
	def.Name = name
	def.CreatedAt = time.Now().UTC()
	def.Status = guest.Status{State: api.StateStopped}
	def.Publish = nil
	def.MACs = nil
	for i := range def.NICs {
		def.NICs[i].MAC = "" // derived from the copy's name instead
	}
	def.Disks = nil // the driver gives the copy its own
	return def
}

// sweepDotEntries removes what an interrupted operation left in dir:
// staging and trash entries, whose names start with a dot.
func sweepDotEntries(dir string, log *slog.Logger) {
	entries, _ := os.ReadDir(dir)
	for _, ent := range entries {
		if strings.HasPrefix(ent.Name(), ".") {
			path := filepath.Join(dir, ent.Name())
			log.Info("removing leftover of an interrupted operation", "path", path)
			os.RemoveAll(path)
		}
	}
}

func (d *Daemon) handleSnapshots(r *http.Request) (any, error) {
	e, err := d.guests.get(r.PathValue("name"))
	if err != nil {
		return nil, err
	}
	return d.snapshots(e.def.Load().Name)
}

// handleSnapshotCreate refuses what it can at once (bad name, a missing
// guest, a name taken) and takes the snapshot as an operation.
func (d *Daemon) handleSnapshotCreate(r *http.Request) (any, error) {
	var req api.SnapshotCreate
	e, err := d.guestRequest(r, &req)
	if err != nil {
		return nil, err
	}
	if err := validateSnapshotName(req.Name); err != nil {
		return nil, err
	}
	def := e.def.Load()
	if _, err := d.snapshotter(def); err != nil {
		return nil, err
	}
	if _, err := os.Lstat(d.snapshotDir(def.Name, req.Name)); err == nil {
		return nil, fmt.Errorf("snapshot %s of %s: %w: pick another name or delete it first", req.Name, def.Name, api.ErrExists)
	}
	return d.startLong(e, "snapshot-create", def.Name+"/"+req.Name, nil, func(ctx context.Context, _ *opReport) error {
		return d.createSnapshot(ctx, e, req.Name)
	})
}

func (d *Daemon) handleSnapshotRestore(r *http.Request) (any, error) {
	e, snap, err := d.snapshotRequest(r)
	if err != nil {
		return nil, err
	}
	def := e.def.Load()
	if running(def) {
		return nil, fmt.Errorf("guest %s: %w: it is running; stop it first, then restore", def.Name, api.ErrConflict)
	}
	return d.startLong(e, "snapshot-restore", def.Name+"/"+snap, nil, func(ctx context.Context, _ *opReport) error {
		return d.restoreSnapshot(ctx, e, snap)
	})
}

func (d *Daemon) handleSnapshotDelete(r *http.Request) (any, error) {
	e, snap, err := d.snapshotRequest(r)
	if err != nil {
		return nil, err
	}
	name := e.def.Load().Name
	return d.startLong(e, "snapshot-delete", name+"/"+snap, nil, func(ctx context.Context, _ *opReport) error {
		return d.deleteSnapshot(ctx, e, snap)
	})
}

// snapshotRequest resolves the guest and the existing snapshot a request
// names.
func (d *Daemon) snapshotRequest(r *http.Request) (*entry, string, error) {
	e, err := d.guests.get(r.PathValue("name"))
	if err != nil {
		return nil, "", err
	}
	snap := r.PathValue("snap")
	if err := validateSnapshotName(snap); err != nil {
		return nil, "", err
	}
	if _, err := d.loadSnapshot(e.def.Load().Name, snap); err != nil {
		return nil, "", err
	}
	return e, snap, nil
}

// handleCopy refuses what it can at once (a missing source, a bad or
// taken name, a running guest its class copies only stopped), reserves the new name and copies as an
// operation.
func (d *Daemon) handleCopy(r *http.Request) (any, error) {
	var req api.GuestCopy
	e, err := d.guestRequest(r, &req)
	if err != nil {
		return nil, err
	}
	if err := guest.ValidateName(req.Name); err != nil {
		return nil, err
	}
	src := e.def.Load()
	drv, err := d.driverFor(src)
	if err != nil {
		return nil, err
	}
	if caps := drv.Capabilities(); !caps.Copy {
		return nil, fmt.Errorf("%w: class %s cannot copy guests", api.ErrNotAvailable, src.Class)
	} else if !caps.CopyRunning && running(src) {
		return nil, fmt.Errorf("guest %s: %w: it is running; stop it first (a %s's disk is copied while it is stopped)", src.Name, api.ErrConflict, src.Type)
	}
	if err := d.guests.reserve(req.Name, templateKey(src), src.Networks); err != nil {
		return nil, err
	}
	release := func() { d.guests.release(req.Name, nil) }
	return d.startLong(e, "copy", req.Name, release, func(ctx context.Context, _ *opReport) error {
		return d.copyGuest(ctx, e, req.Name)
	})
}
