package peer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/polyvisor/polyvisor/internal/agent"
	"github.com/polyvisor/polyvisor/internal/hostreq"
)

// RawQEMU is the Manager of QEMU run by hand with the very argv polyvisor
// gives its VM of the same template (Env.VM): each guest is a fresh qcow2
// overlay of Env.VM.Base in a directory of its own under Env.Dir, with
// its own agent and QMP sockets; QEMU is this process's child and no
// monitor stands between them.
type RawQEMU struct {
	env Env
	mu  sync.Mutex
	vms map[string]*rawVM // the guests Create made
}

// rawVM is one guest of RawQEMU.
type rawVM struct {
	dir, disk string
	qemu      *QEMU         // nil while stopped
	agent     *agent.Client // while running
}

// NewRawQEMU returns the Manager of raw QEMU.
func NewRawQEMU() *RawQEMU { return &RawQEMU{vms: map[string]*rawVM{}} }

// powerOffWait is how long Stop lets the guest power itself off.
const powerOffWait = 30 * time.Second

// Setup implements Manager: it checks the VM's argv and base disk.
func (m *RawQEMU) Setup(ctx context.Context, env Env) error {
	if env.Dir == "" {
		return errors.New("peer qemu: Env.Dir is empty: give the manager a fresh directory of its own")
	}
	m.env = env
	vm := env.VM
	if vm == nil || len(vm.Argv) == 0 {
		return errors.New("peer qemu: Env.VM has no QEMU argv: read it from a running polyvisor VM (VMEnvOf)")
	}
	if _, err := hostreq.Lookup("qemu-img"); err != nil {
		return fmt.Errorf("peer qemu: %w", err)
	}
	if _, err := os.Stat(vm.Argv[0]); err != nil {
		return fmt.Errorf("peer qemu: Env.VM.Argv[0]: %w: give the QEMU binary's path", err)
	}
	if RootDisk(vm.Argv) == "" {
		return fmt.Errorf("peer qemu: Env.VM.Argv has no root drive (-drive %s…): give a polyvisor VM's argv", rootDrive)
	}
	if !slices.ContainsFunc(vm.Argv, func(a string) bool { return strings.HasPrefix(a, "socket,id=agent,path=") }) {
		return errors.New("peer qemu: Env.VM.Argv has no agent socket (-chardev socket,id=agent,…): give a polyvisor VM's argv")
	}
	if _, err := os.Stat(vm.Base); err != nil {
		return fmt.Errorf("peer qemu: Env.VM.Base: %w: give the VM template's base disk", err)
	}
	if err := os.MkdirAll(env.Dir, 0o700); err != nil {
		return fmt.Errorf("peer qemu: %w", err)
	}
	return nil
}

// Create implements Manager: a fresh overlay of the base disk.
func (m *RawQEMU) Create(ctx context.Context, id string) (err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.checkID(id); err != nil {
		return err
	}
	if _, ok := m.vms[id]; ok {
		return fmt.Errorf("peer qemu: guest %s exists: delete it first or pick another id", id)
	}
	dir := filepath.Join(m.env.Dir, id)
	if err := os.Mkdir(dir, 0o700); err != nil {
		return fmt.Errorf("create %s: %w", id, err)
	}
	disk, err := Overlay(m.env.VM.Base, dir, m.env.VM.DiskBytes)
	if err != nil {
		os.RemoveAll(dir)
		return fmt.Errorf("create %s: %w", id, err)
	}
	m.vms[id] = &rawVM{dir: dir, disk: disk}
	return nil
}

// Start implements Manager: QEMU starts, and Start returns once the
// guest's agent answers, as polyvisor's VM start does.
func (m *RawQEMU) Start(ctx context.Context, id string) error {
	vm, err := m.vm(id)
	if err != nil {
		return err
	}
	m.mu.Lock()
	running := vm.qemu != nil
	m.mu.Unlock()
	if running {
		return fmt.Errorf("start %s: it is running", id)
	}
	// A socket left by the guest's last run would look like this run's.
	for _, name := range []string{"agent.sock", "qmp.sock"} {
		if err := os.Remove(filepath.Join(vm.dir, name)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("start %s: %w", id, err)
		}
	}
	argv := withVMLimits(m.env.VM.Argv, m.env.CPUs, m.env.MemoryMiB)
	q, err := StartQEMU(argv, vm.disk, vm.dir)
	if err != nil {
		return fmt.Errorf("start %s: %w", id, err)
	}
	c, err := q.Agent(ctx)
	if err != nil {
		q.Stop()
		return fmt.Errorf("start %s: %w", id, err)
	}
	m.mu.Lock()
	vm.qemu, vm.agent = q, c
	m.mu.Unlock()
	return nil
}

// Stop implements Manager the way polyvisor stops a VM: the guest is told
// to power off through its agent (busybox's poweroff returns at once, init
// runs the shutdown and the kernel powers the machine off), and QEMU is
// killed if it has not exited within powerOffWait.
func (m *RawQEMU) Stop(ctx context.Context, id string) error {
	vm, err := m.vm(id)
	if err != nil {
		return err
	}
	m.mu.Lock()
	q, c := vm.qemu, vm.agent
	m.mu.Unlock()
	if q == nil {
		return nil
	}
	ask, cancel := context.WithTimeout(ctx, 5*time.Second)
	code, err := c.Exec(ask, agent.ExecRequest{Command: []string{"poweroff"}}, nil, io.Discard, io.Discard, nil)
	cancel()
	if err == nil && code == 0 {
		select {
		case <-q.Exited():
		case <-time.After(powerOffWait):
		case <-ctx.Done():
		}
	}
	m.halt(vm)
	return nil
}

// halt kills the guest's QEMU unless it has exited, and forgets both.
func (m *RawQEMU) halt(vm *rawVM) {
	m.mu.Lock()
	q, c := vm.qemu, vm.agent
	vm.qemu, vm.agent = nil, nil
	m.mu.Unlock()
	if c != nil {
		c.Close()
	}
	if q != nil {
		q.Stop()
	}
}

// Delete implements Manager: the guest's directory, overlay and sockets.
func (m *RawQEMU) Delete(ctx context.Context, id string) error {
	vm, err := m.vm(id)
	if err != nil {
		return err
	}
	m.mu.Lock()
	running := vm.qemu != nil
	m.mu.Unlock()
	if running {
		return fmt.Errorf("delete %s: it is running: stop it first", id)
	}
	if err := os.RemoveAll(vm.dir); err != nil {
		return fmt.Errorf("delete %s: %w", id, err)
	}
	m.mu.Lock()
	delete(m.vms, id)
	m.mu.Unlock()
	return nil
}

// Exec implements Manager through the guest's agent.
func (m *RawQEMU) Exec(ctx context.Context, id string, argv []string, stdin io.Reader, stdout, stderr io.Writer) (int, error) {
	vm, err := m.vm(id)
	if err != nil {
		return -1, err
	}
	m.mu.Lock()
	c := vm.agent
	m.mu.Unlock()
	if c == nil {
		return -1, fmt.Errorf("exec in %s: it is not running", id)
	}
	return c.Exec(ctx, agent.ExecRequest{Command: argv}, stdin, stdout, stderr, nil)
}

// PIDs implements Manager: QEMU alone (it runs the guest in its threads
// and starts no process).
func (m *RawQEMU) PIDs(ctx context.Context, id string) ([]int, error) {
	vm, err := m.vm(id)
	if err != nil {
		return nil, err
	}
	m.mu.Lock()
	q := vm.qemu
	m.mu.Unlock()
	if q == nil {
		return nil, fmt.Errorf("pids of %s: it is not running", id)
	}
	return WithDescendants(q.PID()), nil
}

// Close implements Manager: every guest's QEMU is killed (no time for a
// guest's shutdown: its disk is thrown away) and everything under Env.Dir
// goes.
func (m *RawQEMU) Close(ctx context.Context) error {
	m.mu.Lock()
	vms := m.vms
	m.vms = map[string]*rawVM{}
	m.mu.Unlock()
	for _, vm := range vms {
		m.halt(vm)
	}
	if m.env.Dir == "" {
		return nil
	}
	entries, err := os.ReadDir(m.env.Dir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("peer qemu: %w", err)
	}
	var errs []error
	for _, e := range entries {
		if err := os.RemoveAll(filepath.Join(m.env.Dir, e.Name())); err != nil {
			errs = append(errs, fmt.Errorf("peer qemu: %w", err))
		}
	}
	return errors.Join(errs...)
}

// vm is guest id, which Create made.
func (m *RawQEMU) vm(id string) (*rawVM, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	vm, ok := m.vms[id]
	if !ok {
		return nil, fmt.Errorf("peer qemu: no guest %s: create it first", id)
	}
	return vm, nil
}

func (m *RawQEMU) checkID(id string) error {
	if m.env.VM == nil {
		return errors.New("peer qemu: not set up: call Setup first")
	}
	if !guestID().MatchString(id) {
		return fmt.Errorf("peer qemu: guest id %q: use letters, digits, '.', '_' and '-' (at most 64)", id)
	}
	return nil
}

// withVMLimits is argv with -smp cpus and -m memoryMiB, zero keeping
// argv's own.
func withVMLimits(argv []string, cpus, memoryMiB int) []string {
	out := slices.Clone(argv)
	for i := 1; i < len(out); i++ {
		switch {
		case out[i-1] == "-smp" && cpus > 0:
			out[i] = strconv.Itoa(cpus)
		case out[i-1] == "-m" && memoryMiB > 0:
			out[i] = strconv.Itoa(memoryMiB)
		}
	}
	return out
}
