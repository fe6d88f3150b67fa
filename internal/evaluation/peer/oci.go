package peer

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

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/polyvisor/polyvisor/internal/cgroup"
	"github.com/polyvisor/polyvisor/internal/hostreq"
	"github.com/polyvisor/polyvisor/internal/lazyre"
	"github.com/polyvisor/polyvisor/internal/runc"
)

// OCI is the Manager of an OCI runtime run by hand, runc or crun: each
// guest is a copy of a polyvisor container's config.json (Env.Spec) on an
// overlay of Env.RootFS, in the shared id map, under Env.Dir; the
// runtime's state (--root) is Env.Dir's too. There is no daemon and no
// monitor: the runtime starts the container and exits.
type OCI struct {
	runtime      string // runc or crun
	env          Env
	spec         *specs.Spec // Env.Spec with Env's limits
	cgroupParent string      // holds the guests' cgroups, this manager's alone
	// stopGrace is how long Stop gives init to end on SIGTERM (busybox
	// init runs its shutdown actions) before SIGKILL.
	stopGrace time.Duration
}

// NewOCI returns the Manager of runtime (runc or crun).
func NewOCI(runtime string) *OCI { return &OCI{runtime: runtime, stopGrace: 10 * time.Second} }

// killWait is how long Stop waits for the container to end on SIGKILL.
const killWait = 10 * time.Second

// Setup implements Manager: it checks the runtime, the spec and the tree.
func (m *OCI) Setup(ctx context.Context, env Env) error {
	if env.Dir == "" {
		return fmt.Errorf("peer %s: Env.Dir is empty: give the manager a fresh directory of its own", m.runtime)
	}
	// Close sweeps these, even after a failure below.
	m.env = env
	m.cgroupParent = "/polyvisor-peer-" + m.runtime + "-" + cgroupSafe(filepath.Base(env.Dir))
	if _, err := hostreq.Lookup(m.runtime); err != nil {
		return fmt.Errorf("peer %s: %w", m.runtime, err)
	}
	if env.Spec == nil || env.Spec.Process == nil || env.Spec.Root == nil || env.Spec.Linux == nil {
		return fmt.Errorf("peer %s: Env.Spec lacks process, root or linux: give it a polyvisor container's config.json (ContainerSpecOf)", m.runtime)
	}
	if fi, err := os.Stat(env.RootFS); err != nil || !fi.IsDir() {
		return fmt.Errorf("peer %s: Env.RootFS %q is not a directory: give it the busybox tree owned by the shared id map", m.runtime, env.RootFS)
	}
	if err := os.MkdirAll(env.Dir, 0o711); err != nil {
		return fmt.Errorf("peer %s: %w", m.runtime, err)
	}
	m.spec = withLimits(env.Spec, env.CPUs, env.MemoryMiB)
	return nil
}

// Create implements Manager: the bundle and the overlay rootfs.
func (m *OCI) Create(ctx context.Context, id string) error {
	if err := m.checkID(id); err != nil {
		return err
	}
	if _, err := os.Lstat(filepath.Join(m.env.Dir, id)); err == nil {
		return fmt.Errorf("peer %s: guest %s exists: delete it first or pick another id", m.runtime, id)
	}
	_, err := PrepareOCI(m.runtime, m.env.Dir, m.spec, m.env.RootFS, id, m.cgroupParent)
	return err
}

// Start implements Manager with run -d, which returns once the
// container's init has been started (the runtime waits for it to exec):
// then exec works. This is what bench timed for raw runc before, and what
// polyvisor's container start waits for.
func (m *OCI) Start(ctx context.Context, id string) error {
	r, err := m.container(id)
	if err != nil {
		return err
	}
	_, err = r.run(ctx)
	return err
}

// Stop implements Manager as polyvisor stops a container: SIGTERM to
// init, and SIGKILL when it has not ended within stopGrace.
func (m *OCI) Stop(ctx context.Context, id string) error {
	r, err := m.container(id)
	if err != nil {
		return err
	}
	for _, step := range []struct {
		signal string
		wait   time.Duration
	}{{"SIGTERM", m.stopGrace}, {"SIGKILL", killWait}} {
		st, err := m.state(ctx, r)
		if err != nil {
			return err
		}
		if st.Status == "stopped" {
			return nil
		}
		if err := r.rt().Kill(ctx, id, step.signal); err != nil {
			return fmt.Errorf("stop %s: %s: %w", id, step.signal, err)
		}
		if m.waitStopped(ctx, r, step.wait) == nil {
			return nil
		}
	}
	return fmt.Errorf("stop %s: still running %s after SIGKILL", id, killWait)
}

// waitStopped polls the runtime's state until the container is stopped.
func (m *OCI) waitStopped(ctx context.Context, r *Runc, limit time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	for {
		st, err := m.state(ctx, r)
		if err != nil {
			return err
		}
		if st.Status == "stopped" {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// Delete implements Manager: the runtime's container, its cgroup, its
// overlay and files.
func (m *OCI) Delete(ctx context.Context, id string) error {
	r, err := m.container(id)
	if err != nil {
		return err
	}
	if st, err := m.state(ctx, r); err == nil && st.Status == "running" {
		return fmt.Errorf("delete %s: it is running: stop it first", id)
	}
	return r.remove(ctx)
}

// Exec implements Manager with the runtime's exec.
func (m *OCI) Exec(ctx context.Context, id string, argv []string, stdin io.Reader, stdout, stderr io.Writer) (int, error) {
	r, err := m.container(id)
	if err != nil {
		return -1, err
	}
	code, err := r.ExecInput(ctx, argv, stdin, stdout, stderr)
	if code == 255 {
		// The runtime's own failure (a stopped container) exits 255
		// too: tell it from the command's.
		if st, serr := m.state(ctx, r); serr == nil && st.Status != "running" {
			return -1, fmt.Errorf("exec in %s: it is %s, not running", id, st.Status)
		}
	}
	return code, err
}

// PIDs implements Manager: the container's init and its descendants (no
// monitor stays once the runtime has started it).
func (m *OCI) PIDs(ctx context.Context, id string) ([]int, error) {
	r, err := m.container(id)
	if err != nil {
		return nil, err
	}
	st, err := m.state(ctx, r)
	if err != nil {
		return nil, err
	}
	if st.Status != "running" || st.Pid <= 0 {
		return nil, fmt.Errorf("pids of %s: it is %s, not running", id, st.Status)
	}
	return WithDescendants(st.Pid), nil
}

// Close implements Manager: every container under Env.Dir, their cgroups
// and the runtime's state go.
func (m *OCI) Close(ctx context.Context) error {
	if m.env.Dir == "" {
		return nil
	}
	err := SweepOCI(m.runtime, m.env.Dir, m.cgroupParent)
	if rerr := os.RemoveAll(filepath.Join(m.env.Dir, stateRootName)); rerr != nil {
		err = errors.Join(err, fmt.Errorf("peer %s: %w", m.runtime, rerr))
	}
	return err
}

// state asks the runtime how container r is.
func (m *OCI) state(ctx context.Context, r *Runc) (runc.State, error) {
	st, err := r.rt().State(ctx, r.ID)
	if runc.IsNotExist(err) {
		// Created here but never run, or deleted: nothing runs.
		return runc.State{ID: r.ID, Status: "stopped"}, nil
	}
	return st, err
}

// container is guest id's container, which Create made.
func (m *OCI) container(id string) (*Runc, error) {
	if err := m.checkID(id); err != nil {
		return nil, err
	}
	r := runcOf(m.runtime, m.env.Dir, id, m.cgroupParent)
	if _, err := os.Stat(filepath.Join(r.Dir, "bundle")); err != nil {
		return nil, fmt.Errorf("peer %s: no guest %s: create it first", m.runtime, id)
	}
	return r, nil
}

// guestID is what a guest's id may be: a file and cgroup name.
var guestID = lazyre.New(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$`)

func (m *OCI) checkID(id string) error {
	if m.env.Dir == "" || m.spec == nil {
		return fmt.Errorf("peer %s: not set up: call Setup first", m.runtime)
	}
	if !guestID().MatchString(id) || id == stateRootName {
		return fmt.Errorf("peer %s: guest id %q: use letters, digits, '.', '_' and '-' (at most 64), not %q", m.runtime, id, stateRootName)
	}
	return nil
}

// cgroupSafe keeps the letters, digits, '-' and '_' of name.
func cgroupSafe(name string) string {
	return strings.Map(func(r rune) rune {
		if r == '-' || r == '_' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' {
			return r
		}
		return -1
	}, name)
}

// withLimits is a copy of spec whose guest gets cpus CPUs of time and
// memoryMiB of memory (no swap beyond it where the spec limits swap too),
// zero keeping the spec's own.
func withLimits(spec *specs.Spec, cpus, memoryMiB int) *specs.Spec {
	s := *spec
	linux := *s.Linux
	var res specs.LinuxResources
	if linux.Resources != nil {
		res = *linux.Resources
	}
	if memoryMiB > 0 {
		var mem specs.LinuxMemory
		if res.Memory != nil {
			mem = *res.Memory
		}
		limit, swap := int64(memoryMiB)<<20, int64(memoryMiB)<<20
		mem.Limit = &limit
		if mem.Swap != nil {
			mem.Swap = &swap
		}
		res.Memory = &mem
	}
	if cpus > 0 {
		var cpu specs.LinuxCPU
		if res.CPU != nil {
			cpu = *res.CPU
		}
		period, quota := uint64(cgroup.CPUPeriod), int64(cpus)*cgroup.CPUPeriod
		cpu.Period, cpu.Quota = &period, &quota
		res.CPU = &cpu
	}
	linux.Resources = &res
	s.Linux = &linux
	return &s
}

// WithDescendants is pid and every process below it, read from
// /proc/PID/task/TID/children.
func WithDescendants(pid int) []int {
	pids := []int{pid}
	for i := 0; i < len(pids); i++ {
		tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", pids[i]))
		for _, t := range tasks {
			data, err := os.ReadFile(t)
			if err != nil {
				continue // the task ended
			}
			for _, f := range strings.Fields(string(data)) {
				if child, err := strconv.Atoi(f); err == nil {
					pids = append(pids, child)
				}
			}
		}
	}
	return pids
}
