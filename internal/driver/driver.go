// Package driver defines the one narrow contract every guest class
// implements, and the registry the daemon picks drivers from. Optional
// abilities (exec, console, live limits) are small extra interfaces that
// the daemon checks with a type assertion.
package driver

import (
	"context"
	"fmt"
	"io"
	"net"
	"sort"
	"time"

	"github.com/polyvisor/polyvisor/internal/api"
	"github.com/polyvisor/polyvisor/internal/guest"
	"github.com/polyvisor/polyvisor/internal/idmap"
)

// Driver runs the guests of one class.
type Driver interface {
	// Class is the driver's name, as stored in guest.yaml and shown by list.
	Class() string
	// Check canary-tests the class on this host and says why it does not work.
	Check(ctx context.Context) api.ClassVerdict
	// Create prepares the guest's disks inside dir (a staging directory that
	// the daemon renames into place once everything succeeded).
	Create(ctx context.Context, dir string, def *guest.Definition) error
	// Start boots the guest; the returned status identifies its processes.
	Start(ctx context.Context, def *guest.Definition) (guest.Status, error)
	// Stop ends the guest: a polite request, then a kill after timeout.
	Stop(ctx context.Context, def *guest.Definition, timeout time.Duration) error
	// Cleanup releases what a stopped guest still holds (mounts, cgroups,
	// sockets) and reports how its init ended, when known. Idempotent.
	Cleanup(ctx context.Context, def *guest.Definition) (*api.Exit, error)
	// Delete removes the guest's disks; the daemon removes its directory.
	Delete(ctx context.Context, def *guest.Definition) error
}

// Stdio carries an exec'd command's streams. Resize delivers terminal sizes
// (rows, cols) when the command has a TTY; it is never closed.
type Stdio struct {
	Stdin  io.Reader
	Stdout io.Writer
	Stderr io.Writer
	Resize <-chan [2]uint16
}

// Execer runs commands inside a running guest.
type Execer interface {
	Exec(ctx context.Context, def *guest.Definition, req api.ExecRequest, stdio Stdio) (exitCode int, err error)
}

// Consoler attaches to a running guest's console and knows where its log is.
type Consoler interface {
	AttachConsole(ctx context.Context, def *guest.Definition) (net.Conn, error)
	ConsoleLog(def *guest.Definition) string
}

// LimitUpdater applies changed limits to a running guest.
type LimitUpdater interface {
	UpdateLimits(ctx context.Context, def *guest.Definition) error
}

// DiskResizer grows a guest's disk image to the size its definition now
// gives (def.Disk(name).Size), running or not. It reports whether the
// guest uses the new space already ("live") or from its next start
// ("next-start").
type DiskResizer interface {
	ResizeDisk(ctx context.Context, def *guest.Definition, name string) (applied string, err error)
}

// DiskUsageReporter says how many bytes of a bounded disk (a container's
// disk quota) its guest's files take; 0 where the driver cannot tell.
type DiskUsageReporter interface {
	DiskUsed(def *guest.Definition, name string) (int64, error)
}

// TreeReader lends a stopped guest's root tree, as the guest sees it, to
// fn, with the shift from host ids back to the guest's (nil for none).
type TreeReader interface {
	ReadRootTree(ctx context.Context, def *guest.Definition, fn func(root string, toGuest idmap.ShiftFunc) error) error
}

// Registry maps a class name to its driver.
type Registry struct {
	drivers map[string]Driver
	byType  map[string]string
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry {
	return &Registry{drivers: map[string]Driver{}, byType: map[string]string{}}
}

// Register adds a driver and the guest type it serves.
func (r *Registry) Register(guestType string, d Driver) {
	r.drivers[d.Class()] = d
	r.byType[guestType] = d.Class()
}

// Get returns the driver of a class.
func (r *Registry) Get(class string) (Driver, error) {
	d, ok := r.drivers[class]
	if !ok {
		return nil, fmt.Errorf("%w: class %q has no driver in this build", api.ErrNotAvailable, class)
	}
	return d, nil
}

// ForType returns the driver serving a guest type.
func (r *Registry) ForType(guestType string) (Driver, error) {
	class, ok := r.byType[guestType]
	if !ok {
		return nil, fmt.Errorf("%w: type %s: no driver for it in this build (known: %v)", api.ErrNotAvailable, guestType, r.Types())
	}
	return r.drivers[class], nil
}

// Types lists the guest types that have a driver.
func (r *Registry) Types() []string {
	var types []string
	for t := range r.byType {
		types = append(types, t)
	}
	sort.Strings(types)
	return types
}

// All returns every driver, sorted by class.
func (r *Registry) All() []Driver {
	var all []Driver
	for _, d := range r.drivers {
		all = append(all, d)
	}
	sort.Slice(all, func(i, j int) bool { return all[i].Class() < all[j].Class() })
	return all
}

// Sweeper releases what a class left on the host for guests that are no
// longer running (mounts, cgroups, runtime state), after a crash. The
// daemon calls it once on start with the names of the live guests.
type Sweeper interface {
	Sweep(ctx context.Context, live map[string]bool) error
}

// ConfinementReporter says what a guest of its class runs under, as the
// driver would start it now.
type ConfinementReporter interface {
	Confinement(def *guest.Definition) *api.Confinement
}

// Adopter repairs a live guest the daemon adopts on start, left in a state
// only an interrupted operation puts it in: a container frozen for a
// snapshot or copy when the daemon died is thawed, a VM paused for a
// snapshot resumed.
type Adopter interface {
	Adopt(ctx context.Context, def *guest.Definition) error
}

// Snapshotter takes, restores and deletes point-in-time snapshots of a
// guest's disks. dir is the snapshot's own directory inside the guest's
// (a staging one during CreateSnapshot), where the driver keeps what it
// copies; the daemon writes the snapshot's record beside it and removes
// dir after DeleteSnapshot. CreateSnapshot works on a running guest too
// (consistently: the guest is paused or frozen meanwhile) and, when it
// fails, leaves nothing of the snapshot behind. RestoreSnapshot needs the
// guest stopped; it may update def's disks (a VM disk gets back the size
// it had), which the daemon saves. DeleteSnapshot works running or not.
type Snapshotter interface {
	CreateSnapshot(ctx context.Context, def *guest.Definition, name, dir string) (SnapshotInfo, error)
	RestoreSnapshot(ctx context.Context, def *guest.Definition, name, dir string) error
	DeleteSnapshot(ctx context.Context, def *guest.Definition, name, dir string) error
}

// SnapshotInfo is what a driver says of a snapshot it took.
type SnapshotInfo struct {
	// Kind says what the snapshot is: qcow2-internal, overlay-upper or
	// rootfs-copy.
	Kind string
	// Size is the space the snapshot's own copy takes on the host, in
	// bytes; 0 when it is not known (a qcow2 internal snapshot shares its
	// clusters with the live disk).
	Size int64
}

// Copier copies a guest's disks into dir, a new guest's staging
// directory, for def (the new guest's definition, whose Disks it sets),
// as Create would from a template. The copy has none of the source's
// snapshots. A class that cannot copy a running guest consistently
// refuses one.
type Copier interface {
	Copy(ctx context.Context, src *guest.Definition, dir string, def *guest.Definition) error
}
