package peer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/polyvisor/polyvisor/internal/agent"
	"github.com/polyvisor/polyvisor/internal/hostreq"
	"github.com/polyvisor/polyvisor/internal/procutil"
	"github.com/polyvisor/polyvisor/internal/runcmd"
)

// virshStopTimeout is how long Stop waits for a guest to power off after
// libvirt's ACPI shutdown before it destroys it: polyvisor's bench stops
// its own VMs gracefully with the same timeout.
const virshStopTimeout = 20 * time.Second

// virshBootTimeout bounds one boot, until the agent answers: the busybox
// VM's takes a few seconds under TCG, so two minutes is a stalled one.
const virshBootTimeout = 2 * time.Minute

// Virsh is the libvirt peer: polyvisor's VM boot (same QEMU, machine,
// kernel, initrd, command line, disk and agent port) defined and run by a
// private libvirtd through virsh. Stop is `virsh shutdown` (ACPI) with
// virshStopTimeout, then `virsh destroy`.
type Virsh struct {
	env    Env
	daemon *virshDaemon

	mu     sync.Mutex
	agents map[string]*agent.Client // running guests' agents
	// forcedStops counts the Stops that had to destroy a guest.
	forcedStops int
}

// NewVirsh returns the libvirt peer, not yet set up.
func NewVirsh() *Virsh { return &Virsh{agents: map[string]*agent.Client{}} }

// Setup starts the private libvirtd.
func (v *Virsh) Setup(ctx context.Context, env Env) error {
	if env.VM == nil {
		return errors.New("virsh: Env.VM is nil: the libvirt peer boots polyvisor's VM and needs bench's VMEnv")
	}
	boot, err := parseQEMUArgv(env.VM.Argv)
	if err != nil {
		return fmt.Errorf("virsh: %w", err)
	}
	// polyvisor runs QEMU by name; a domain's emulator is a path.
	if !filepath.IsAbs(boot.emulator) {
		if boot.emulator, err = hostreq.Lookup(boot.emulator); err != nil {
			return fmt.Errorf("virsh: %w", err)
		}
		vm := *env.VM
		vm.Argv = slices.Concat([]string{boot.emulator}, vm.Argv[1:])
		env.VM = &vm
	}
	v.env = env
	d, err := startLibvirtd(ctx, v.daemonDir(), boot.emulator)
	if err != nil {
		return err
	}
	v.daemon = d
	// libvirt probes an emulator's capabilities the first time a domain
	// needs it, for seconds; an installed libvirt has them cached. Probing
	// here keeps that out of the first Create that bench times.
	virtType := "qemu"
	if env.VM.Accel == "kvm" {
		virtType = "kvm"
	}
	_, err = d.virsh(ctx, "domcapabilities", "--emulatorbin", boot.emulator, "--arch", boot.arch, "--machine", boot.machine, "--virttype", virtType)
	return err
}

func (v *Virsh) daemonDir() string         { return filepath.Join(v.env.Dir, "libvirt") }
func (v *Virsh) guestDir(id string) string { return filepath.Join(v.env.Dir, "guests", id) }
func (v *Virsh) agentSocket(id string) string {
	return filepath.Join(v.guestDir(id), "agent.sock")
}

// pidFile is where libvirt keeps a running domain's QEMU pid: its
// /run/libvirt/qemu, which is the daemon's run dir.
func (v *Virsh) pidFile(id string) string {
	return filepath.Join(v.daemonDir(), "run", "qemu", id+".pid")
}

// checkID refuses ids that are not plain names (they name files and the
// domain) or whose agent socket path would not fit a unix address.
func (v *Virsh) checkID(id string) error {
	if id == "" || strings.Trim(id, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") != "" || strings.HasPrefix(id, ".") || strings.HasPrefix(id, "-") {
		return fmt.Errorf("virsh: guest id %q: use letters, digits, '.', '_' and '-', not first '.' or '-'", id)
	}
	if n := len(v.agentSocket(id)); n > 107 {
		return fmt.Errorf("virsh: guest %s: agent socket path is %d bytes, over a unix socket's 107: use a shorter Env.Dir", id, n)
	}
	if v.daemon == nil {
		return fmt.Errorf("virsh: guest %s: Setup has not run", id)
	}
	return nil
}

// Create makes the guest's qcow2 overlay of the VM's base disk and
// defines its domain.
func (v *Virsh) Create(ctx context.Context, id string) (err error) {
	if err := v.checkID(id); err != nil {
		return err
	}
	dir := v.guestDir(id)
	if err := os.MkdirAll(filepath.Dir(dir), 0o700); err != nil {
		return fmt.Errorf("virsh: create %s: %w", id, err)
	}
	if err := os.Mkdir(dir, 0o700); err != nil {
		return fmt.Errorf("virsh: create %s: %w", id, err)
	}
	defer func() {
		if err != nil {
			os.RemoveAll(dir)
		}
	}()
	disk, err := Overlay(v.env.VM.Base, dir, v.env.VM.DiskBytes)
	if err != nil {
		return fmt.Errorf("virsh: create %s: %w", id, err)
	}
	xml, err := DomainXML(Domain{Name: id, VM: v.env.VM, Disk: disk, AgentSocket: v.agentSocket(id), Console: filepath.Join(dir, "console.log")})
	if err != nil {
		return fmt.Errorf("virsh: %w", err)
	}
	file := filepath.Join(dir, "domain.xml")
	if err := os.WriteFile(file, []byte(xml), 0o600); err != nil {
		return fmt.Errorf("virsh: create %s: %w", id, err)
	}
	if _, err := v.daemon.virsh(ctx, "define", file); err != nil {
		return err
	}
	return nil
}

// Start starts the domain and returns once the guest's agent answers on
// its channel's socket.
func (v *Virsh) Start(ctx context.Context, id string) error {
	if err := v.checkID(id); err != nil {
		return err
	}
	err := v.boot(ctx, id)
	if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
		// A TCG guest's kernel has been seen to stall for good early in
		// boot on a loaded host; one stalled boot is not the peer's
		// speed, so it is destroyed and booted once more.
		slog.Warn("virsh peer: a boot stalled; destroyed, booting again", "guest", id, "err", err)
		err = v.boot(ctx, id)
	}
	return err
}

// boot starts the domain and waits up to virshBootTimeout for its agent;
// a domain whose agent does not answer is destroyed.
func (v *Virsh) boot(ctx context.Context, id string) (err error) {
	if _, err := v.daemon.virsh(ctx, "start", id); err != nil {
		return err
	}
	defer func() {
		if err != nil {
			v.daemon.virsh(context.WithoutCancel(ctx), "destroy", id)
		}
	}()
	wait, cancel := context.WithTimeout(ctx, virshBootTimeout)
	defer cancel()
	c, err := agent.Dial(wait, v.agentSocket(id))
	if err != nil {
		return fmt.Errorf("virsh: start %s: %w (console: %s)", id, err, lastLineOf(filepath.Join(v.guestDir(id), "console.log")))
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if old := v.agents[id]; old != nil {
		old.Close()
	}
	v.agents[id] = c
	return nil
}

// lastLineOf is a file's last line, for an error.
func lastLineOf(path string) string {
	data, _ := os.ReadFile(path)
	if s := runcmd.LastLines(string(data), 1); s != "" {
		return s
	}
	return "empty"
}

// dropAgent closes the connection to a guest's agent.
func (v *Virsh) dropAgent(id string) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if c := v.agents[id]; c != nil {
		c.Close()
		delete(v.agents, id)
	}
}

// Stop asks the guest to power off (ACPI, `virsh shutdown`) and waits up to
// virshStopTimeout for its QEMU to end, then destroys the domain.
func (v *Virsh) Stop(ctx context.Context, id string) error {
	if err := v.checkID(id); err != nil {
		return err
	}
	v.dropAgent(id)
	pid, err := v.qemuPID(id)
	if err != nil {
		return fmt.Errorf("virsh: stop %s: %w", id, err)
	}
	qemu, err := procutil.Identify(pid)
	if err != nil {
		return fmt.Errorf("virsh: stop %s: %w", id, err)
	}
	if _, err := v.daemon.virsh(ctx, "shutdown", id, "--mode", "acpi"); err == nil {
		polite, cancel := context.WithTimeout(ctx, virshStopTimeout)
		err = qemu.Wait(polite)
		cancel()
		if err == nil {
			return v.waitShutOff(ctx, id)
		}
	}
	v.mu.Lock()
	v.forcedStops++
	v.mu.Unlock()
	_, err = v.daemon.virsh(ctx, "destroy", id)
	return err
}

// waitShutOff waits until libvirt has seen the domain's QEMU end.
func (v *Virsh) waitShutOff(ctx context.Context, id string) error {
	for {
		state, err := v.daemon.virsh(ctx, "domstate", id)
		if err != nil {
			return err
		}
		if strings.TrimSpace(state) == "shut off" {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("virsh: stop %s: still %q: %w", id, strings.TrimSpace(state), ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// Delete undefines the stopped domain and removes its overlay.
func (v *Virsh) Delete(ctx context.Context, id string) error {
	if err := v.checkID(id); err != nil {
		return err
	}
	if pid, err := v.qemuPID(id); err == nil {
		return fmt.Errorf("virsh: delete %s: its QEMU %d runs: stop it first", id, pid)
	}
	if _, err := v.daemon.virsh(ctx, "undefine", id); err != nil {
		return err
	}
	if err := os.RemoveAll(v.guestDir(id)); err != nil {
		return fmt.Errorf("virsh: delete %s: %w", id, err)
	}
	return nil
}

// Exec runs argv in the guest through its agent.
func (v *Virsh) Exec(ctx context.Context, id string, argv []string, stdin io.Reader, stdout, stderr io.Writer) (int, error) {
	v.mu.Lock()
	c := v.agents[id]
	v.mu.Unlock()
	if c == nil {
		return 0, fmt.Errorf("virsh: exec in %s: not started by this peer", id)
	}
	code, err := c.Exec(ctx, agent.ExecRequest{Command: argv}, stdin, stdout, stderr, nil)
	if err != nil {
		return 0, fmt.Errorf("virsh: exec in %s: %w", id, err)
	}
	return code, nil
}

// PIDs is the domain's QEMU.
func (v *Virsh) PIDs(ctx context.Context, id string) ([]int, error) {
	pid, err := v.qemuPID(id)
	if err != nil {
		return nil, fmt.Errorf("virsh: pids of %s: %w", id, err)
	}
	if syscall.Kill(pid, 0) != nil {
		return nil, fmt.Errorf("virsh: pids of %s: QEMU %d is not running", id, pid)
	}
	return []int{pid}, nil
}

// qemuPID reads the pid libvirt recorded for a running domain's QEMU.
func (v *Virsh) qemuPID(id string) (int, error) {
	data, err := os.ReadFile(v.pidFile(id))
	if errors.Is(err, fs.ErrNotExist) {
		return 0, fmt.Errorf("not running (libvirt has no pid file for it)")
	}
	if err != nil {
		return 0, err
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil || pid <= 0 {
		return 0, fmt.Errorf("libvirt's pid file %s holds %q", v.pidFile(id), data)
	}
	return pid, nil
}

// killLeftQEMUs ends, by pid, the QEMUs of this peer's guests whose pid
// files libvirt still holds: those it failed to destroy, or all of them if
// libvirtd died. A pid counts as ours only while its command line names
// our Env.Dir.
func (v *Virsh) killLeftQEMUs(ctx context.Context) error {
	guests, _ := os.ReadDir(filepath.Join(v.env.Dir, "guests"))
	var errs []error
	for _, g := range guests {
		pid, err := v.qemuPID(g.Name())
		if err != nil {
			continue
		}
		cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if !strings.Contains(string(cmdline), v.env.Dir+"/") {
			continue
		}
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			errs = append(errs, fmt.Errorf("virsh: kill QEMU %d: %w", pid, err))
			continue
		}
		if err := waitReaped(ctx, pid); err != nil {
			errs = append(errs, fmt.Errorf("virsh: QEMU %d of %s: %w", pid, g.Name(), err))
		}
	}
	return errors.Join(errs...)
}

// waitReaped waits until a killed process that is not our child has been
// reaped by its parent (init, once libvirtd is gone): until then it holds
// its cgroups.
func waitReaped(ctx context.Context, pid int) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	for {
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("not reaped: %w", ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// Close destroys and undefines every domain, stops libvirtd, removes the
// cgroups libvirt made and Env.Dir.
func (v *Virsh) Close(ctx context.Context) error {
	v.mu.Lock()
	for id, c := range v.agents {
		c.Close()
		delete(v.agents, id)
	}
	v.mu.Unlock()
	var errs []error
	var domains []string
	if v.daemon != nil {
		names, err := v.daemon.virsh(ctx, "list", "--all", "--name")
		if err != nil {
			errs = append(errs, err)
		}
		domains = strings.Fields(names)
		for _, id := range domains {
			if _, err := v.qemuPID(id); err == nil {
				if _, err := v.daemon.virsh(ctx, "destroy", id); err != nil {
					errs = append(errs, err)
				}
			}
			if _, err := v.daemon.virsh(ctx, "undefine", id); err != nil {
				errs = append(errs, err)
			}
		}
		errs = append(errs, v.killLeftQEMUs(ctx))
		// The guests this peer made, also when libvirtd could not list them.
		made, _ := os.ReadDir(filepath.Join(v.env.Dir, "guests"))
		for _, e := range made {
			if !slices.Contains(domains, e.Name()) {
				domains = append(domains, e.Name())
			}
		}
		errs = append(errs, v.daemon.stop(), v.daemon.removeCgroups(domains))
		v.daemon = nil
	}
	if v.env.Dir != "" {
		if err := os.RemoveAll(v.env.Dir); err != nil {
			errs = append(errs, fmt.Errorf("virsh: %w", err))
		}
	}
	return errors.Join(errs...)
}
