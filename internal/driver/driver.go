// Package driver defines the one narrow contract every guest class
// implements, and the registry the daemon picks drivers from. Everything
// that differs by class is behind it: what a driver can do is declared in
// Capabilities, and each optional ability (exec, console, live limits,
// snapshots, export...) is a small extra interface the driver implements
// when, and only when, it declares the ability.
package driver

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"sort"
	"strings"
	"time"

	"github.com/polyvisor/polyvisor/internal/agent"
	"github.com/polyvisor/polyvisor/internal/cgroup"
	"github.com/polyvisor/polyvisor/internal/exporter"
	"github.com/polyvisor/polyvisor/internal/guest"
	"github.com/polyvisor/polyvisor/internal/idmap"
	"github.com/polyvisor/polyvisor/internal/network"
	"github.com/polyvisor/polyvisor/pkg/api"
)

// Driver runs the guests of one class.
type Driver interface {
	// Name is the driver's (engine's) name: its key in the registry,
	// stored in guest.yaml's class.
	Name() string
	// Type is the guest type it serves (guest.TypeContainer, guest.TypeVM).
	Type() string
	// Capabilities declares what its guests can do; it agrees with the
	// optional interfaces the driver implements.
	Capabilities() api.Capabilities
	// Check canary-tests the class on this host and says why it does not work.
	Check(ctx context.Context) api.ClassVerdict
	// Define validates and fills the class-specific part of a new
	// definition from the request that makes it (rootfs, root disk size,
	// arch, id map, confinement); the daemon has filled the generic part
	// (name, type, template, cpus, memory, networks) and validates the
	// whole once the guest's name and id range are reserved. Errors are
	// api.ErrInvalid, one line naming the field and the fix.
	Define(def *guest.Definition, req api.GuestCreate) error
	// View fills the class-specific part of a guest's API view: the class
	// shown to users, its id map, its confinement, its disks' usage.
	View(def *guest.Definition, g *api.Guest)
	// Recover is called for a guest found running when the daemon starts,
	// from the handle Start wrote (def.Status.Handle and HandleVersion):
	// it reattaches what it needs and repairs what only an interrupted
	// operation leaves (a frozen container, a paused VM). A handle version
	// it does not know is refused with an error; the daemon then leaves
	// the guest running as it is.
	Recover(ctx context.Context, def *guest.Definition) error
	// Create prepares the guest's disks inside dir (a staging directory that
	// the daemon renames into place once everything succeeded).
	Create(ctx context.Context, dir string, def *guest.Definition) error
	// Start boots the guest; the returned status identifies its processes
	// and carries the handle Recover reads (HandleVersion, Handle).
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

// ExecThroughAgent runs req in a guest through its agent's connection c,
// kept in pool under the guest's name; a connection that breaks is
// dropped, so that the next exec dials again.
func ExecThroughAgent(ctx context.Context, pool *agent.Pool, name string, c *agent.Client, req api.ExecRequest, stdio Stdio) (int, error) {
	code, err := c.Exec(ctx, agent.ExecRequest{
		Command: req.Command, Env: req.Env, Cwd: req.Cwd, TTY: req.TTY, Rows: req.Rows, Cols: req.Cols,
	}, stdio.Stdin, stdio.Stdout, stdio.Stderr, stdio.Resize)
	if err != nil {
		pool.Drop(name)
		return 0, fmt.Errorf("exec in %s: %w", name, err)
	}
	return code, nil
}

// syncTimeout bounds a guest's sync before a snapshot, best effort.
const syncTimeout = 10 * time.Second

// SyncGuest asks a guest's agent (dial reaches it) to run sync, so that a
// snapshot holds what its programs wrote lately. A guest that does not
// answer within syncTimeout is snapshotted as it is (crash-consistent),
// with a warning.
func SyncGuest(ctx context.Context, log *slog.Logger, name string, dial func(context.Context) (*agent.Client, error)) {
	ctx, cancel := context.WithTimeout(ctx, syncTimeout)
	defer cancel()
	c, err := dial(ctx)
	if err == nil {
		var code int
		code, err = c.Exec(ctx, agent.ExecRequest{Command: []string{"sync"}}, nil, io.Discard, io.Discard, nil)
		if err == nil && code != 0 {
			err = fmt.Errorf("sync exited with %d", code)
		}
	}
	if err != nil {
		log.Warn("the guest did not sync before its snapshot; it is taken crash-consistent", "guest", name, "err", err)
	}
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

// UsageReporter says what a running guest uses: CPU time, memory, disk
// and network bytes.
type UsageReporter interface {
	Usage(ctx context.Context, def *guest.Definition) (api.GuestUsage, error)
}

// TreeReader lends a stopped guest's root tree, as the guest sees it, to
// fn, with the shift from host ids back to the guest's (nil for none).
type TreeReader interface {
	ReadRootTree(ctx context.Context, def *guest.Definition, fn func(root string, toGuest idmap.ShiftFunc) error) error
}

// Exporter writes a stopped guest out in another product's format
// (Capabilities().ExportFormats), reporting progress and warning about
// what the copy lacks; the daemon has checked the format and the
// destination, and holds the guest stopped meanwhile.
type Exporter interface {
	Export(ctx context.Context, def *guest.Definition, req api.Export, progress exporter.Progress, warn func(string)) error
}

// LiveExporter copies a running guest's tree as it runs, each file whole
// but not the tree at one instant (what a crash would leave): the
// replica of an HA guest.
type LiveExporter interface {
	ExportRunning(ctx context.Context, def *guest.Definition, req api.Export, progress exporter.Progress) error
}

// Registry maps a driver's name to the driver, and each guest type to the
// drivers serving it. The first driver registered for a type is its
// default, which runs the guests that name no engine.
type Registry struct {
	drivers map[string]Driver
	byType  map[string][]string // registration order: the first is the default
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry {
	return &Registry{drivers: map[string]Driver{}, byType: map[string][]string{}}
}

// Register adds a driver under its name, serving its type; the first
// driver of a type is that type's default. A name registered twice is a
// programming error.
func (r *Registry) Register(d Driver) {
	if _, dup := r.drivers[d.Name()]; dup {
		panic(fmt.Sprintf("driver %q registered twice", d.Name()))
	}
	r.drivers[d.Name()] = d
	r.byType[d.Type()] = append(r.byType[d.Type()], d.Name())
}

// Get returns the driver named name (a guest's class).
func (r *Registry) Get(name string) (Driver, error) {
	d, ok := r.drivers[name]
	if !ok {
		return nil, fmt.Errorf("%w: class %q has no driver in this build", api.ErrNotAvailable, name)
	}
	return d, nil
}

// ForType returns the driver that runs a new guest of guestType: the one
// named engine, which must serve that type, or the type's default when
// engine is empty.
func (r *Registry) ForType(guestType, engine string) (Driver, error) {
	names, ok := r.byType[guestType]
	if !ok {
		return nil, fmt.Errorf("%w: type %s: no driver for it in this build (known: %v)", api.ErrNotAvailable, guestType, r.Types())
	}
	if engine == "" {
		return r.drivers[names[0]], nil
	}
	d, ok := r.drivers[engine]
	if !ok || d.Type() != guestType {
		return nil, fmt.Errorf("%w: engine %q: no such engine for type %s; use one of %s", api.ErrInvalid, engine, guestType, strings.Join(r.Engines(guestType), ", "))
	}
	return d, nil
}

// Engines lists the names of the drivers serving guestType, sorted.
func (r *Registry) Engines(guestType string) []string {
	names := append([]string(nil), r.byType[guestType]...)
	sort.Strings(names)
	return names
}

// IsDefault reports whether d is its type's default driver.
func (r *Registry) IsDefault(d Driver) bool {
	names := r.byType[d.Type()]
	return len(names) > 0 && names[0] == d.Name()
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

// All returns every driver, sorted by name.
func (r *Registry) All() []Driver {
	var all []Driver
	for _, d := range r.drivers {
		all = append(all, d)
	}
	sort.Slice(all, func(i, j int) bool { return all[i].Name() < all[j].Name() })
	return all
}

// Sweeper releases what a class left on the host for guests that are no
// longer running (mounts, cgroups, runtime state), after a crash. The
// daemon calls it once on start with the names of the live guests.
type Sweeper interface {
	Sweep(ctx context.Context, live map[string]bool) error
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

// Migrator moves a running guest to another host while it runs. The
// source describes its disks (MigrationDisks); the destination makes
// them and waits (PrepareIncoming); the source sends the guest there
// (MigrateOut); the destination resumes it (FinishIncoming) or, when
// anything failed, removes what it made (AbortIncoming).
type Migrator interface {
	// MigrationDisks describes the running guest's disks for a migration.
	MigrationDisks(ctx context.Context, def *guest.Definition) ([]MigrationDisk, error)
	// PrepareIncoming makes def's disks here (of the sizes in src), starts
	// the guest's VMM paused, waiting for an incoming migration on listen
	// (an IP of this host), and serves its disks, writable, to be mirrored
	// into. The status identifies the VMM as Start's does: the daemon
	// keeps it in def.Status for the calls that follow.
	PrepareIncoming(ctx context.Context, def *guest.Definition, src MigrationSource, listen netip.Addr) (Incoming, guest.Status, error)
	// MigrateOut mirrors the running guest's disks into the target's
	// exports, then migrates its memory and device state; on success the
	// guest here has ended (its disks stay until Delete), on failure it
	// runs on here unharmed.
	MigrateOut(ctx context.Context, def *guest.Definition, to Incoming) (MigrationStats, error)
	// FinishIncoming resumes the migrated guest here and leaves it as a
	// started one (Recover, Exec and Stop work on it as on any other).
	FinishIncoming(ctx context.Context, def *guest.Definition) error
	// AbortIncoming kills the waiting VMM and removes what PrepareIncoming
	// made. Idempotent.
	AbortIncoming(ctx context.Context, def *guest.Definition) error
}

// MigrationSource is what the source of a migration tells its target.
type MigrationSource struct {
	Disks []MigrationDisk `json:"disks"`
}

// MigrationDisk is one disk of a migrating guest: its name in the
// guest's definition (guest.Disk.Name) and its virtual size in bytes.
type MigrationDisk struct {
	ID   string `json:"id"`
	Size int64  `json:"size"`
}

// Incoming is where the target of a migration waits for it.
type Incoming struct {
	// Migration is the VMM's migration address, "tcp:IP:PORT".
	Migration string `json:"migration"`
	// NBD is the address of the NBD server holding the disks, "IP:PORT"
	// (an IPv6 address in brackets).
	NBD string `json:"nbd"`
	// Exports names each disk's NBD export, by MigrationDisk.ID.
	Exports map[string]string `json:"exports"`
}

// MigrationStats is what a finished migration cost.
type MigrationStats struct {
	// Total runs from the first disk's mirror to the source's end.
	Total time.Duration `json:"total"`
	// Downtime is how long the guest was paused up to the source's end
	// (the final copy, then the mirrors' end); the target's resume adds
	// its own few milliseconds.
	Downtime time.Duration `json:"downtime"`
	// Bytes counts what was sent: the disks' and the memory's.
	Bytes int64 `json:"bytes"`
}

// CheckCapabilities says where a driver's declared Capabilities disagree
// with the optional interfaces it implements; nil when they agree.
func CheckCapabilities(d Driver) error {
	c := d.Capabilities()
	var wrong []string
	check := func(name string, declared, implemented bool) {
		if declared != implemented {
			wrong = append(wrong, fmt.Sprintf("%s declared %v, implemented %v", name, declared, implemented))
		}
	}
	_, exec := d.(Execer)
	_, console := d.(Consoler)
	_, limits := d.(LimitUpdater)
	_, resize := d.(DiskResizer)
	_, usage := d.(DiskUsageReporter)
	_, snap := d.(Snapshotter)
	_, copier := d.(Copier)
	_, export := d.(Exporter)
	_, tree := d.(TreeReader)
	check("exec", c.Exec, exec)
	check("console", c.Console, console)
	check("liveLimits", c.LiveLimits, limits)
	check("diskResize", c.DiskResize, resize)
	check("diskUsage", c.DiskUsage, usage)
	check("snapshots", c.Snapshots, snap)
	check("copy", c.Copy, copier)
	check("copyRunning", c.CopyRunning, c.CopyRunning && copier)
	check("export", c.Export, export)
	check("exportFormats", len(c.ExportFormats) > 0, export)
	check("treeRead", c.TreeRead, tree)
	if len(wrong) == 0 {
		return nil
	}
	return fmt.Errorf("driver %s: capabilities disagree with its interfaces: %s", d.Name(), strings.Join(wrong, "; "))
}

// CgroupUsage is the part of a guest's usage every class that runs its
// guest in a cgroup of its own and plugs NICs with internal/network
// reads alike: CPU time and memory from the cgroup at path, network bytes
// from the host's end of its NICs. Disk bytes are the class's to add.
func CgroupUsage(path string, def *guest.Definition) (api.GuestUsage, error) {
	u, err := cgroup.ReadUsage(path)
	if err != nil {
		return api.GuestUsage{}, fmt.Errorf("usage of %s: %w", def.Name, err)
	}
	out := api.GuestUsage{CPUSeconds: u.CPU.Seconds(), MemoryBytes: u.Memory}
	if out.NetworkReceiveBytes, out.NetworkTransmitBytes, err = network.Traffic(def); err != nil {
		return api.GuestUsage{}, fmt.Errorf("usage of %s: %w", def.Name, err)
	}
	return out, nil
}
