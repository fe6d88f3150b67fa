// Package bochs is the Bochs engine of the emulation class: each VM is one
// Bochs process (Debian's bochs-bin, which interprets every x86 instruction:
// no KVM, no translation cache), run under polyvisor-monitor as QEMU is, so
// that it outlives the daemon. It boots the disk of a template built with
// --firmware bios from its MBR, through Bochs's BIOS and the disk's GRUB,
// with the guest's serial console on the monitor's pty and no display a
// user could reach. When the monitor can relay a second serial line, the
// guest's agent answers on com2 (/dev/ttyS1), else the guest has its
// console alone.
package bochs

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
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
	"github.com/polyvisor/polyvisor/internal/runcmd"
	"github.com/polyvisor/polyvisor/internal/template"
	"github.com/polyvisor/polyvisor/internal/vmimage"
	"github.com/polyvisor/polyvisor/pkg/api"
)

// Class is this driver's name (its engine's).
const Class = "bochs"

// handleVersion is the version of what Start persists in guest.yaml.
const handleVersion = 1

// DefaultBootTimeout bounds a boot from Bochs's start until the guest's
// agent answers (or its shell prompt shows), for each of its CPUs: Bochs
// interprets the kernel's decompression and boot, 2 to 3 minutes for our
// busybox template with one CPU on this busy 2-core host.
const DefaultBootTimeout = 6 * time.Minute

// Memory the guest's cgroup grants Bochs beyond the guest's RAM: its code,
// device models and the page cache of its disk (an idle busybox guest with
// 256 MiB of RAM measured about 170 MB in all).
const memoryOverhead = 256 << 20

// Options configure the driver.
type Options struct {
	Layout  layout.Layout
	Monitor string // path of polyvisor-monitor
	Log     *slog.Logger
	// BootTimeout bounds how long a start waits for the guest to boot,
	// for each of its CPUs; 0 means DefaultBootTimeout.
	BootTimeout time.Duration
}

// Driver runs VM guests under Bochs.
type Driver struct {
	opts      Options
	log       *slog.Logger
	monitors  *monitored.Launcher
	templates template.Store
	canary    canaryCache

	agents agent.Pool // connected guest agents, by guest name
}

// New returns the Bochs driver.
func New(opts Options) *Driver {
	if opts.Log == nil {
		opts.Log = slog.Default()
	}
	if opts.BootTimeout <= 0 {
		opts.BootTimeout = DefaultBootTimeout
	}
	return &Driver{
		opts: opts, log: opts.Log.With("driver", Class),
		monitors:  &monitored.Launcher{Monitor: opts.Monitor},
		templates: template.Store{Dir: opts.Layout.TemplatesDir()},
	}
}

// Wait blocks until every monitor this daemon started has been reaped.
func (d *Driver) Wait() { d.monitors.Wait() }

func (d *Driver) guestDir(def *guest.Definition) string { return d.opts.Layout.GuestDir(def.Name) }
func (d *Driver) runDir(def *guest.Definition) string   { return d.opts.Layout.GuestRunDir(def.Name) }
func (d *Driver) cgroupPath(def *guest.Definition) string {
	return d.opts.Layout.GuestCgroup(def.Name)
}
func (d *Driver) agentSocket(def *guest.Definition) string {
	return filepath.Join(d.runDir(def), agentName)
}

// template loads the template a guest is made from and checks that Bochs
// can boot it: an amd64 disk with GRUB for a PC BIOS.
func (d *Driver) template(def *guest.Definition) (*api.Template, string, error) {
	if def.Arch != "" && def.Arch != "amd64" {
		return nil, "", fmt.Errorf("%w: arch %s: Bochs emulates x86 PCs only; use --arch amd64, or --engine qemu for %s", api.ErrInvalid, def.Arch, def.Arch)
	}
	t, err := d.templates.Find(def.Template, guest.TypeVM, "amd64")
	if err != nil {
		return nil, "", err
	}
	source := t.Source
	if source == "" {
		source = "busybox"
	}
	fix := fmt.Sprintf("build one with 'polyvisor template build %s --name %s-bios --type vm --firmware bios' and launch that", source, t.Name)
	switch {
	case t.Boot == nil:
		return nil, "", fmt.Errorf("%w: template %s has no boot files: %s", api.ErrInvalid, t.ID, fix)
	case t.Boot.Firmware == vmimage.FirmwareUEFI:
		return nil, "", fmt.Errorf("%w: template %s boots by UEFI, which Bochs's BIOS cannot: %s", api.ErrInvalid, t.ID, fix)
	case t.Boot.Firmware != vmimage.FirmwareBIOS:
		return nil, "", fmt.Errorf("%w: template %s has no bootloader on its disk (QEMU boots its kernel directly): %s", api.ErrInvalid, t.ID, fix)
	case len(t.Boot.DataDisks) > 0:
		// Bochs's guest here has the one ATA disk it boots from.
		return nil, "", fmt.Errorf("%w: template %s has %d data disk(s) besides its boot disk, and the bochs engine gives a guest its boot disk alone: use the default engine (qemu)", api.ErrInvalid, t.ID, len(t.Boot.DataDisks))
	}
	return t, filepath.Join(d.templates.Dir, t.ID), nil
}

// Create implements driver.Driver: the root disk is a private raw copy of
// the template's (Bochs reads no qcow2), sparse, so that it takes the
// space of the template's data, not of its size, with the guest's name in
// its /etc/hostname.
func (d *Driver) Create(ctx context.Context, dir string, def *guest.Definition) error {
	t, tdir, err := d.template(def)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Join(dir, "disks"), 0o700); err != nil {
		return fmt.Errorf("create disks: %w", err)
	}
	var want guest.Size
	if disk, ok := def.Disk("root"); ok {
		want = disk.Size
	}
	clone := filepath.Join(dir, rootDisk)
	began := time.Now()
	if err := runcmd.Run(ctx, runcmd.Cmd{Name: "qemu-img", Args: []string{"convert", "-q", "-f", "qcow2", "-O", "raw", filepath.Join(tdir, t.Boot.Disk), clone}}); err != nil {
		return fmt.Errorf("copy template %s's disk: %w", t.ID, err)
	}
	info, err := os.Stat(clone)
	if err != nil {
		return fmt.Errorf("copy template %s's disk: %w", t.ID, err)
	}
	d.log.Debug("converted the template's disk to raw", "guest", def.Name, "took", time.Since(began))
	if err := nameDisk(ctx, clone, def.Name); err != nil {
		return err
	}
	size := info.Size()
	if want > 0 && want != guest.Size(size) {
		if want < guest.Size(size) {
			return fmt.Errorf("%w: disk %s: template %s's disk is %s; give at least that, or leave --disk out", api.ErrInvalid, want, t.ID, guest.Size(size))
		}
		// Sparse growth; the guest's sysinit grows its file system at boot.
		if err := os.Truncate(clone, int64(want)); err != nil {
			return fmt.Errorf("grow root disk: %w", err)
		}
		size = int64(want)
	}
	def.Disks = []guest.Disk{{Name: "root", Path: rootDisk, Kind: diskKind, Size: guest.Size(size)}}
	return nil
}

// Start implements driver.Driver: Bochs runs under its monitor, in a cgroup
// of the guest's; the start is done once the guest has booted (its agent
// answers, or, for a guest with none, its shell prompt is on the console),
// or fails, leaving nothing running, after the boot timeout.
func (d *Driver) Start(ctx context.Context, def *guest.Definition) (status guest.Status, err error) {
	if _, _, err := d.template(def); err != nil {
		return status, fmt.Errorf("start %s: %w", def.Name, err)
	}
	if err := checkMachine(def); err != nil {
		return status, fmt.Errorf("start %s: %w", def.Name, err)
	}
	var tools [3]string
	for i, name := range []string{"unshare", "sh", bochsProgram} {
		if tools[i], err = hostreq.Lookup(name); err != nil {
			return status, fmt.Errorf("%w: start %s: %w", api.ErrNotAvailable, def.Name, err)
		}
	}
	runDir := d.runDir(def)
	if err := os.RemoveAll(runDir); err != nil {
		return status, fmt.Errorf("reset run dir: %w", err)
	}
	if err := os.MkdirAll(runDir, 0o700); err != nil {
		return status, fmt.Errorf("create run dir: %w", err)
	}
	m := machine{
		MemoryMiB: int64(def.Memory) >> 20, CPUs: def.CPUs,
		Disk: filepath.Join(d.guestDir(def), rootDisk), Log: filepath.Join(runDir, logName),
		Agent: true,
	}
	var nics []network.NIC
	if len(def.Networks) > 0 { // checkMachine allows one
		nics = []network.NIC{network.GuestNIC(def, def.Networks[0])}
		m.NIC = nicLine(nics[0])
	}
	for name, content := range map[string]string{rcName: m.bochsrc(), debuggerName: debuggerCommands} {
		if err := fsutil.WriteFileAtomic(filepath.Join(runDir, name), []byte(content), 0o600); err != nil {
			os.RemoveAll(runDir)
			return status, fmt.Errorf("start %s: %w", def.Name, err)
		}
	}
	cg := d.cgroupPath(def)
	if err := cgroup.Create(cg, cgroup.Limits{Memory: int64(def.Memory) + memoryOverhead, CPUs: def.CPUs}); err != nil {
		os.RemoveAll(runDir)
		return status, fmt.Errorf("start %s: %w", def.Name, err)
	}
	status, err = d.monitors.Start(ctx, monitor.Config{
		ID: def.Name, Dir: runDir, Log: d.ConsoleLog(def), LogMax: monitor.DefaultLogMax,
		Command: command(tools[0], tools[1], tools[2], runDir, m.Agent), Cgroup: cg,
		AgentSerial: d.agentSocket(def),
	})
	if err != nil {
		os.RemoveAll(runDir)
		cgroup.Remove(cg)
		return status, fmt.Errorf("start %s: %w", def.Name, err)
	}
	status.HandleVersion, status.Handle = handleVersion, handle{Agent: d.agentSocket(def)}.encode()
	def = def.Clone()
	def.Status = status
	defer func() {
		if err != nil {
			d.kill(context.WithoutCancel(ctx), def)
			d.Cleanup(context.WithoutCancel(ctx), def)
		}
	}()
	for _, nic := range nics {
		if err = adoptTap(ctx, status.InitPID, nic); err != nil {
			return status, fmt.Errorf("start %s: %w", def.Name, err)
		}
	}
	err = d.waitBoot(ctx, def)
	return status, err
}

// Stop implements driver.Driver: a guest whose agent answers is asked to
// power off (Linux then powers the emulated PC off through ACPI, which
// ends Bochs), and killed after timeout. Bochs offers the host no power
// button to press, so a guest without an agent has no polite request to
// get, and is killed at once.
func (d *Driver) Stop(ctx context.Context, def *guest.Definition, timeout time.Duration) error {
	proc := monitored.Process(def)
	if !proc.Alive() {
		return nil
	}
	if timeout > 0 && d.askPowerOff(ctx, def) {
		polite, cancel := context.WithTimeout(ctx, timeout)
		err := proc.Wait(polite)
		cancel()
		if err == nil {
			return nil
		}
		d.log.Info("guest did not power off in time; killing Bochs", "guest", def.Name, "timeout", timeout)
	} else if timeout > 0 {
		d.log.Info("guest has no agent to power it off, and Bochs no power button: killing Bochs", "guest", def.Name)
	}
	return d.kill(ctx, def)
}

// askPowerOff asks the guest's agent to power the guest off, and reports
// whether it took the request.
func (d *Driver) askPowerOff(ctx context.Context, def *guest.Definition) bool {
	reach, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	c, err := d.agent(reach, def)
	if err != nil {
		return false
	}
	// busybox's poweroff signals init and returns at once.
	code, err := c.Exec(reach, agent.ExecRequest{Command: []string{"poweroff"}}, nil, io.Discard, io.Discard, nil)
	return err == nil && code == 0
}

// kill ends Bochs: SIGTERM, which it handles by quitting, then SIGKILL.
func (d *Driver) kill(ctx context.Context, def *guest.Definition) error {
	proc := monitored.Process(def)
	if !proc.Alive() {
		return nil
	}
	if proc.Signal(15) == nil {
		quick, cancel := context.WithTimeout(ctx, 3*time.Second)
		err := proc.Wait(quick)
		cancel()
		if err == nil {
			return nil
		}
	}
	return monitored.Kill(ctx, def, "Bochs")
}

// Cleanup implements driver.Driver.
func (d *Driver) Cleanup(ctx context.Context, def *guest.Definition) (*api.Exit, error) {
	d.dropAgent(def.Name)
	return monitored.Release(ctx, def, d.runDir(def), d.cgroupPath(def))
}

// Sweep implements driver.Sweeper: the cgroups and run directories of
// guests that ended while no daemon watched go.
func (d *Driver) Sweep(ctx context.Context, live map[string]bool) error {
	return monitored.SweepOrphans(d.opts.Layout, live, d.log)
}

// Delete implements driver.Driver: the disk lives in the guest's
// directory, which the daemon removes.
func (d *Driver) Delete(ctx context.Context, def *guest.Definition) error { return nil }

// ConsoleLog implements driver.Consoler.
func (d *Driver) ConsoleLog(def *guest.Definition) string {
	return filepath.Join(d.guestDir(def), "console.log")
}
