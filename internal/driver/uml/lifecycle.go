package uml

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/polyvisor/polyvisor/internal/agent"
	"github.com/polyvisor/polyvisor/internal/cgroup"
	"github.com/polyvisor/polyvisor/internal/guest"
	"github.com/polyvisor/polyvisor/internal/hostreq"
	"github.com/polyvisor/polyvisor/internal/monitor"
	"github.com/polyvisor/polyvisor/internal/monitor/monitored"
	"github.com/polyvisor/polyvisor/internal/network"
	"github.com/polyvisor/polyvisor/internal/runcmd"
	"github.com/polyvisor/polyvisor/internal/vmimage"
	"github.com/polyvisor/polyvisor/pkg/api"
)

// memoryOverhead is what a guest's cgroup allows beyond its RAM: the
// kernel's own text and data, its helper threads and the host's page
// tables and stubs of each guest process.
const memoryOverhead = 128 << 20

// minMemory is the least RAM a guest's kernel boots with: below about
// 48 MiB it at times fails to allocate its memory map.
const minMemory = 64 << 20

// umid is the UML instance id; with uml_dir set to the guest's run
// directory, the kernel keeps its pid file in RUNDIR/uml/pid.
const umid = "uml"

// tmpDir is where the guest's kernel makes (and at once unlinks) the file
// that backs its RAM, which it maps executable: a tmpfs, so that the RAM
// stays in memory (and is charged to the guest's cgroup). /run is a disk
// on some hosts; /dev/shm is a tmpfs nearly everywhere.
func (d *Driver) tmpDir(def *guest.Definition) string {
	return filepath.Join(d.tmpRoot(), def.Name)
}

// tmpRoot holds the guests' temporary directories.
func (d *Driver) tmpRoot() string {
	var st unix.Statfs_t
	if unix.Statfs("/dev/shm", &st) == nil && st.Type == unix.TMPFS_MAGIC {
		return filepath.Join("/dev/shm", d.opts.Layout.Namespace+"-uml")
	}
	return filepath.Join(d.opts.Layout.RunDir(), ".uml-tmp")
}

// Create implements driver.Driver: the template's image is built if it has
// not been yet; the guest's COW file is made by its kernel at first boot
// (O(1) either way: it holds only the blocks the guest writes).
func (d *Driver) Create(ctx context.Context, dir string, def *guest.Definition) error {
	t, err := d.template(def)
	if err != nil {
		return err
	}
	image, err := d.rootImage(ctx, t)
	if err != nil {
		return err
	}
	info, err := os.Stat(image)
	if err != nil {
		return fmt.Errorf("uml image: %w", err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "disks"), 0o700); err != nil {
		return fmt.Errorf("create disks: %w", err)
	}
	def.Disks = []guest.Disk{{Name: "root", Path: rootCOW, Kind: guest.RootfsUBDCOW, Size: guest.Size(info.Size())}}
	return nil
}

// bootSpec is what a guest's kernel command line is made of.
type bootSpec struct {
	Kernel, TmpDir, RunDir, COW, Image, Hostname string
	Memory                                       guest.Size
	NICs                                         []network.NIC
}

// commandLine is the monitor's command: linux.uml with its RAM, its COW
// disk, its console on the monitor's pty (fd 0 and 1), the agent's serial
// line on the monitor's second pty, and a tap per network.
func commandLine(s bootSpec) []string {
	args := []string{
		"/usr/bin/env", "TMPDIR=" + s.TmpDir, s.Kernel,
		"mem=" + strconv.FormatInt(int64(s.Memory)>>20, 10) + "M",
		"ubd0=" + s.COW + "," + s.Image, "root=/dev/ubda", "rw",
		"uml_dir=" + s.RunDir, "umid=" + umid,
		"con0=fd:0,fd:1", "con=null", "ssl=null", "ssl1=tty:" + monitor.AgentPtyArg,
		vmimage.HostnameParam + "=" + s.Hostname,
	}
	for i, nic := range s.NICs {
		args = append(args, fmt.Sprintf("eth%d=tuntap,%s,%s", i, nic.HostIf, nic.MAC))
	}
	return args
}

// Start implements driver.Driver: the kernel runs under its monitor in the
// guest's cgroup; the start is done when the guest's agent answers, or
// fails (and leaves nothing running) after BootTimeout.
func (d *Driver) Start(ctx context.Context, def *guest.Definition) (status guest.Status, err error) {
	t, err := d.template(def)
	if err != nil {
		return status, err
	}
	image, err := d.rootImage(ctx, t)
	if err != nil {
		return status, fmt.Errorf("start %s: %w", def.Name, err)
	}
	if def.Memory < minMemory {
		return status, fmt.Errorf("%w: start %s: memory %s: a uml guest's kernel needs at least %s; config set %s memory=%s", api.ErrInvalid, def.Name, def.Memory, guest.Size(minMemory), def.Name, guest.Size(minMemory))
	}
	kernel, err := hostreq.Lookup(KernelProgram)
	if err != nil {
		return status, fmt.Errorf("%w: start %s: %w", api.ErrNotAvailable, def.Name, err)
	}
	for _, p := range []string{d.cowPath(def), image} {
		if strings.Contains(p, ",") {
			return status, fmt.Errorf("%w: start %s: %s has a comma, which UML's ubd option cannot carry; use a state dir without one", api.ErrInvalid, def.Name, p)
		}
	}
	runDir, tmpDir := d.runDir(def), d.tmpDir(def)
	for _, dir := range []string{runDir, tmpDir} {
		if err := os.RemoveAll(dir); err != nil {
			return status, fmt.Errorf("start %s: %w", def.Name, err)
		}
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return status, fmt.Errorf("start %s: %w", def.Name, err)
		}
	}
	def = def.Clone()
	defer func() {
		if err != nil {
			d.kill(context.WithoutCancel(ctx), def)
			d.Cleanup(context.WithoutCancel(ctx), def)
		}
	}()
	if err = d.makeCgroup(def); err != nil {
		return status, fmt.Errorf("start %s: %w", def.Name, err)
	}
	var nics []network.NIC
	for _, n := range def.Networks {
		nic := network.GuestNIC(def, n)
		if err = makeTap(nic); err != nil {
			return status, fmt.Errorf("start %s: %w", def.Name, err)
		}
		nics = append(nics, nic)
	}
	argv := commandLine(bootSpec{
		Kernel: kernel, TmpDir: tmpDir, RunDir: runDir, COW: d.cowPath(def), Image: image,
		Hostname: def.Name, Memory: def.Memory, NICs: nics,
	})
	// The start is reported once the kernel has written its pid file
	// (RUNDIR/uml/pid), early in its boot; the agent's answer ends it.
	status, err = d.monitors.Start(ctx, monitor.Config{
		ID: def.Name, Dir: runDir, Log: d.ConsoleLog(def), LogMax: monitor.DefaultLogMax,
		ReadySocket: filepath.Join(runDir, umid, "pid"), Command: argv,
		Cgroup: d.cgroupPath(def), AgentSerial: d.agentSocket(def),
	})
	if err != nil {
		return status, fmt.Errorf("start %s: %w", def.Name, err)
	}
	status.HandleVersion = handleVersion
	status.Handle = handle{Agent: d.agentSocket(def), TmpDir: tmpDir}.encode()
	def.Status = status
	bootCtx, cancel := context.WithTimeout(ctx, BootTimeout)
	defer cancel()
	if _, err = d.agent(bootCtx, def); err != nil {
		if !monitored.Process(def).Alive() {
			return status, fmt.Errorf("start %s: the UML kernel exited while the guest booted: %s", def.Name, lastConsoleLines(d.ConsoleLog(def)))
		}
		return status, fmt.Errorf("start %s: the guest did not boot within %s (its console: %s)", def.Name, BootTimeout, lastConsoleLines(d.ConsoleLog(def)))
	}
	return status, nil
}

// makeCgroup makes the guest's cgroup, with its memory (RAM and the
// kernel's overhead) and cpu limits, and on cgroup v1 a freezer cgroup of
// the same path, which the monitor's Join puts the kernel in too: Kill
// and snapshots freeze through it.
func (d *Driver) makeCgroup(def *guest.Definition) error {
	path := d.cgroupPath(def)
	if err := cgroup.Create(path, cgroup.Limits{Memory: int64(def.Memory) + memoryOverhead, CPUs: def.CPUs}); err != nil {
		return err
	}
	if cgroup.Mode() != "v2" {
		if err := os.MkdirAll(filepath.Join(cgroup.Root, "freezer", path), 0o755); err != nil {
			cgroup.Remove(path)
			return fmt.Errorf("create cgroup %s: %w", path, err)
		}
	}
	return nil
}

// Recover implements driver.Driver: a UML guest needs nothing reattached
// (its agent is dialled on first use); a guest a snapshot froze when the
// daemon died is thawed.
func (d *Driver) Recover(ctx context.Context, def *guest.Definition) error {
	if _, err := d.readHandle(def); err != nil {
		return fmt.Errorf("adopt %s: %w", def.Name, err)
	}
	if !monitored.Process(def).Alive() {
		return nil
	}
	if err := setFrozen(d.cgroupPath(def), false); err != nil {
		return fmt.Errorf("adopt %s: thaw: %w", def.Name, err)
	}
	return nil
}

// Stop implements driver.Driver: the guest is asked to power off through
// its agent, then its kernel is killed.
func (d *Driver) Stop(ctx context.Context, def *guest.Definition, timeout time.Duration) error {
	proc := monitored.Process(def)
	if !proc.Alive() {
		return d.kill(ctx, def) // helpers a killed kernel left, if any
	}
	if timeout > 0 {
		d.askPowerOff(ctx, def)
		polite, cancel := context.WithTimeout(ctx, timeout)
		err := proc.Wait(polite)
		cancel()
		if err == nil {
			return d.kill(ctx, def)
		}
		d.log.Info("guest did not power off in time; killing its kernel", "guest", def.Name, "timeout", timeout)
	}
	return d.kill(ctx, def)
}

// askPowerOff starts the guest's own shutdown through its agent.
func (d *Driver) askPowerOff(ctx context.Context, def *guest.Definition) {
	reach, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if c, err := d.agent(reach, def); err == nil {
		// busybox's poweroff signals init and returns at once.
		c.Exec(reach, agent.ExecRequest{Command: []string{"poweroff"}}, nil, io.Discard, io.Discard, nil)
	}
}

// kill ends every process of the guest: the kernel and the host processes
// that run its processes and its I/O, which a SIGKILL of the kernel alone
// would leave behind. They are all in its process group (the monitor
// starts it in a session of its own) and in its cgroup.
func (d *Driver) kill(ctx context.Context, def *guest.Definition) error {
	proc := monitored.Process(def)
	if proc.Alive() {
		unix.Kill(-proc.PID, unix.SIGKILL)
	}
	if err := cgroup.Kill(ctx, d.cgroupPath(def)); err != nil {
		return fmt.Errorf("stop %s: %w", def.Name, err)
	}
	hard, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := proc.Wait(hard); err != nil {
		return fmt.Errorf("stop %s: UML kernel %d survived SIGKILL: %w", def.Name, proc.PID, err)
	}
	return nil
}

// Cleanup implements driver.Driver: the run and temporary directories,
// the cgroup and the taps go.
func (d *Driver) Cleanup(ctx context.Context, def *guest.Definition) (*api.Exit, error) {
	d.dropAgent(def.Name)
	exit := monitored.Ended(ctx, def, d.runDir(def))
	var errs []error
	for _, n := range def.Networks {
		errs = append(errs, removeTap(network.GuestNIC(def, n).HostIf))
	}
	errs = append(errs, os.RemoveAll(d.runDir(def)), os.RemoveAll(d.tmpDir(def)))
	os.Remove(d.tmpRoot()) // once no guest has a directory there
	// Helpers of a kernel that died alone may still hold the cgroup.
	if monitored.Process(def).Alive() {
		errs = append(errs, errors.New("its kernel still runs"))
	} else if err := cgroup.Kill(ctx, d.cgroupPath(def)); err != nil {
		errs = append(errs, err)
	}
	errs = append(errs, cgroup.Remove(d.cgroupPath(def)))
	if err := errors.Join(errs...); err != nil {
		return exit, fmt.Errorf("clean up %s: %w", def.Name, err)
	}
	return exit, nil
}

// Sweep implements driver.Sweeper: the cgroups, run and temporary
// directories of guests that ended while no daemon watched go (their taps
// are the network sweep's).
func (d *Driver) Sweep(ctx context.Context, live map[string]bool) error {
	// A UML guest's temporary directory marks it as this class's: the
	// helpers of a kernel killed with its monitor may still hold its
	// cgroup, and are ended before the cgroups are swept.
	var errs []error
	entries, _ := os.ReadDir(d.tmpRoot())
	for _, e := range entries {
		if live[e.Name()] {
			continue
		}
		if !strings.HasPrefix(e.Name(), ".") {
			errs = append(errs, cgroup.Kill(ctx, d.opts.Layout.GuestCgroup(e.Name())))
		}
		errs = append(errs, os.RemoveAll(filepath.Join(d.tmpRoot(), e.Name())))
	}
	errs = append(errs, monitored.SweepOrphans(d.opts.Layout, live, d.log))
	return errors.Join(errs...)
}

// Delete implements driver.Driver: the COW file lives in the guest's
// directory, which the daemon removes; it goes first, so that a delete
// that fails half-way never leaves a disk that looks whole.
func (d *Driver) Delete(ctx context.Context, def *guest.Definition) error {
	if err := os.Remove(d.cowPath(def)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("delete %s: %w", def.Name, err)
	}
	return nil
}

// ConsoleLog implements driver.Consoler.
func (d *Driver) ConsoleLog(def *guest.Definition) string {
	return filepath.Join(d.guestDir(def), "console.log")
}

// lastConsoleLines keeps the end of the console log, on one line.
func lastConsoleLines(path string) string {
	data, err := os.ReadFile(path)
	if lines := runcmd.LastLines(string(data), 3); err == nil && lines != "" {
		return lines
	}
	return "nothing on it"
}
