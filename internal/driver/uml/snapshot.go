package uml

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/polyvisor/polyvisor/internal/agent"
	"github.com/polyvisor/polyvisor/internal/cgroup"
	"github.com/polyvisor/polyvisor/internal/driver"
	"github.com/polyvisor/polyvisor/internal/fsutil"
	"github.com/polyvisor/polyvisor/internal/guest"
	"github.com/polyvisor/polyvisor/internal/monitor/monitored"
	"github.com/polyvisor/polyvisor/internal/runcmd"
	"github.com/polyvisor/polyvisor/pkg/api"
)

// A UML guest's snapshot is a copy of its COW file (sparse: only the
// blocks the guest wrote), taken while the guest is stopped or frozen
// through its cgroup's freezer, so that the file is of one instant: what
// the disk would hold had the host lost power then.

// SnapshotKind is the kind of a UML guest's snapshots.
const SnapshotKind = "ubd-cow-copy"

// snapshotCOW is the COW file's copy in a snapshot's directory; a
// snapshot of a guest that never booted (and has no COW file yet) has
// none.
const snapshotCOW = "root.cow"

// snapshotNoCOW marks a snapshot of a guest that had no COW file yet.
const snapshotNoCOW = "no-cow"

// freezeTimeout bounds the wait for the freezer to stop every process.
const freezeTimeout = 5 * time.Second

// CreateSnapshot implements driver.Snapshotter.
func (d *Driver) CreateSnapshot(ctx context.Context, def *guest.Definition, name, dir string) (info driver.SnapshotInfo, err error) {
	info = driver.SnapshotInfo{Kind: SnapshotKind}
	defer func() {
		if err != nil {
			os.Remove(filepath.Join(dir, snapshotCOW))
			os.Remove(filepath.Join(dir, snapshotNoCOW))
		}
	}()
	if monitored.Process(def).Alive() {
		driver.SyncGuest(ctx, d.log, def.Name, func(ctx context.Context) (*agent.Client, error) { return d.agent(ctx, def) })
		if err := ctx.Err(); err != nil {
			return info, fmt.Errorf("snapshot %s of %s: %w", name, def.Name, err)
		}
		if err := setFrozen(d.cgroupPath(def), true); err != nil {
			return info, fmt.Errorf("snapshot %s of %s: %w", name, def.Name, err)
		}
		defer func() {
			if terr := setFrozen(d.cgroupPath(def), false); terr != nil {
				err = errors.Join(err, fmt.Errorf("snapshot %s of %s: thaw: %w", name, def.Name, terr))
			}
		}()
	}
	dst := filepath.Join(dir, snapshotCOW)
	if err := copySparse(ctx, d.cowPath(def), dst); err != nil {
		return info, fmt.Errorf("snapshot %s of %s: %w", name, def.Name, err)
	}
	if _, err := os.Stat(dst); errors.Is(err, os.ErrNotExist) {
		// Taken before the first boot: restoring it means no COW file.
		if err := os.WriteFile(filepath.Join(dir, snapshotNoCOW), nil, 0o600); err != nil {
			return info, fmt.Errorf("snapshot %s of %s: %w", name, def.Name, err)
		}
	}
	if err := ctx.Err(); err != nil {
		return info, fmt.Errorf("snapshot %s of %s: %w", name, def.Name, err)
	}
	info.Size = allocated(dst)
	return info, nil
}

// RestoreSnapshot implements driver.Snapshotter: the guest's COW file is
// replaced by the snapshot's (or removed, for a snapshot taken before the
// first boot).
func (d *Driver) RestoreSnapshot(ctx context.Context, def *guest.Definition, name, dir string) error {
	if monitored.Process(def).Alive() {
		return fmt.Errorf("guest %s: %w: it is running; stop it first", def.Name, api.ErrConflict)
	}
	saved := filepath.Join(dir, snapshotCOW)
	_, errCOW := os.Stat(saved)
	_, errNone := os.Stat(filepath.Join(dir, snapshotNoCOW))
	if errCOW != nil && errNone != nil {
		return fmt.Errorf("snapshot %s of %s: %w", name, def.Name, api.ErrNotFound)
	}
	cow := d.cowPath(def)
	tmp := cow + ".restore"
	os.Remove(tmp)
	if err := copySparse(ctx, saved, tmp); err != nil {
		return fmt.Errorf("restore %s of %s: %w", name, def.Name, err)
	}
	if _, err := os.Stat(tmp); errors.Is(err, os.ErrNotExist) {
		if err := os.Remove(cow); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("restore %s of %s: %w", name, def.Name, err)
		}
		return nil
	}
	if err := os.Rename(tmp, cow); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("restore %s of %s: %w", name, def.Name, err)
	}
	return fsutil.SyncDir(filepath.Dir(cow))
}

// DeleteSnapshot implements driver.Snapshotter: the copy lives in the
// snapshot's directory, which the daemon removes.
func (d *Driver) DeleteSnapshot(ctx context.Context, def *guest.Definition, name, dir string) error {
	return nil
}

// Copy implements driver.Copier: the new guest's COW file is a copy of the
// source's, over the same template image. A running source is refused.
func (d *Driver) Copy(ctx context.Context, src *guest.Definition, dir string, def *guest.Definition) error {
	if monitored.Process(src).Alive() {
		return fmt.Errorf("guest %s: %w: it is running; stop it first (a uml guest's disk is copied while it is stopped)", src.Name, api.ErrConflict)
	}
	if err := d.Create(ctx, dir, def); err != nil {
		return err
	}
	if err := copySparse(ctx, d.cowPath(src), filepath.Join(dir, rootCOW)); err != nil {
		return fmt.Errorf("copy the root disk of %s: %w", src.Name, err)
	}
	return nil
}

// copySparse copies the file src to dst keeping its holes (a COW file is
// mostly holes); a missing src copies to nothing.
func copySparse(ctx context.Context, src, dst string) error {
	if _, err := os.Stat(src); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err := runcmd.Run(ctx, runcmd.Cmd{Name: "cp", Args: []string{"--sparse=always", "--", src, dst}}); err != nil {
		os.Remove(dst)
		return fmt.Errorf("copy %s: %w", filepath.Base(src), err)
	}
	return nil
}

// allocated is the space the file at path takes on disk.
func allocated(path string) int64 {
	var st unix.Stat_t
	if unix.Stat(path, &st) != nil {
		return 0
	}
	return st.Blocks * 512
}

// setFrozen freezes or thaws every process in the cgroup at path (the
// freezer of cgroup v1, cgroup.freeze on v2), waiting, up to
// freezeTimeout, until a freeze has taken hold. A cgroup that does not
// exist is left alone when thawing.
func setFrozen(path string, frozen bool) error {
	file, value, done := filepath.Join(cgroup.Root, "freezer", path, "freezer.state"), "THAWED", "THAWED"
	if frozen {
		value, done = "FROZEN", "FROZEN"
	}
	if cgroup.Mode() == "v2" {
		file, value = filepath.Join(cgroup.Root, path, "cgroup.freeze"), "0"
		if frozen {
			value = "1"
		}
		done = value
	}
	if err := os.WriteFile(file, []byte(value), 0); err != nil {
		if !frozen && errors.Is(err, os.ErrNotExist) {
			return nil
		}
		return fmt.Errorf("freezer: %w", err)
	}
	if !frozen {
		return nil
	}
	// v2's cgroup.freeze reads back what was asked; its cgroup.events
	// says when the freeze is complete.
	state := file
	if cgroup.Mode() == "v2" {
		state = filepath.Join(cgroup.Root, path, "cgroup.events")
	}
	deadline := time.Now().Add(freezeTimeout)
	for {
		data, err := os.ReadFile(state)
		if err != nil {
			return fmt.Errorf("freezer: %w", err)
		}
		s := strings.TrimSpace(string(data))
		if s == done || strings.Contains(s, "frozen 1") {
			return nil
		}
		if time.Now().After(deadline) {
			setFrozen(path, false)
			return fmt.Errorf("freezer: the guest's processes did not freeze within %s", freezeTimeout)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
