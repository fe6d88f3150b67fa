package qemu

import (
	"context"
	"fmt"
	"os/exec"
	"os/user"
	"strconv"

	"github.com/polyvisor/polyvisor/internal/cgroup"
	"github.com/polyvisor/polyvisor/internal/guest"
	"github.com/polyvisor/polyvisor/internal/lazyre"
	"github.com/polyvisor/polyvisor/internal/runcmd"
)

// User is the unprivileged system user every VM's QEMU becomes once it has
// opened, as root, all it needs: its disks, firmware, kernel, tap and KVM.
// It owns no file: QEMU reaches its guest's files only through the
// descriptors it opened before, and cannot open any guest's (its own
// included) by path, the guests' directories being closed to it.
const User = "polyvisor-qemu"

// sandboxPolicy is QEMU's seccomp filter (-sandbox), libvirt's and Incus's
// choice: no obsolete system calls, no fork or exec, no changes of
// scheduling or resource limits. elevateprivileges stays allowed because
// QEMU installs the filter first and drops root (-runas) last: with deny
// its own setuid is killed ("Bad system call", QEMU 7.2; Incus allows it
// for the same reason). Once dropped, QEMU has no capability left, so the
// set*id calls it keeps cannot give root back.
const sandboxPolicy = "on,obsolete=deny,elevateprivileges=allow,spawn=deny,resourcecontrol=deny"

// Memory a VM's cgroup grants QEMU beyond the guest's RAM.
const (
	// baseOverhead is QEMU's own: code and libraries, heap, device models,
	// I/O buffers and the page cache of its disks (an idle TCG microVM
	// with 256 MiB of RAM measured about 230 MB in all, most of the RAM
	// untouched).
	baseOverhead = 256 << 20
	// tcgCodeBuffer is the translated-code buffer QEMU reserves under TCG
	// and fills as it translates: 1 GiB on 64-bit hosts with 8 GiB of RAM
	// or more (QEMU 7.2's default tb-size).
	tcgCodeBuffer = 1 << 30
)

// MemoryOverhead is the memory a VM's cgroup allows its QEMU beyond the
// guest's RAM under accel.
func MemoryOverhead(accel string) int64 {
	if accel == "tcg" {
		return baseOverhead + tcgCodeBuffer
	}
	return baseOverhead
}

// confinement is what a VM's QEMU runs under.
type confinement struct {
	// User is who QEMU becomes; RunWith spells it -run-with user= (QEMU
	// 9.1 and later, where -runas is deprecated) rather than -runas.
	User    string
	RunWith bool
	Sandbox string // -sandbox's policy
	Cgroup  string // the guest's cgroup, made before QEMU starts
	Limits  cgroup.Limits
}

// args returns QEMU's options of the confinement.
func (c *confinement) args() []string {
	if c == nil {
		return nil
	}
	args := []string{"-sandbox", c.Sandbox}
	if c.RunWith {
		return append(args, "-run-with", "user="+c.User)
	}
	return append(args, "-runas", c.User)
}

// cgroupPath is the guest's cgroup.
func (d *Driver) cgroupPath(def *guest.Definition) string {
	return d.opts.Layout.GuestCgroup(def.Name)
}

// confine returns how the guest's QEMU (binary qemu) runs under accel, or
// nil when the daemon runs VMs unconfined (benchmarks' baseline only).
func (d *Driver) confine(ctx context.Context, def *guest.Definition, qemu, accel string) (*confinement, error) {
	if d.opts.Unconfined {
		return nil, nil
	}
	if err := d.ensureUser(ctx); err != nil {
		return nil, err
	}
	runWith, err := d.hasRunWith(ctx, qemu)
	if err != nil {
		return nil, err
	}
	return &confinement{
		User: User, RunWith: runWith, Sandbox: sandboxPolicy, Cgroup: d.cgroupPath(def),
		Limits: limitsOf(def, accel),
	}, nil
}

// limitsOf is what the guest's cgroup holds its QEMU to: the guest's RAM
// and QEMU's overhead, and as much cpu time as the guest has cpus.
func limitsOf(def *guest.Definition, accel string) cgroup.Limits {
	return cgroup.Limits{Memory: int64(def.Memory) + MemoryOverhead(accel), CPUs: def.CPUs}
}

// ensureUser creates User, a system user with a group of its own, no home
// and no login, unless it exists.
func (d *Driver) ensureUser(ctx context.Context) error {
	d.userMu.Lock()
	defer d.userMu.Unlock()
	if _, err := user.Lookup(User); err == nil {
		return nil
	}
	err := runcmd.Run(ctx, runcmd.Cmd{Name: "useradd", Args: []string{
		"--system", "--user-group", "--no-create-home", "--home-dir", "/nonexistent",
		"--shell", "/usr/sbin/nologin", "--comment", "polyvisor QEMU", User,
	}})
	if err != nil {
		if _, lerr := user.Lookup(User); lerr == nil {
			return nil // made meanwhile by another daemon
		}
		return fmt.Errorf("create the user QEMU runs as, %s: %w", User, err)
	}
	d.log.Info("created the user VMs' QEMU runs as", "user", User)
	return nil
}

// qemuVersion matches the first line of qemu-system-* --version.
var qemuVersion = lazyre.New(`version (\d+)\.(\d+)`)

// hasRunWith reports whether the QEMU binary takes -run-with (9.1 and
// later); the answer is kept per binary.
func (d *Driver) hasRunWith(ctx context.Context, qemu string) (bool, error) {
	d.mu.Lock()
	known, ok := d.runWith[qemu]
	d.mu.Unlock()
	if ok {
		return known, nil
	}
	out, err := exec.CommandContext(ctx, qemu, "--version").Output()
	if err != nil {
		return false, fmt.Errorf("%s --version: %w", qemu, err)
	}
	runWith, err := runWithSince(string(out))
	if err != nil {
		return false, fmt.Errorf("%s --version: %w", qemu, err)
	}
	d.mu.Lock()
	d.runWith[qemu] = runWith
	d.mu.Unlock()
	return runWith, nil
}

// runWithSince reads QEMU's --version output and reports whether that
// QEMU has -run-with.
func runWithSince(version string) (bool, error) {
	m := qemuVersion().FindStringSubmatch(version)
	if m == nil {
		return false, fmt.Errorf("no version in %q", version)
	}
	major, _ := strconv.Atoi(m[1])
	minor, _ := strconv.Atoi(m[2])
	return major > 9 || major == 9 && minor >= 1, nil
}
