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
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/polyvisor/polyvisor/internal/api"
	"github.com/polyvisor/polyvisor/internal/arch"
	"github.com/polyvisor/polyvisor/internal/driver"
	"github.com/polyvisor/polyvisor/internal/guest"
	"github.com/polyvisor/polyvisor/internal/idmap"
	"github.com/polyvisor/polyvisor/internal/procutil"
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
	_ driver.Adopter           = (*Driver)(nil)
	_ driver.DiskUsageReporter = (*Driver)(nil)
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

// SetFail makes method fail with err from now on; nil clears it.
func (d *Driver) SetFail(method string, err error) {
	d.host.mu.Lock()
	defer d.host.mu.Unlock()
	if err == nil {
		delete(d.fail, method)
		return
	}
	d.fail[method] = err
}

// Gate holds the next call of a method open until Release: a test races a
// second request against an operation that is known to be under way.
type Gate struct {
	entered chan struct{}
	release chan struct{}
	once    sync.Once
}

// Entered is closed once the held call has begun.
func (g *Gate) Entered() <-chan struct{} { return g.entered }

// Release lets the held call go on. It may be called more than once.
func (g *Gate) Release() { g.once.Do(func() { close(g.release) }) }

// Hold makes the next call of method wait, once it has begun, until the
// returned gate is released (or the call's context ends).
func (d *Driver) Hold(method string) *Gate {
	g := &Gate{entered: make(chan struct{}), release: make(chan struct{})}
	d.host.mu.Lock()
	defer d.host.mu.Unlock()
	d.holds[method] = g
	return g
}

// Calls says how many times method was called.
func (d *Driver) Calls(method string) int {
	d.host.mu.Lock()
	defer d.host.mu.Unlock()
	return d.calls[method]
}

// call counts a call of method, then applies its hold, delay and failure.
func (d *Driver) call(ctx context.Context, method string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("fake %s: %w", method, err)
	}
	d.host.mu.Lock()
	d.calls[method]++
	g := d.holds[method]
	delete(d.holds, method)
	delay := d.delay[method]
	d.host.mu.Unlock()
	if g != nil {
		close(g.entered)
		select {
		case <-g.release:
		case <-ctx.Done():
			return fmt.Errorf("fake %s: %w", method, ctx.Err())
		}
	}
	if delay > 0 {
		t := time.NewTimer(delay)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
			return fmt.Errorf("fake %s: %w", method, ctx.Err())
		}
	}
	d.host.mu.Lock()
	defer d.host.mu.Unlock()
	if err := d.fail[method]; err != nil {
		return fmt.Errorf("fake %s: %w", method, err)
	}
	return nil
}

// Class is the driver's name (Name, until the contract calls it so).
func (d *Driver) Class() string { return Name }

// Name is the driver's name, as stored in guest.yaml.
func (d *Driver) Name() string { return Name }

// Type is the guest type the fake serves.
func (d *Driver) Type() string { return d.typ }

// Capabilities is what a driver declares its guests can do; the contract
// will carry it as api.Capabilities.
type Capabilities struct {
	Exec, Console, LiveLimits, DiskResize, DiskUsage bool
	Snapshots, Copy, CopyRunning, Export, TreeRead   bool
	Networks, Privileged, CopyRootfs                 bool
	ExportFormats, Arches                            []string
}

// Capabilities declares what the fake can do: everything but a console,
// networks (it has no interface to attach) and --privileged or --copy.
func (d *Driver) Capabilities() Capabilities {
	return Capabilities{
		Exec: true, LiveLimits: true, DiskResize: true, DiskUsage: true,
		Snapshots: true, Copy: true, CopyRunning: true, Export: true, TreeRead: true,
		ExportFormats: []string{"tar"}, Arches: []string{arch.Host().Debian},
	}
}

// Check says the fake works: it needs nothing of the host but sleep.
func (d *Driver) Check(ctx context.Context) api.ClassVerdict {
	began := time.Now()
	v := api.ClassVerdict{Class: Name, Works: true, Reason: "guests in memory, each a sleep process"}
	if _, err := exec.LookPath("sleep"); err != nil {
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
	sleep, err := exec.LookPath("sleep")
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
		State: api.StateRunning, HandleVersion: HandleVersion,
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
	d.host.mu.Lock()
	defer d.host.mu.Unlock()
	_, err := d.guest(def.Name)
	return err
}

// Adopt is Recover, under the name the daemon's reconciliation calls
// today.
func (d *Driver) Adopt(ctx context.Context, def *guest.Definition) error {
	return d.Recover(ctx, def)
}

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
// lends it to fn; the ids need no shift.
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
	return fn(root, nil)
}

// running reports whether the guest's process lives.
func running(def *guest.Definition) bool {
	return procutil.Identity{PID: def.Status.InitPID, Start: def.Status.InitStart}.Alive()
}
