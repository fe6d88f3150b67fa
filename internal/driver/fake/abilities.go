package fake

import (
	"context"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/polyvisor/polyvisor/internal/driver"
	"github.com/polyvisor/polyvisor/internal/exporter"
	"github.com/polyvisor/polyvisor/internal/guest"
	"github.com/polyvisor/polyvisor/internal/idmap"
	"github.com/polyvisor/polyvisor/pkg/api"
)

// Exec runs a command in a running guest: "write PATH TEXT" and "cat PATH"
// reach its files, "false" exits 1, "sh -c SCRIPT" runs the small shell of
// sh.go, and anything else echoes its words.
func (d *Driver) Exec(ctx context.Context, def *guest.Definition, req api.ExecRequest, stdio driver.Stdio) (int, error) {
	if err := d.call(ctx, "Exec"); err != nil {
		return 0, err
	}
	if !running(def) {
		return 0, fmt.Errorf("exec in %s: %w", def.Name, api.ErrNotRunning)
	}
	args := req.Command
	d.host.mu.Lock()
	defer d.host.mu.Unlock()
	st, err := d.guest(def.Name)
	if err != nil {
		return 0, err
	}
	switch {
	case len(args) == 3 && args[0] == "sh" && args[1] == "-c":
		return st.sh(args[2], stdio), nil
	case len(args) == 3 && args[0] == "write":
		st.files[args[1]] = args[2]
	case len(args) == 2 && args[0] == "cat":
		text, ok := st.files[args[1]]
		if !ok {
			fmt.Fprintf(stdio.Stderr, "cat: %s: no such file\n", args[1])
			return 1, nil
		}
		fmt.Fprint(stdio.Stdout, text)
	case len(args) == 1 && args[0] == "false":
		return 1, nil
	default:
		fmt.Fprintln(stdio.Stdout, strings.Join(args, " "))
	}
	return 0, nil
}

// WriteFile and ReadFile reach a guest's files directly, for tests.
func (d *Driver) WriteFile(name, path, text string) error {
	d.host.mu.Lock()
	defer d.host.mu.Unlock()
	st, err := d.guest(name)
	if err != nil {
		return err
	}
	st.files[path] = text
	return nil
}

// ReadFile returns a guest's file, and whether it exists.
func (d *Driver) ReadFile(name, path string) (string, bool) {
	d.host.mu.Lock()
	defer d.host.mu.Unlock()
	st, err := d.guest(name)
	if err != nil {
		return "", false
	}
	text, ok := st.files[path]
	return text, ok
}

// Has reports whether the fake holds the named guest.
func (d *Driver) Has(name string) bool {
	d.host.mu.Lock()
	defer d.host.mu.Unlock()
	_, ok := d.host.guests[name]
	return ok
}

// Limits returns the limits last applied live to the guest.
func (d *Driver) Limits(name string) (cpus int, memory guest.Size) {
	d.host.mu.Lock()
	defer d.host.mu.Unlock()
	if st, err := d.guest(name); err == nil {
		return st.limits.CPUs, st.limits.Memory
	}
	return 0, 0
}

// UpdateLimits applies changed limits to the running guest.
func (d *Driver) UpdateLimits(ctx context.Context, def *guest.Definition) error {
	if err := d.call(ctx, "UpdateLimits"); err != nil {
		return err
	}
	d.host.mu.Lock()
	defer d.host.mu.Unlock()
	st, err := d.guest(def.Name)
	if err != nil {
		return err
	}
	st.limits.CPUs, st.limits.Memory = def.CPUs, def.Memory
	return nil
}

// ResizeDisk grows a disk; the guest sees it at once when it runs.
func (d *Driver) ResizeDisk(ctx context.Context, def *guest.Definition, name string) (string, error) {
	if err := d.call(ctx, "ResizeDisk"); err != nil {
		return "", err
	}
	disk, ok := def.Disk(name)
	if !ok {
		return "", fmt.Errorf("%w: guest %s has no disk %s", api.ErrNotFound, def.Name, name)
	}
	d.host.mu.Lock()
	defer d.host.mu.Unlock()
	st, err := d.guest(def.Name)
	if err != nil {
		return "", err
	}
	if disk.Size < st.disks[name] {
		return "", fmt.Errorf("%w: disk %s: %s is below its %s; disks only grow", api.ErrInvalid, name, disk.Size, st.disks[name])
	}
	st.disks[name] = disk.Size
	if running(def) {
		return "live", nil
	}
	return "next-start", nil
}

// DiskUsed says how much of a disk the guest's files take: their bytes.
func (d *Driver) DiskUsed(def *guest.Definition, name string) (int64, error) {
	d.host.mu.Lock()
	defer d.host.mu.Unlock()
	st, err := d.guest(def.Name)
	if err != nil {
		return 0, err
	}
	var n int64
	for _, text := range st.files {
		n += int64(len(text))
	}
	return n, nil
}

// CreateSnapshot copies the guest's files.
func (d *Driver) CreateSnapshot(ctx context.Context, def *guest.Definition, name, dir string) (driver.SnapshotInfo, error) {
	if err := d.call(ctx, "CreateSnapshot"); err != nil {
		return driver.SnapshotInfo{}, err
	}
	d.host.mu.Lock()
	defer d.host.mu.Unlock()
	st, err := d.guest(def.Name)
	if err != nil {
		return driver.SnapshotInfo{}, err
	}
	st.snapshots[name] = maps.Clone(st.files)
	return driver.SnapshotInfo{Kind: "fake-copy"}, nil
}

// RestoreSnapshot puts the guest's files back as the snapshot has them.
func (d *Driver) RestoreSnapshot(ctx context.Context, def *guest.Definition, name, dir string) error {
	if err := d.call(ctx, "RestoreSnapshot"); err != nil {
		return err
	}
	if running(def) {
		return fmt.Errorf("restore snapshot %s of %s: %w: it is running; stop it first", name, def.Name, api.ErrConflict)
	}
	d.host.mu.Lock()
	defer d.host.mu.Unlock()
	st, err := d.guest(def.Name)
	if err != nil {
		return err
	}
	files, ok := st.snapshots[name]
	if !ok {
		return fmt.Errorf("restore snapshot %s of %s: %w", name, def.Name, api.ErrNotFound)
	}
	st.files = maps.Clone(files)
	return nil
}

// DeleteSnapshot forgets a snapshot; one never taken is no error (an
// interrupted creation is undone so).
func (d *Driver) DeleteSnapshot(ctx context.Context, def *guest.Definition, name, dir string) error {
	if err := d.call(ctx, "DeleteSnapshot"); err != nil {
		return err
	}
	d.host.mu.Lock()
	defer d.host.mu.Unlock()
	if st, err := d.guest(def.Name); err == nil {
		delete(st.snapshots, name)
	}
	return nil
}

// Snapshots lists the snapshots the fake holds of a guest.
func (d *Driver) Snapshots(name string) []string {
	d.host.mu.Lock()
	defer d.host.mu.Unlock()
	st, err := d.guest(name)
	if err != nil {
		return nil
	}
	names := make([]string, 0, len(st.snapshots))
	for n := range st.snapshots {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Copy makes def a guest with src's files and disks, and no snapshots.
func (d *Driver) Copy(ctx context.Context, src *guest.Definition, dir string, def *guest.Definition) error {
	if err := d.call(ctx, "Copy"); err != nil {
		return err
	}
	d.host.mu.Lock()
	defer d.host.mu.Unlock()
	st, err := d.guest(src.Name)
	if err != nil {
		return err
	}
	def.Disks = append([]guest.Disk{}, src.Disks...)
	d.host.guests[def.Name] = &state{
		files: maps.Clone(st.files), disks: maps.Clone(st.disks), snapshots: map[string]map[string]string{},
	}
	return nil
}

// Sweep ends the processes of guests that are not live: what a crashed
// daemon left.
func (d *Driver) Sweep(ctx context.Context, live map[string]bool) error {
	if err := d.call(ctx, "Sweep"); err != nil {
		return err
	}
	d.host.mu.Lock()
	defer d.host.mu.Unlock()
	for pid, cmd := range d.host.procs {
		if !live[d.host.owners[pid]] {
			cmd.Process.Kill()
		}
	}
	return nil
}

// ReadRootTree writes the guest's files into a directory of their own and
// lends it to fn. The files are the daemon's user's, which the guest sees
// as its root.
func (d *Driver) ReadRootTree(ctx context.Context, def *guest.Definition, fn func(root string, toGuest idmap.ShiftFunc) error) error {
	if err := d.call(ctx, "ReadRootTree"); err != nil {
		return err
	}
	if running(def) {
		return fmt.Errorf("read the root tree of %s: %w: it is running; stop it first", def.Name, api.ErrConflict)
	}
	d.host.mu.Lock()
	st, err := d.guest(def.Name)
	var files map[string]string
	if err == nil {
		files = maps.Clone(st.files)
	}
	d.host.mu.Unlock()
	if err != nil {
		return err
	}
	root, err := os.MkdirTemp("", "fake-root-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(root)
	r, err := os.OpenRoot(root)
	if err != nil {
		return err
	}
	defer r.Close()
	for path, text := range files {
		rel := strings.TrimPrefix(filepath.Clean("/"+path), "/")
		if dir := filepath.Dir(rel); dir != "." {
			if err := r.MkdirAll(dir, 0o755); err != nil {
				return err
			}
		}
		if err := r.WriteFile(rel, []byte(text), 0o644); err != nil {
			return err
		}
	}
	uid, gid := uint32(os.Geteuid()), uint32(os.Getegid())
	toGuest := func(u, g uint32) (uint32, uint32, error) {
		if u == uid {
			u = 0
		}
		if g == gid {
			g = 0
		}
		return u, g, nil
	}
	return fn(root, toGuest)
}

// Export writes the stopped guest's files out as a tarball, through the
// tree it lends.
func (d *Driver) Export(ctx context.Context, def *guest.Definition, req api.Export, progress exporter.Progress, warn func(string)) error {
	return d.ReadRootTree(ctx, def, func(root string, toGuest idmap.ShiftFunc) error {
		return exporter.Tree(ctx, root, req.Path, toGuest, progress)
	})
}

// Usage is made up from what the guest holds, so tests can predict it: a
// tenth of a CPU second per file, its memory limit's half, its files'
// bytes as written to disk; no network.
func (d *Driver) Usage(ctx context.Context, def *guest.Definition) (api.GuestUsage, error) {
	if err := d.call(ctx, "Usage"); err != nil {
		return api.GuestUsage{}, err
	}
	d.host.mu.Lock()
	defer d.host.mu.Unlock()
	st, err := d.guest(def.Name)
	if err != nil {
		return api.GuestUsage{}, err
	}
	u := api.GuestUsage{CPUSeconds: float64(len(st.files)) / 10, MemoryBytes: int64(def.Memory) / 2}
	for _, text := range st.files {
		u.DiskWriteBytes += int64(len(text))
	}
	return u, nil
}
