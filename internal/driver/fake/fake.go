// Package fake is a guest class that keeps its guests in memory, for
// testing the daemon's own logic without root and without a runtime: its
// failures and delays are injected per method. Liveness is real, though:
// a started guest is a harmless child process (sleep) that the fake owns,
// so the daemon checks and watches it by pid and start time as it does any
// guest's init.
package fake

import (
	"context"
	"fmt"
	"maps"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/polyvisor/polyvisor/internal/arch"
	"github.com/polyvisor/polyvisor/internal/driver"
	"github.com/polyvisor/polyvisor/internal/guest"
	"github.com/polyvisor/polyvisor/internal/hostreq"
	"github.com/polyvisor/polyvisor/internal/procutil"
	"github.com/polyvisor/polyvisor/pkg/api"
)

// Name is the fake class's name, as stored in guest.yaml.
const Name = "fake"

// HandleVersion is the version of the handle Start records and Recover
// reads; Recover refuses any other.
const HandleVersion = 1

// The abilities the fake has, checked where the daemon sees them.
var (
	_ driver.Driver            = (*Driver)(nil)
	_ driver.Execer            = (*Driver)(nil)
	_ driver.LimitUpdater      = (*Driver)(nil)
	_ driver.DiskResizer       = (*Driver)(nil)
	_ driver.Snapshotter       = (*Driver)(nil)
	_ driver.Copier            = (*Driver)(nil)
	_ driver.Sweeper           = (*Driver)(nil)
	_ driver.TreeReader        = (*Driver)(nil)
	_ driver.Exporter          = (*Driver)(nil)
	_ driver.DiskUsageReporter = (*Driver)(nil)
	_ driver.UsageReporter     = (*Driver)(nil)
)

// Options configure a fake driver.
type Options struct {
	// Type is the guest type it serves: guest.TypeContainer (the default)
	// or guest.TypeVM.
	Type string
	// Fail makes a method (by its name: "Start", "CreateSnapshot") return
	// the error, until SetFail clears it.
	Fail map[string]error
	// Delay makes a method wait this long (or until its context ends)
	// before it acts.
	Delay map[string]time.Duration
	// Host is the machine the guests live on: nil for a new one, which
	// the driver's Close ends; a driver made over another's host plays
	// the same driver after a daemon restart.
	Host *Host
	// RunDir gives a guest's run directory, which its process names in
	// its command line, as a real guest's monitor does, so that the
	// daemon finds what runs of a guest by it. Nil for none.
	RunDir func(name string) string
}

// Host is what the fake's guests leave on the machine, outliving a driver
// instance as a real guest outlives its daemon: their state and their
// processes. A driver made over the same Host (a daemon restart) finds them.
type Host struct {
	mu     sync.Mutex
	guests map[string]*state
	procs  map[int]*exec.Cmd
	owners map[int]string // pid -> guest
	// reaped is closed per pid once its process is reaped.
	reaped map[int]chan struct{}
	exits  map[string]*api.Exit
	// reapers are the goroutines reaping the processes the fake started.
	reapers sync.WaitGroup
}

// NewHost returns an empty host; Close ends what its guests run.
func NewHost() *Host {
	return &Host{
		guests: map[string]*state{}, procs: map[int]*exec.Cmd{}, owners: map[int]string{},
		reaped: map[int]chan struct{}{}, exits: map[string]*api.Exit{},
	}
}

// Close kills every process the host's guests run and reaps them.
func (h *Host) Close() {
	h.mu.Lock()
	for _, cmd := range h.procs {
		cmd.Process.Kill()
	}
	h.mu.Unlock()
	h.reapers.Wait()
}

// Driver is the fake class. Its zero value is not usable: use New.
type Driver struct {
	typ    string
	runDir func(string) string
	host   *Host
	// ownHost says the driver made its host, and closes it.
	ownHost bool

	// What a test injects, guarded by host.mu.
	fail  map[string]error
	delay map[string]time.Duration
	holds map[string]*Gate
	calls map[string]int
}

// state is one guest as the fake keeps it.
type state struct {
	files     map[string]string
	disks     map[string]guest.Size
	limits    guest.Definition
	snapshots map[string]map[string]string
}

// New returns a fake driver; Close ends what it started.
func New(o Options) *Driver {
	if o.Type == "" {
		o.Type = guest.TypeContainer
	}
	d := &Driver{
		typ: o.Type, runDir: o.RunDir, host: o.Host,
		fail: maps.Clone(o.Fail), delay: maps.Clone(o.Delay), holds: map[string]*Gate{}, calls: map[string]int{},
	}
	if d.host == nil {
		d.host, d.ownHost = NewHost(), true
	}
	if d.fail == nil {
		d.fail = map[string]error{}
	}
	return d
}

// Close ends the processes of the driver's guests, if it made their host.
func (d *Driver) Close() {
	if d.ownHost {
		d.host.Close()
	}
}

// Name is the driver's name, as stored in guest.yaml.
func (d *Driver) Name() string { return Name }

// Type is the guest type the fake serves.
func (d *Driver) Type() string { return d.typ }

// Capabilities declares what the fake can do: everything but a console,
// networks (it has no interface to attach) and --privileged or --copy.
func (d *Driver) Capabilities() api.Capabilities {
	return api.Capabilities{
		Exec: true, LiveLimits: true, DiskResize: true, DiskUsage: true, Usage: true,
		Snapshots: true, Copy: true, CopyRunning: true, Export: true, TreeRead: true,
		ExportFormats: []string{"tar"}, Arches: []string{arch.Host().Debian},
	}
}

// Check says the fake works: it needs nothing of the host but sleep.
func (d *Driver) Check(ctx context.Context) api.ClassVerdict {
	began := time.Now()
	v := api.ClassVerdict{Class: Name, Works: true, Reason: "guests in memory, each a sleep process"}
	if _, err := hostreq.Lookup("sleep"); err != nil {
		v.Works, v.Reason = false, "sleep, which stands for a guest's process, is missing: "+err.Error()
	}
	v.Duration = time.Since(began).String()
	return v
}

// Define applies the fake's own rules to a new definition: it has no
// private root tree to copy and no privileged mode.
func (d *Driver) Define(def *guest.Definition, req api.GuestCreate) error {
	if err := d.call(context.Background(), "Define"); err != nil {
		return err
	}
	if req.Copy || req.Privileged {
		return fmt.Errorf("%w: --copy and --privileged: class %s has neither; drop them", api.ErrInvalid, Name)
	}
	// The root mode guest.yaml's schema requires of the type served.
	def.Rootfs = guest.RootfsOverlay
	if def.Type == guest.TypeVM {
		def.Rootfs = guest.RootfsQcow2
	}
	// A bounded root disk, as an overlay container's quota image is.
	size := guest.DefaultDiskQuota
	if req.Disk != "" {
		var err error
		if size, err = guest.ParseDiskQuota("disk", req.Disk); err != nil {
			return err
		}
	}
	if size > 0 {
		def.Disks = []guest.Disk{{Name: "root", Size: size}}
	}
	return nil
}

// View fills in the fake's part of a guest's API view: nothing beyond
// what every class shows.
func (d *Driver) View(def *guest.Definition, g *api.Guest) {}

// Create records the guest, with the root disk its definition asks for.
func (d *Driver) Create(ctx context.Context, dir string, def *guest.Definition) error {
	if err := d.call(ctx, "Create"); err != nil {
		return err
	}
	d.host.mu.Lock()
	defer d.host.mu.Unlock()
	st := &state{files: map[string]string{}, disks: map[string]guest.Size{}, snapshots: map[string]map[string]string{}}
	for i := range def.Disks {
		// A bounded disk, as a quota image is: it grows, never shrinks.
		def.Disks[i].Kind, def.Disks[i].Path = guest.DiskOverlayImage, filepath.Join("disks", def.Disks[i].Name)
		st.disks[def.Disks[i].Name] = def.Disks[i].Size
	}
	d.host.guests[def.Name] = st
	return nil
}

// guest returns the named guest's state; d.mu is held.
func (d *Driver) guest(name string) (*state, error) {
	st, ok := d.host.guests[name]
	if !ok {
		return nil, fmt.Errorf("fake guest %s: %w", name, api.ErrNotFound)
	}
	return st, nil
}

// Start runs the guest's process: sleep, naming the guest's run dir.
func (d *Driver) Start(ctx context.Context, def *guest.Definition) (guest.Status, error) {
	if err := d.call(ctx, "Start"); err != nil {
		return guest.Status{}, err
	}
	d.host.mu.Lock()
	defer d.host.mu.Unlock()
	if _, err := d.guest(def.Name); err != nil {
		return guest.Status{}, err
	}
	sleep, err := hostreq.Lookup("sleep")
	if err != nil {
		return guest.Status{}, fmt.Errorf("start %s: %w", def.Name, err)
	}
	argv0 := "fake-guest-" + def.Name
	if d.runDir != nil {
		argv0 = filepath.Join(d.runDir(def.Name), "fake-init")
	}
	cmd := &exec.Cmd{Path: sleep, Args: []string{argv0, "infinity"}}
	if err := cmd.Start(); err != nil {
		return guest.Status{}, fmt.Errorf("start %s: %w", def.Name, err)
	}
	id, err := procutil.Identify(cmd.Process.Pid)
	if err != nil {
		cmd.Process.Kill()
		cmd.Wait()
		return guest.Status{}, fmt.Errorf("start %s: %w", def.Name, err)
	}
	done := make(chan struct{})
	d.host.procs[id.PID], d.host.owners[id.PID], d.host.reaped[id.PID] = cmd, def.Name, done
	delete(d.host.exits, def.Name)
	d.host.reapers.Add(1)
	go d.reap(def.Name, cmd, done)
	return guest.Status{
		State: api.StateRunning, HandleVersion: HandleVersion, Handle: handleOf(def.Name),
		InitPID: id.PID, InitStart: id.Start, StartedAt: time.Now().UTC(),
	}, nil
}

// reap waits for a guest's process and records how it ended.
func (d *Driver) reap(name string, cmd *exec.Cmd, done chan struct{}) {
	defer d.host.reapers.Done()
	cmd.Wait()
	exit := &api.Exit{Code: cmd.ProcessState.ExitCode(), ExitedAt: time.Now().UTC()}
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		exit.Code, exit.Signal = 128+int(ws.Signal()), int(ws.Signal())
	}
	d.host.mu.Lock()
	defer d.host.mu.Unlock()
	delete(d.host.procs, cmd.Process.Pid)
	delete(d.host.owners, cmd.Process.Pid)
	delete(d.host.reaped, cmd.Process.Pid)
	d.host.exits[name] = exit
	close(done)
}

// End makes a running guest end on its own, as a poweroff inside would:
// its process is killed and reaped; the daemon's watcher notices.
func (d *Driver) End(def *guest.Definition) error {
	return d.kill(def)
}

// kill ends the guest's process and waits until it is reaped.
func (d *Driver) kill(def *guest.Definition) error {
	id := procutil.Identity{PID: def.Status.InitPID, Start: def.Status.InitStart}
	d.host.mu.Lock()
	done := d.host.reaped[id.PID]
	d.host.mu.Unlock()
	if err := id.Signal(9); err != nil {
		return fmt.Errorf("stop %s: %w", def.Name, err)
	}
	if done != nil {
		<-done
	}
	return nil
}

// Stop ends the guest's process.
func (d *Driver) Stop(ctx context.Context, def *guest.Definition, timeout time.Duration) error {
	if err := d.call(ctx, "Stop"); err != nil {
		return err
	}
	return d.kill(def)
}

// Cleanup reports how the guest's process ended, once it has.
func (d *Driver) Cleanup(ctx context.Context, def *guest.Definition) (*api.Exit, error) {
	if err := d.call(ctx, "Cleanup"); err != nil {
		return nil, err
	}
	// An ended process may not be reaped yet: its exit is recorded then.
	id := procutil.Identity{PID: def.Status.InitPID, Start: def.Status.InitStart}
	d.host.mu.Lock()
	done := d.host.reaped[id.PID]
	d.host.mu.Unlock()
	if done != nil && !id.Alive() {
		select {
		case <-done:
		case <-ctx.Done():
			return nil, fmt.Errorf("clean up %s: %w", def.Name, ctx.Err())
		}
	}
	d.host.mu.Lock()
	defer d.host.mu.Unlock()
	exit := d.host.exits[def.Name]
	delete(d.host.exits, def.Name)
	return exit, nil
}

// Delete forgets the guest.
func (d *Driver) Delete(ctx context.Context, def *guest.Definition) error {
	if err := d.call(ctx, "Delete"); err != nil {
		return err
	}
	d.host.mu.Lock()
	defer d.host.mu.Unlock()
	delete(d.host.guests, def.Name)
	return nil
}

// Recover re-attaches to a guest found running when the daemon starts:
// its handle must be one this driver writes.
func (d *Driver) Recover(ctx context.Context, def *guest.Definition) error {
	if err := d.call(ctx, "Recover"); err != nil {
		return err
	}
	if def.Status.HandleVersion != HandleVersion {
		return fmt.Errorf("recover %s: handle version %d: this fake driver reads version %d only", def.Name, def.Status.HandleVersion, HandleVersion)
	}
	if def.Status.Handle != handleOf(def.Name) {
		return fmt.Errorf("recover %s: handle %q is not one this driver wrote for it", def.Name, def.Status.Handle)
	}
	d.host.mu.Lock()
	defer d.host.mu.Unlock()
	_, err := d.guest(def.Name)
	return err
}

// running reports whether the guest's process lives.
func running(def *guest.Definition) bool {
	return procutil.Identity{PID: def.Status.InitPID, Start: def.Status.InitStart}.Alive()
}

// handleOf is the handle Start records for the named guest: the name the
// fake host keeps it under.
func handleOf(name string) string { return `{"guest":` + strconv.Quote(name) + `}` }
