package qemu

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/polyvisor/polyvisor/internal/agent"
	"github.com/polyvisor/polyvisor/internal/driver"
	"github.com/polyvisor/polyvisor/internal/fsutil"
	"github.com/polyvisor/polyvisor/internal/guest"
	"github.com/polyvisor/polyvisor/internal/monitor/monitored"
	"github.com/polyvisor/polyvisor/internal/qmp"
	"github.com/polyvisor/polyvisor/internal/runcmd"
	"github.com/polyvisor/polyvisor/pkg/api"
)

// A VM's snapshots are qcow2 internal snapshots of its root overlay and of
// each of its data disks, all tagged with the snapshot's name and taken at
// one instant (the guest's CPUs paused while it runs). They share the
// overlays' clusters, so taking one writes metadata only, whatever the
// disks hold. A UEFI guest's
// variable store, a small raw file, is copied into the snapshot's directory.

// SnapshotKind is the kind of a VM's snapshots.
const SnapshotKind = "qcow2-internal"

// snapshotVars is the UEFI variable store's copy in a snapshot's directory.
const snapshotVars = "uefi-vars.fd"

// Timeouts of the steps around a running guest's snapshot.
const (
	contTimeout = 10 * time.Second // resuming its CPUs, even when ctx has ended
)

func (d *Driver) rootPath(def *guest.Definition) string {
	return filepath.Join(d.guestDir(def), rootDisk)
}

// diskPath is where the guest's disk lies.
func (d *Driver) diskPath(def *guest.Definition, disk guest.Disk) string {
	return filepath.Join(d.guestDir(def), disk.Path)
}

// CreateSnapshot implements driver.Snapshotter. A stopped guest's disk is
// snapshotted by qemu-img; a running guest is first asked to sync, then
// paused over QMP for the time of the snapshot (and of the UEFI vars'
// copy), and always resumed.
func (d *Driver) CreateSnapshot(ctx context.Context, def *guest.Definition, name, dir string) (driver.SnapshotInfo, error) {
	info := driver.SnapshotInfo{Kind: SnapshotKind}
	// A tag a crash left without its record goes first: the daemon has
	// checked that no snapshot of this name exists.
	if err := d.deleteTag(ctx, def, name); err != nil {
		return info, fmt.Errorf("snapshot %s of %s: %w", name, def.Name, err)
	}
	if monitored.Process(def).Alive() {
		return info, d.snapshotRunning(ctx, def, name, dir)
	}
	if err := d.saveVars(def, dir); err != nil {
		return info, err
	}
	for _, disk := range qcow2Disks(def) {
		if err := qemuImg(ctx, "snapshot", "-c", name, d.diskPath(def, disk)); err != nil {
			// The disks before it go back untagged: a snapshot has all or none.
			if derr := d.deleteTag(context.WithoutCancel(ctx), def, name); derr != nil {
				d.log.Error("remove the snapshot of a failed snapshot operation", "guest", def.Name, "snapshot", name, "err", derr)
			}
			return info, fmt.Errorf("snapshot %s of %s: disk %s: %w", name, def.Name, disk.Name, err)
		}
	}
	return info, nil
}

// snapshotRunning takes the snapshot of a running guest while its CPUs
// are paused, so the disk and the UEFI vars are of one instant.
func (d *Driver) snapshotRunning(ctx context.Context, def *guest.Definition, name, dir string) (err error) {
	driver.SyncGuest(ctx, d.log, def.Name, func(ctx context.Context) (*agent.Client, error) { return d.agent(ctx, def) })
	m, err := qmp.Dial(ctx, d.qmpSocket(def))
	if err != nil {
		return fmt.Errorf("snapshot %s of %s: %w", name, def.Name, err)
	}
	defer m.Close()
	var status qmp.StatusInfo
	if err := m.Run(ctx, qmp.QueryStatus{}, &status); err != nil {
		return fmt.Errorf("snapshot %s of %s: %w", name, def.Name, err)
	}
	// The disks a failed snapshot tagged go back untagged, after the guest
	// resumed (deferred calls run last first): a snapshot has all or none,
	// and one that cannot be reported (the guest did not resume) is not kept.
	var taken []guest.Disk
	defer func() {
		if err == nil || len(taken) == 0 {
			return
		}
		after, cancel := context.WithTimeout(context.WithoutCancel(ctx), contTimeout)
		defer cancel()
		for _, disk := range taken {
			if derr := m.Run(after, qmp.BlockdevSnapshotDeleteInternalSync{Device: driveID(disk.Name), Name: name}, nil); derr != nil {
				d.log.Error("remove the snapshot of a failed snapshot operation", "guest", def.Name, "snapshot", name, "disk", disk.Name, "err", derr)
			}
		}
	}()
	// A guest someone else paused stays paused.
	if status.Running {
		if err := m.Run(ctx, qmp.Stop{}, nil); err != nil {
			return fmt.Errorf("snapshot %s of %s: pause: %w", name, def.Name, err)
		}
		defer func() {
			// Resumed whatever happened.
			after, cancel := context.WithTimeout(context.WithoutCancel(ctx), contTimeout)
			defer cancel()
			if cerr := m.Run(after, qmp.Cont{}, nil); cerr != nil {
				err = errors.Join(err, fmt.Errorf("resume %s after its snapshot: %w", def.Name, cerr))
			}
		}()
	}
	d.crashPoint("snapshot-vm-paused")
	if err := d.saveVars(def, dir); err != nil {
		return err
	}
	// Every disk while the CPUs stay paused: the snapshot is of one instant.
	for _, disk := range qcow2Disks(def) {
		if err := m.Run(ctx, qmp.BlockdevSnapshotInternalSync{Device: driveID(disk.Name), Name: name}, nil); err != nil {
			return fmt.Errorf("snapshot %s of %s: disk %s: %w", name, def.Name, disk.Name, err)
		}
		taken = append(taken, disk)
	}
	return nil
}

// RestoreSnapshot implements driver.Snapshotter: every disk goes back to
// the snapshot (its size too, which def's disk takes), and so does the
// UEFI variable store. Each disk is checked to hold the snapshot before
// any goes back.
func (d *Driver) RestoreSnapshot(ctx context.Context, def *guest.Definition, name, dir string) error {
	if monitored.Process(def).Alive() {
		return fmt.Errorf("guest %s: %w: it is running; stop it first, then restore", def.Name, api.ErrConflict)
	}
	disks := qcow2Disks(def)
	for _, disk := range disks {
		tags, err := snapshotTags(ctx, d.diskPath(def, disk))
		if err != nil {
			return err
		}
		if tags[name] == 0 {
			what := "its disk"
			if len(disks) > 1 {
				what = "its disk " + disk.Name
			}
			return fmt.Errorf("snapshot %s of %s: %w: %s has no such snapshot; delete the snapshot", name, def.Name, api.ErrNotFound, what)
		}
	}
	for _, disk := range disks {
		if err := qemuImg(ctx, "snapshot", "-a", name, d.diskPath(def, disk)); err != nil {
			return fmt.Errorf("restore %s of %s: disk %s: %w", name, def.Name, disk.Name, err)
		}
	}
	if err := d.restoreVars(def, dir); err != nil {
		return err
	}
	for _, disk := range disks {
		info, err := inspectImage(ctx, d.diskPath(def, disk))
		if err != nil {
			return err
		}
		if own, ok := def.Disk(disk.Name); ok {
			own.Size = guest.Size(info.VirtualSize)
		}
	}
	return nil
}

// DeleteSnapshot implements driver.Snapshotter, over QMP while the guest
// runs. A snapshot whose tag is already gone is deleted all the same.
func (d *Driver) DeleteSnapshot(ctx context.Context, def *guest.Definition, name, dir string) error {
	if err := d.deleteTag(ctx, def, name); err != nil {
		return fmt.Errorf("delete snapshot %s of %s: %w", name, def.Name, err)
	}
	return nil
}

// deleteTag removes every internal snapshot tagged name from each of the
// guest's disks, if it has any.
func (d *Driver) deleteTag(ctx context.Context, def *guest.Definition, name string) error {
	var m *qmp.Client
	defer func() {
		if m != nil {
			m.Close()
		}
	}()
	for _, disk := range qcow2Disks(def) {
		path := d.diskPath(def, disk)
		tags, err := snapshotTags(ctx, path)
		if err != nil {
			return err
		}
		if tags[name] == 0 {
			continue
		}
		if !monitored.Process(def).Alive() {
			for range tags[name] {
				if err := qemuImg(ctx, "snapshot", "-d", name, path); err != nil {
					return err
				}
			}
			continue
		}
		if m == nil {
			if m, err = qmp.Dial(ctx, d.qmpSocket(def)); err != nil {
				return err
			}
		}
		for range tags[name] {
			if err := m.Run(ctx, qmp.BlockdevSnapshotDeleteInternalSync{Device: driveID(disk.Name), Name: name}, nil); err != nil {
				return err
			}
		}
	}
	return nil
}

// snapshotTags counts the internal snapshots of a qcow2 image by name
// (qemu-img lets a name repeat); -U reads the image of a running guest.
func snapshotTags(ctx context.Context, path string) (map[string]int, error) {
	var out bytes.Buffer
	if err := runcmd.Run(ctx, runcmd.Cmd{Name: "qemu-img", Args: []string{"info", "-U", "--output", "json", path}, Stdout: &out}); err != nil {
		return nil, fmt.Errorf("inspect %s: %w", filepath.Base(path), err)
	}
	var info struct {
		Snapshots []qmp.SnapshotInfo `json:"snapshots"`
	}
	if err := json.Unmarshal(out.Bytes(), &info); err != nil {
		return nil, fmt.Errorf("inspect %s: qemu-img info: %w", filepath.Base(path), err)
	}
	tags := map[string]int{}
	for _, s := range info.Snapshots {
		tags[s.Name]++
	}
	return tags, nil
}

// saveVars copies a UEFI guest's variable store into the snapshot.
func (d *Driver) saveVars(def *guest.Definition, dir string) error {
	if _, ok := def.Disk("uefi-vars"); !ok {
		return nil
	}
	if err := copyFile(filepath.Join(d.guestDir(def), uefiVars), filepath.Join(dir, snapshotVars)); err != nil {
		return fmt.Errorf("save the UEFI variable store of %s: %w", def.Name, err)
	}
	return nil
}

// restoreVars puts a snapshot's UEFI variable store back.
func (d *Driver) restoreVars(def *guest.Definition, dir string) error {
	saved := filepath.Join(dir, snapshotVars)
	if _, err := os.Stat(saved); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err := copyFile(saved, filepath.Join(d.guestDir(def), uefiVars)); err != nil {
		return fmt.Errorf("restore the UEFI variable store of %s: %w", def.Name, err)
	}
	return nil
}

// copyFile replaces dst with a copy of the small file src, atomically.
func copyFile(src, dst string) error {
	data, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	return fsutil.WriteFileAtomic(dst, data, 0o600)
}

// Copy implements driver.Copier: the root overlay, and each data disk, is
// rewritten by qemu-img convert onto the same template base, so the copy
// is an overlay again, holding only what the guest wrote and none of the
// source's snapshots; the UEFI variable store is copied. The source must be
// stopped: a running guest's disk changes under the copy.
func (d *Driver) Copy(ctx context.Context, src *guest.Definition, dir string, def *guest.Definition) error {
	if monitored.Process(src).Alive() {
		return fmt.Errorf("guest %s: %w: it is running; stop it first (a VM's disk is copied while it is stopped)", src.Name, api.ErrConflict)
	}
	t, tdir, err := d.template(src)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Join(dir, "disks"), 0o700); err != nil {
		return fmt.Errorf("copy %s: %w", src.Name, err)
	}
	def.Disks = nil
	for _, disk := range qcow2Disks(src) {
		base, err := templateBase(t, tdir, disk.Name)
		if err != nil {
			return fmt.Errorf("copy %s: %w", src.Name, err)
		}
		path := rootDisk
		if disk.Name != "root" {
			path = dataDiskPath(disk.Name)
		}
		clone := filepath.Join(dir, path)
		if err := qemuImg(ctx, "convert", "-O", "qcow2", "-B", base, "-F", "qcow2", d.diskPath(src, disk), clone); err != nil {
			return fmt.Errorf("copy the %s disk of %s: %w", disk.Name, src.Name, err)
		}
		info, err := inspectImage(ctx, clone)
		if err != nil {
			return err
		}
		def.Disks = append(def.Disks, guest.Disk{Name: disk.Name, Path: path, Kind: guest.RootfsQcow2, Size: guest.Size(info.VirtualSize)})
	}
	if vars, ok := src.Disk("uefi-vars"); ok {
		if err := copyFile(filepath.Join(d.guestDir(src), vars.Path), filepath.Join(dir, uefiVars)); err != nil {
			return fmt.Errorf("copy the UEFI variable store of %s: %w", src.Name, err)
		}
		def.Disks = append(def.Disks, guest.Disk{Name: "uefi-vars", Path: uefiVars, Kind: "uefi-vars"})
	}
	return nil
}

// qemuImg runs one qemu-img command quietly.
func qemuImg(ctx context.Context, args ...string) error {
	return runcmd.Run(ctx, runcmd.Cmd{Name: "qemu-img", Args: args})
}
