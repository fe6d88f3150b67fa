// Package qemu is the driver of the hypervisor and emulation classes: each
// VM is one QEMU process, run under polyvisor-monitor (which holds its
// serial console and is its parent, so VMs outlive the daemon), controlled
// over QMP, and reached inside through polyvisor's guest agent on a
// virtio-serial port. KVM is used only when a canary guest really boots
// under it; everything else runs under TCG, which also runs foreign
// architectures.
package qemu

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/polyvisor/polyvisor/internal/agent"
	"github.com/polyvisor/polyvisor/internal/cgroup"
	"github.com/polyvisor/polyvisor/internal/fsutil"
	"github.com/polyvisor/polyvisor/internal/guest"
	"github.com/polyvisor/polyvisor/internal/hostreq"
	"github.com/polyvisor/polyvisor/internal/layout"
	"github.com/polyvisor/polyvisor/internal/monitor"
	"github.com/polyvisor/polyvisor/internal/monitor/monitored"
	"github.com/polyvisor/polyvisor/internal/network"
	"github.com/polyvisor/polyvisor/internal/qmp"
	"github.com/polyvisor/polyvisor/internal/runcmd"
	"github.com/polyvisor/polyvisor/internal/template"
	"github.com/polyvisor/polyvisor/internal/vmimage"
	"github.com/polyvisor/polyvisor/pkg/api"
)

// Class is this driver's name.
const Class = "qemu"

// handleVersion is the version of what Start persists in guest.yaml.
const handleVersion = 1

// BootTimeout bounds how long a VM may take from QEMU's start until its
// agent answers; TCG boots of our templates take seconds, Debian's tens.
const BootTimeout = 3 * time.Minute

// Options configure the driver.
type Options struct {
	Layout  layout.Layout
	Monitor string // path of polyvisor-monitor
	Log     *slog.Logger
	// Unconfined runs QEMU as root, with no sandbox and no cgroup: the
	// baseline of the confinement's benchmark, never for guests.
	Unconfined bool
	// MigrationBandwidth caps each live migration's memory stream, in
	// bytes per second; 0 is 1 GiB/s.
	MigrationBandwidth int64
	// Fault, when set, is the daemon's fault injector (tests only): it
	// may kill the daemon at the named points (crashPoint).
	Fault func(point string) error
}

// crashPoint names a point where tests may kill the daemon.
func (d *Driver) crashPoint(point string) {
	if d.opts.Fault != nil {
		d.opts.Fault(point)
	}
}

// Driver runs VM guests.
type Driver struct {
	opts      Options
	log       *slog.Logger
	monitors  *monitored.Launcher
	templates template.Store
	accel     accelerator

	agents agent.Pool // connected guest agents, by guest name
	mu     sync.Mutex
	// tcg caches vmimage.TCGCmdline per arch: it measures the host's TSC.
	tcg map[string]string
	// runWith caches, per QEMU binary, whether it takes -run-with.
	runWith map[string]bool
	userMu  sync.Mutex // one creation of User at a time
}

// tcgCmdline returns the kernel options a guest of arch needs under TCG.
func (d *Driver) tcgCmdline(arch string) string {
	d.mu.Lock()
	defer d.mu.Unlock()
	opts, ok := d.tcg[arch]
	if !ok {
		opts = vmimage.TCGCmdline(arch)
		d.tcg[arch] = opts
	}
	return opts
}

// New returns the QEMU driver.
func New(opts Options) *Driver {
	if opts.Log == nil {
		opts.Log = slog.Default()
	}
	return &Driver{
		opts: opts, log: opts.Log.With("driver", Class),
		monitors:  &monitored.Launcher{Monitor: opts.Monitor},
		templates: template.Store{Dir: opts.Layout.TemplatesDir()},
		tcg:       map[string]string{},
		runWith:   map[string]bool{},
	}
}

// Wait blocks until every monitor this daemon started has been reaped.
func (d *Driver) Wait() { d.monitors.Wait() }

func (d *Driver) guestDir(def *guest.Definition) string { return d.opts.Layout.GuestDir(def.Name) }
func (d *Driver) runDir(def *guest.Definition) string   { return d.opts.Layout.GuestRunDir(def.Name) }
func (d *Driver) qmpSocket(def *guest.Definition) string {
	return filepath.Join(d.runDir(def), "qmp.sock")
}
func (d *Driver) agentSocket(def *guest.Definition) string {
	return filepath.Join(d.runDir(def), "agent.sock")
}

// rootDisk is the guest's own qcow2 overlay on the template's base disk;
// uefiVars its UEFI variable store, when its firmware is UEFI.
const (
	rootDisk = "disks/root.qcow2"
	uefiVars = "disks/uefi-vars.fd"
)

// template loads the VM template a guest was made from.
func (d *Driver) template(def *guest.Definition) (*api.Template, string, error) {
	t, err := d.templates.Find(def.Template, guest.TypeVM, def.Arch)
	if err != nil {
		return nil, "", err
	}
	if t.Boot == nil {
		return nil, "", fmt.Errorf("template %s has no boot files: rebuild it with --type vm", t.ID)
	}
	return t, filepath.Join(d.templates.Dir, t.ID), nil
}

// Create implements driver.Driver: the root disk is a qcow2 overlay whose
// backing file is the template's read-only base, so creating is O(1) in the
// template's size; so is each data disk the template has.
func (d *Driver) Create(ctx context.Context, dir string, def *guest.Definition) error {
	t, tdir, err := d.template(def)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Join(dir, "disks"), 0o700); err != nil {
		return fmt.Errorf("create disks: %w", err)
	}
	// The root disk size the request asked for (0: the template's).
	var want guest.Size
	if disk, ok := def.Disk("root"); ok {
		want = disk.Size
	}
	base := filepath.Join(tdir, t.Boot.Disk)
	clone := filepath.Join(dir, rootDisk)
	size, err := d.cloneBase(ctx, tdir, base, clone)
	if err != nil {
		return err
	}
	if want > 0 && want != guest.Size(size) {
		if want < guest.Size(size) {
			return fmt.Errorf("%w: disk %s: template %s's disk is %s; give at least that, or leave --disk out", api.ErrInvalid, want, t.ID, guest.Size(size))
		}
		// The guest's sysinit grows its file system to the disk at boot.
		if err := runcmd.Run(ctx, runcmd.Cmd{Name: "qemu-img", Args: []string{"resize", "-q", "-f", "qcow2", clone, strconv.FormatInt(int64(want), 10)}}); err != nil {
			return fmt.Errorf("grow root disk: %w", err)
		}
		size = int64(want)
	}
	def.Disks = []guest.Disk{{Name: "root", Path: rootDisk, Kind: guest.RootfsQcow2, Size: guest.Size(size)}}
	data, err := createDataDisks(ctx, t, tdir, dir)
	if err != nil {
		return err
	}
	def.Disks = append(def.Disks, data...)
	if t.Boot.Firmware == vmimage.FirmwareUEFI {
		// The guest's own UEFI variable store (boot entries and the like).
		fw, err := findUEFI(firmwareDirs, "x86_64", t.Boot.Machine)
		if err != nil {
			return err
		}
		vars, err := os.ReadFile(fw.VarsTemplate)
		if err == nil {
			err = fsutil.WriteFileAtomic(filepath.Join(dir, uefiVars), vars, 0o600)
		}
		if err != nil {
			return fmt.Errorf("copy UEFI variable store: %w", err)
		}
		def.Disks = append(def.Disks, guest.Disk{Name: "uefi-vars", Path: uefiVars, Kind: "uefi-vars"})
	}
	return nil
}

// Start implements driver.Driver: QEMU runs under its monitor; the start
// is done when the guest's agent answers, or fails (and leaves nothing
// running) after BootTimeout.
func (d *Driver) Start(ctx context.Context, def *guest.Definition) (status guest.Status, err error) {
	status, t, err := d.launch(ctx, def, false)
	if err != nil || t.Boot.NoAgent {
		// Nothing in an imported disk tells us it has booted; QEMU runs.
		return status, err
	}
	def = def.Clone()
	def.Status = status
	bootCtx, cancel := context.WithTimeout(ctx, BootTimeout)
	defer cancel()
	if _, err = d.agent(bootCtx, def); err != nil {
		exited := !monitored.Process(def).Alive()
		d.kill(context.WithoutCancel(ctx), def)
		d.Cleanup(context.WithoutCancel(ctx), def)
		if exited {
			return status, fmt.Errorf("start %s: QEMU exited while the guest booted: %s", def.Name, lastConsoleLines(d.ConsoleLog(def)))
		}
		return status, fmt.Errorf("start %s: the guest did not boot within %s (its console: %s)", def.Name, BootTimeout, lastConsoleLines(d.ConsoleLog(def)))
	}
	return status, nil
}

// launch starts the guest's QEMU under its monitor and plugs its NICs;
// with incoming, QEMU waits paused for a migration (see migrate.go). It
// leaves nothing running when it fails.
func (d *Driver) launch(ctx context.Context, def *guest.Definition, incoming bool) (status guest.Status, t *api.Template, err error) {
	t, tdir, err := d.template(def)
	if err != nil {
		return status, nil, err
	}
	if least := guest.Size(t.Boot.MinMemory); def.Memory < least {
		return status, nil, fmt.Errorf("%w: start %s: memory %s: template %s needs at least %s to boot; config set %s memory=%s", api.ErrInvalid, def.Name, def.Memory, t.ID, least, def.Name, least)
	}
	var uefi uefiFirmware
	if t.Boot.Firmware == vmimage.FirmwareUEFI {
		if uefi, err = findUEFI(firmwareDirs, "x86_64", t.Boot.Machine); err != nil {
			return status, nil, fmt.Errorf("start %s: %w", def.Name, err)
		}
		uefi.Vars = filepath.Join(d.guestDir(def), uefiVars)
	}
	qemu, err := hostreq.Lookup(t.Boot.QEMU)
	if err != nil {
		return status, nil, fmt.Errorf("%w: start %s: %w", api.ErrNotAvailable, def.Name, err)
	}
	accel, _ := d.accel.decide(ctx, d, def.Arch)
	confine, err := d.confine(ctx, def, qemu, accel)
	if err != nil {
		return status, nil, fmt.Errorf("start %s: %w", def.Name, err)
	}
	runDir := d.runDir(def)
	if err := os.RemoveAll(runDir); err != nil {
		return status, nil, fmt.Errorf("reset run dir: %w", err)
	}
	if err := os.MkdirAll(runDir, 0o700); err != nil {
		return status, nil, fmt.Errorf("create run dir: %w", err)
	}
	nics := network.GuestNICs(def)
	argv := commandLine(vmSpec{
		NICs: nics,
		Def:  def, Boot: *t.Boot, TemplateDir: tdir, Disk: filepath.Join(d.guestDir(def), rootDisk), Data: d.dataDrives(def),
		Accel: accel, QMP: d.qmpSocket(def), Agent: d.agentSocket(def), TCGCmdline: d.tcgCmdline(def.Arch), UEFI: uefi,
		Confine: confine, Incoming: incoming,
	})
	mcfg := monitor.Config{
		ID: def.Name, Dir: runDir, Log: d.ConsoleLog(def), LogMax: monitor.DefaultLogMax,
		ReadySocket: d.qmpSocket(def), Command: argv,
	}
	if confine != nil {
		if err := cgroup.Create(confine.Cgroup, confine.Limits); err != nil {
			os.RemoveAll(runDir)
			return status, nil, fmt.Errorf("start %s: %w", def.Name, err)
		}
		mcfg.Cgroup = confine.Cgroup
	}
	status, err = d.monitors.Start(ctx, mcfg)
	if err != nil {
		os.RemoveAll(runDir)
		if confine != nil {
			cgroup.Remove(confine.Cgroup)
		}
		return status, nil, fmt.Errorf("start %s: %w", def.Name, err)
	}
	status.HandleVersion, status.Handle, status.Accel = handleVersion, handle{QMP: d.qmpSocket(def)}.encode(), accel
	def = def.Clone()
	def.Status = status
	defer func() {
		if err != nil {
			d.kill(context.WithoutCancel(ctx), def)
			d.Cleanup(context.WithoutCancel(ctx), def)
		}
	}()
	for _, nic := range nics {
		if err = network.PlugTap(ctx, nic); err != nil {
			return status, nil, fmt.Errorf("start %s: %w", def.Name, err)
		}
	}
	return status, t, nil
}

// agent returns the guest's agent connection, dialling it if needed (see
// agent.Pool).
func (d *Driver) agent(ctx context.Context, def *guest.Definition) (*agent.Client, error) {
	c, err := d.agents.Get(ctx, def.Name, func(ctx context.Context) (*agent.Client, error) {
		return agent.Dial(ctx, d.agentSocket(def))
	})
	if err != nil {
		return nil, fmt.Errorf("reach the agent of %s: %w", def.Name, err)
	}
	return c, nil
}

// dropAgent forgets the guest's agent connection.
func (d *Driver) dropAgent(name string) { d.agents.Drop(name) }

// Stop implements driver.Driver: the guest is asked to power off (through
// its agent, or ACPI where it has no agent), then QEMU is told to quit,
// then killed.
func (d *Driver) Stop(ctx context.Context, def *guest.Definition, timeout time.Duration) error {
	proc := monitored.Process(def)
	if !proc.Alive() {
		return nil
	}
	if timeout > 0 {
		d.askPowerOff(ctx, def)
		polite, cancel := context.WithTimeout(ctx, timeout)
		err := proc.Wait(polite)
		cancel()
		if err == nil {
			return nil
		}
		d.log.Info("guest did not power off in time; quitting QEMU", "guest", def.Name, "timeout", timeout)
	}
	return d.kill(ctx, def)
}

// askPowerOff starts the guest's own shutdown.
func (d *Driver) askPowerOff(ctx context.Context, def *guest.Definition) {
	reach, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if c, err := d.agent(reach, def); err == nil {
		// busybox's poweroff signals init and returns at once.
		if code, err := c.Exec(reach, agent.ExecRequest{Command: []string{"poweroff"}}, nil, io.Discard, io.Discard, nil); err == nil && code == 0 {
			return
		}
	}
	if m, err := qmp.Dial(reach, d.qmpSocket(def)); err == nil {
		defer m.Close()
		m.Run(reach, qmp.SystemPowerdown{}, nil)
	}
}

// kill ends QEMU: quit over QMP, then SIGKILL.
func (d *Driver) kill(ctx context.Context, def *guest.Definition) error {
	proc := monitored.Process(def)
	if !proc.Alive() {
		return nil // a SIGKILLed QEMU leaves its QMP socket: do not dial it
	}
	quick, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if m, err := qmp.Dial(quick, d.qmpSocket(def)); err == nil {
		m.Run(quick, qmp.Quit{}, nil)
		m.Close()
		if proc.Wait(quick) == nil {
			return nil
		}
	}
	return monitored.Kill(ctx, def, "QEMU")
}

// Cleanup implements driver.Driver.
func (d *Driver) Cleanup(ctx context.Context, def *guest.Definition) (*api.Exit, error) {
	d.dropAgent(def.Name)
	return monitored.Release(ctx, def, d.runDir(def), d.cgroupPath(def))
}

// Sweep implements driver.Sweeper: the cgroups and run directories of VMs
// that ended while no daemon watched go.
func (d *Driver) Sweep(ctx context.Context, live map[string]bool) error {
	return monitored.SweepOrphans(d.opts.Layout, live, d.log)
}

// Delete implements driver.Driver: the disks live in the guest's
// directory, which the daemon removes.
func (d *Driver) Delete(ctx context.Context, def *guest.Definition) error { return nil }

// ConsoleLog implements driver.Consoler.
func (d *Driver) ConsoleLog(def *guest.Definition) string {
	return filepath.Join(d.guestDir(def), "console.log")
}
