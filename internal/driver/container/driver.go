// Package container is the driver of the shared-kernel class (operating-
// system-level virtualization, as chroot jails, Zones and OpenVZ are): an
// OCI bundle run by runc under a small per-guest monitor
// (polyvisor-monitor), with the rootfs cloned from a template by overlayfs
// or copied whole, in a user namespace by default.
package container

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/polyvisor/polyvisor/internal/cgroup"
	"github.com/polyvisor/polyvisor/internal/fsutil"
	"github.com/polyvisor/polyvisor/internal/guest"
	"github.com/polyvisor/polyvisor/internal/idmap"
	"github.com/polyvisor/polyvisor/internal/layout"
	"github.com/polyvisor/polyvisor/internal/loopfs"
	"github.com/polyvisor/polyvisor/internal/monitor/monitored"
	"github.com/polyvisor/polyvisor/internal/template"
	"github.com/polyvisor/polyvisor/pkg/api"
)

// Class is this driver's name.
const Class = "container"

// handleVersion is the version of what Start persists in guest.yaml's
// status; RecoverTask-style adoption checks it. Version 2 marks guests run
// by the supervisor; version 1's each had a monitor of their own.
const handleVersion = 2

// Options configure the driver.
type Options struct {
	Layout  layout.Layout
	Runtime string // OCI runtime binary: runc (default) or crun
	Monitor string // path of polyvisor-monitor
	Log     *slog.Logger
	// Fault, when set, is called at named points of Start so tests can
	// inject failures; a non-nil return aborts the start there.
	Fault func(point string) error
}

// Driver runs container guests.
type Driver struct {
	opts Options
	log  *slog.Logger
	// supervisor runs the containers: one polyvisor-monitor for all.
	supervisor *monitored.Supervisor
	// usage remembers stopped guests' disk usage for listings.
	usage loopfs.UsageCache
	// blankMu lets one create at a time make the blank quota image that
	// the others then clone (see cloneBlankLayer).
	blankMu sync.Mutex
}

// New returns the container driver.
func New(opts Options) *Driver {
	if opts.Runtime == "" {
		opts.Runtime = "runc"
	}
	if opts.Log == nil {
		opts.Log = slog.Default()
	}
	return &Driver{
		opts: opts, log: opts.Log.With("driver", Class),
		supervisor: &monitored.Supervisor{Monitor: opts.Monitor, Dir: opts.Layout.SupervisorDir(), Log: opts.Log},
	}
}

func (d *Driver) guestDir(def *guest.Definition) string { return d.opts.Layout.GuestDir(def.Name) }
func (d *Driver) runDir(def *guest.Definition) string   { return d.opts.Layout.GuestRunDir(def.Name) }
func (d *Driver) cgroupPath(def *guest.Definition) string {
	return d.opts.Layout.GuestCgroup(def.Name)
}
func (d *Driver) templateRootfs(name string) string {
	return filepath.Join(d.opts.Layout.TemplatesDir(), name, "rootfs")
}

// rootfs is where the guest's root tree is (mounted, for overlay).
func (d *Driver) rootfs(def *guest.Definition) string {
	if def.Rootfs == guest.RootfsCopy {
		return filepath.Join(d.guestDir(def), copyRootfs)
	}
	return filepath.Join(d.guestDir(def), mountPoint)
}

func (d *Driver) fault(point string) error {
	if d.opts.Fault == nil {
		return nil
	}
	return d.opts.Fault(point)
}

// Create implements driver.Driver: overlay guests get an empty upper layer
// (O(1) in the template's size), in a quota image when def asks for a root
// disk size; copy guests get a private copy of the template, shifted back
// to host ids when privileged.
func (d *Driver) Create(ctx context.Context, dir string, def *guest.Definition) error {
	lower := d.templateRootfs(def.Template)
	if _, err := os.Stat(lower); err != nil {
		return fmt.Errorf("template %s: %w", def.Template, api.ErrNotFound)
	}
	switch def.Rootfs {
	case guest.RootfsCopy:
		// Back to host ids when privileged, into its own range when isolated.
		shift := fromTemplate(def)
		// Traversable by the container's (unprivileged) root, not listable.
		if err := os.MkdirAll(filepath.Join(dir, "disks"), 0o711); err != nil {
			return fmt.Errorf("create disks: %w", err)
		}
		if err := idmap.CopyTree(ctx, lower, filepath.Join(dir, copyRootfs), shift); err != nil {
			return fmt.Errorf("copy template %s: %w", def.Template, err)
		}
		def.Disks = []guest.Disk{{Name: "root", Path: copyRootfs, Kind: "rootfs-copy"}}
	default:
		if size := requestedDiskSize(def); size == guest.DefaultDiskQuota {
			if err := d.cloneBlankLayer(ctx, dir, size); err != nil {
				return err
			}
			def.Disks = []guest.Disk{{Name: "root", Path: layerImage, Kind: guest.DiskOverlayImage, Size: size}}
			return nil
		} else if size > 0 {
			if err := makeLayer(ctx, dir, lower, fromTemplate(def), size, true); err != nil {
				return err
			}
			def.Disks = []guest.Disk{{Name: "root", Path: layerImage, Kind: guest.DiskOverlayImage, Size: size}}
			return nil
		}
		for _, sub := range []string{upperDir, workDir} {
			if err := os.MkdirAll(filepath.Join(dir, sub), 0o711); err != nil {
				return fmt.Errorf("create %s: %w", sub, err)
			}
		}
		// The merged root takes the upper dir's owner and mode.
		if err := matchOwner(filepath.Join(dir, upperDir), lower, fromTemplate(def)); err != nil {
			return err
		}
		def.Disks = []guest.Disk{{Name: "root", Path: upperDir, Kind: "overlay-upper"}}
	}
	return nil
}

// Start implements driver.Driver. On any failure it undoes what it did.
func (d *Driver) Start(ctx context.Context, def *guest.Definition) (status guest.Status, err error) {
	log := d.log.With("guest", def.Name)
	defer func() {
		if err != nil {
			if _, cerr := d.Cleanup(context.WithoutCancel(ctx), def); cerr != nil {
				log.Warn("cleanup after failed start", "err", cerr)
			}
		}
	}()
	dir := d.guestDir(def)
	runDir := d.runDir(def)
	if err = os.RemoveAll(runDir); err != nil {
		return status, fmt.Errorf("reset run dir: %w", err)
	}
	if err = os.MkdirAll(runDir, 0o700); err != nil {
		return status, fmt.Errorf("create run dir: %w", err)
	}
	// The quota image's mount, the template's idmapped mount and the
	// bundle do not depend on each other, and the first two wait on the
	// kernel (a loop device; a child made in a user namespace): they are
	// made side by side, and the overlay over the first two after.
	var layerErr, lowerErr error
	lower := d.templateRootfs(def.Template)
	var mounts sync.WaitGroup
	if def.Rootfs == guest.RootfsOverlay {
		mounts.Go(func() { layerErr = d.mountLayer(ctx, def) })
		mounts.Go(func() { lower, lowerErr = d.templateLower(ctx, def, filepath.Join(dir, lowerMount)) })
	}
	bundleErr := d.writeBundleOf(def, log)
	mounts.Wait()
	if err = errors.Join(layerErr, lowerErr, bundleErr); err != nil {
		return status, err
	}
	if err = d.recordDiskBase(def); err != nil {
		return status, err
	}
	if def.Rootfs == guest.RootfsOverlay {
		err = mountOverlay(lower, filepath.Join(dir, upperRel(def)), filepath.Join(dir, workRel(def)), d.rootfs(def), overlayOptions(def))
		if err != nil {
			return status, err
		}
	}
	if err = d.fault("after-rootfs"); err != nil {
		return status, err
	}
	if err = d.fault("before-monitor"); err != nil {
		return status, err
	}
	return d.runSupervised(ctx, def)
}

// writeBundleOf writes def's OCI bundle: its init is /sbin/init on the
// console, or the command of the image a template was imported from.
func (d *Driver) writeBundleOf(def *guest.Definition, log *slog.Logger) error {
	in := specInput{
		Def: def, Rootfs: d.rootfs(def), CgroupPath: d.cgroupPath(def),
		Args: []string{"/sbin/init"}, Terminal: true, Log: log,
	}
	t, err := template.Store{Dir: d.opts.Layout.TemplatesDir()}.Load(def.Template)
	if err != nil {
		return fmt.Errorf("start %s: %w", def.Name, err)
	}
	if p := t.Process; p != nil {
		in.Args, in.Env, in.Cwd = p.Args, p.Env, p.Cwd
	} else if def.Chroot() {
		in.Args = jailShell
	}
	spec, err := buildSpec(in)
	if err != nil {
		return err
	}
	return writeBundle(filepath.Join(d.guestDir(def), bundleDir), spec)
}

// writeBundle writes config.json into the bundle directory. It is rebuilt
// from guest.yaml on every start, so it needs no fsync: a torn file after a
// crash is simply written again.
func writeBundle(dir string, spec any) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create bundle: %w", err)
	}
	data, err := json.MarshalIndent(spec, "", "  ")
	if err != nil {
		return fmt.Errorf("encode bundle: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "config.json"), data, 0o600); err != nil {
		return fmt.Errorf("write bundle: %w", err)
	}
	return nil
}

// Stop implements driver.Driver. A timeout above zero is a polite stop:
// init is asked to power off the way it understands (stopSignal), and the
// guest's own shutdown work runs; the templates' inittab ends that work by
// powering the container off itself (reboot(2) in its pid namespace), which
// ends init at once. Whatever init does, everything of the guest is killed
// as soon as init is gone, or when timeout passes with init still there. A
// timeout of zero (--force) asks nothing: the guest's cgroup is frozen and
// every process in it killed.
//
// The guest can only hasten its end: the wait is bounded by timeout, and
// the kill touches this guest's init and cgroup alone.
func (d *Driver) Stop(ctx context.Context, def *guest.Definition, timeout time.Duration) error {
	init := initIdentity(def)
	if !init.Alive() {
		return d.killRest(ctx, def)
	}
	if timeout > 0 {
		sig := stopSignal(init.PID)
		if err := init.Signal(sig); err != nil {
			return fmt.Errorf("stop %s: %w", def.Name, err)
		}
		polite, cancel := context.WithTimeout(ctx, timeout)
		err := init.Wait(polite)
		cancel()
		if ctx.Err() != nil {
			return fmt.Errorf("stop %s: %w", def.Name, ctx.Err())
		}
		if err != nil {
			d.log.Info("guest did not power off in time; killing it", "guest", def.Name, "signal", unix.SignalName(sig), "timeout", timeout)
		}
	}
	if err := d.killRest(ctx, def); err != nil {
		return err
	}
	// The cgroup held init: it was killed with the rest. Signalled again
	// for a guest whose cgroup could not be found or frozen.
	if err := init.Signal(sigKILL); err != nil {
		return fmt.Errorf("stop %s: %w", def.Name, err)
	}
	hard, cancel := context.WithTimeout(ctx, killWait)
	defer cancel()
	if err := init.Wait(hard); err != nil {
		return fmt.Errorf("stop %s: init %d survived SIGKILL: %w", def.Name, init.PID, err)
	}
	d.syncRootfs(def)
	d.waitMonitor(ctx, def)
	return nil
}

// syncRootfs flushes an overlay guest's tree (its upper layer: the quota
// image's file system, or the host's directory) now that nothing of the
// guest writes to it, as busybox's own shutdown did with sync(2) for the
// whole host: what the guest wrote reaches the disk before its layer is
// unmounted, even where another mount namespace keeps the layer alive
// after the unmount. A copied tree lives on the host's file system, which
// is not the guest's to flush. Failures are logged: the stop has happened.
func (d *Driver) syncRootfs(def *guest.Definition) {
	if def.Rootfs != guest.RootfsOverlay {
		return
	}
	fd, err := unix.Open(d.rootfs(def), unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err == nil {
		err = unix.Syncfs(fd)
		unix.Close(fd)
	}
	if err != nil {
		d.log.Warn("flush the guest's tree after its stop", "guest", def.Name, "err", err)
	}
}

// killWait bounds how long a killed init may take to end: only a kernel
// that cannot end it (a process stuck in uninterruptible I/O) takes long.
const killWait = 10 * time.Second

// killRest kills whatever still runs in the guest's cgroup. With init
// gone, the kernel has already ended the rest of its pid namespace; this
// catches anything of the cgroup outside it.
func (d *Driver) killRest(ctx context.Context, def *guest.Definition) error {
	if err := cgroup.Kill(ctx, d.cgroupPath(def)); err != nil {
		return fmt.Errorf("stop %s: %w", def.Name, err)
	}
	return nil
}

// stopSignal is the signal that asks pid's init to power off: SIGRTMIN+4
// for systemd (SIGTERM makes it re-execute itself), SIGTERM for anything
// else: busybox init runs its ::shutdown: actions on it, and it is the OCI
// convention for an application run as init; SIGHUP for a shell. The name comes from the
// guest, which can only pick its own signal with it.
func stopSignal(pid int) unix.Signal {
	comm, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/comm")
	if err != nil {
		return sigTERM
	}
	switch strings.TrimSpace(string(comm)) {
	case "systemd":
		return sigPowerOffSystemd
	case "sh", "ash", "dash", "bash":
		// A shell as init (a chroot jail's console shell) ignores
		// SIGTERM when interactive; a hang-up ends it.
		return unix.SIGHUP
	}
	return sigTERM
}

// supervisorWait bounds the wait for the supervisor to record a guest's
// exit and delete its container.
const supervisorWait = 10 * time.Second

// waitMonitor gives the monitor (the supervisor, or a guest's own, as an
// earlier polyvisor started) a moment to write exit.json and delete the
// runc container after init ended.
func (d *Driver) waitMonitor(ctx context.Context, def *guest.Definition) {
	if d.ownMonitorAlive(def) {
		if !monitored.WaitMonitor(ctx, def) {
			d.log.Warn("monitor still running after its guest ended", "guest", def.Name, "pid", def.Status.MonitorPID)
		}
		return
	}
	ctx, cancel := context.WithTimeout(ctx, supervisorWait)
	defer cancel()
	if err := d.supervisor.WaitEnded(ctx, def.Name); err != nil {
		d.log.Warn("the supervisor did not finish with the guest", "guest", def.Name, "err", err)
	}
}

// ownMonitorAlive reports whether def runs under a monitor of its own
// that still lives: the supervisor outlives the guests it ran.
func (d *Driver) ownMonitorAlive(def *guest.Definition) bool {
	h, err := d.readHandle(def)
	mon := monitored.Monitor(def)
	return err == nil && !h.Supervised && mon.Alive() && !d.supervisor.Is(mon)
}

// Cleanup implements driver.Driver.
func (d *Driver) Cleanup(ctx context.Context, def *guest.Definition) (*api.Exit, error) {
	if !initIdentity(def).Alive() {
		d.waitMonitor(ctx, def)
	}
	d.supervisor.Forget(def.Name)
	exit := monitored.ReadExit(d.runDir(def))
	var errs []error
	if err := d.deleteContainer(ctx, def.Name); err != nil {
		errs = append(errs, err)
	}
	if err := cgroup.Remove(d.cgroupPath(def)); err != nil {
		errs = append(errs, err)
	}
	if def.Rootfs == guest.RootfsOverlay {
		if err := d.unmountRootfs(def); err != nil {
			errs = append(errs, err)
		}
		if err := d.unmountLayer(def); err != nil {
			errs = append(errs, err)
		}
	}
	if err := os.RemoveAll(d.runDir(def)); err != nil {
		errs = append(errs, fmt.Errorf("remove run dir: %w", err))
	}
	if len(errs) > 0 {
		return exit, fmt.Errorf("clean up %s: %w", def.Name, errors.Join(errs...))
	}
	return exit, nil
}

// Delete implements driver.Driver. The disks live in the guest's directory,
// which the daemon removes; all that is left here is making sure nothing is
// still mounted on top of it (the quota image's loop device goes with its
// mount).
func (d *Driver) Delete(ctx context.Context, def *guest.Definition) error {
	d.usage.Forget(filepath.Join(d.guestDir(def), layerImage))
	if def.Rootfs == guest.RootfsOverlay {
		return errors.Join(d.unmountRootfs(def), d.unmountLayer(def))
	}
	return nil
}

// unmountRootfs detaches an overlay guest's merged tree, then the
// idmapped template under it, if any.
func (d *Driver) unmountRootfs(def *guest.Definition) error {
	return errors.Join(fsutil.Unmount(d.rootfs(def)), fsutil.Unmount(filepath.Join(d.guestDir(def), lowerMount)))
}

// Wait lets the supervisor exit as soon as it has no guest, and blocks
// until the one this daemon started, if any, has been reaped; used by
// tests at shutdown, once their guests are gone.
func (d *Driver) Wait() { d.supervisor.Release(context.Background()) }
