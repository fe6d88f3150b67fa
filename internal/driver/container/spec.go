package container

import (
	"cmp"
	"fmt"
	"log/slog"
	"slices"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/moby/profiles/seccomp"
	"github.com/polyvisor/polyvisor/internal/capability"
	"github.com/polyvisor/polyvisor/internal/cgroup"
	"github.com/polyvisor/polyvisor/internal/guest"
	"github.com/polyvisor/polyvisor/internal/guestnet"
	"github.com/polyvisor/polyvisor/pkg/api"
)

// ociVersion is the runtime-spec version the bundles declare: the one
// Debian's runc 1.1 and crun 1.8 both know (crun refuses newer ones with
// "unknown version specified"); the fields used here all exist in it.
const ociVersion = "1.0.2"

// specInput is what a bundle's config.json is made from.
type specInput struct {
	Def        *guest.Definition
	Rootfs     string
	CgroupPath string
	Args       []string // init's command line
	Env        []string // its environment; defaultEnv when nil
	Cwd        string   // its working directory; / when empty
	Terminal   bool
	HostLimits rlimitReader
	Log        *slog.Logger
}

// rlimitReader reads the host's hard limit of a resource; tests swap it.
type rlimitReader func(resource int) (uint64, error)

func hostHardLimit(resource int) (uint64, error) {
	var rl unix.Rlimit
	if err := unix.Getrlimit(resource, &rl); err != nil {
		return 0, err
	}
	return rl.Max, nil
}

// buildSpec returns the OCI runtime spec of a container guest.
func buildSpec(in specInput) (*specs.Spec, error) {
	def := in.Def
	caps := capabilitiesOf(def)
	nofile, err := clampRlimit(in, "RLIMIT_NOFILE", unix.RLIMIT_NOFILE, 1048576)
	if err != nil {
		return nil, err
	}
	spec := &specs.Spec{
		Version:  ociVersion,
		Hostname: def.Name,
		Root:     &specs.Root{Path: in.Rootfs},
		Process: &specs.Process{
			Terminal: in.Terminal,
			User:     specs.User{UID: 0, GID: 0},
			Args:     in.Args,
			Env:      defaultEnv,
			Cwd:      cmp.Or(in.Cwd, "/"),
			Capabilities: &specs.LinuxCapabilities{
				Bounding: caps, Effective: caps, Permitted: caps,
			},
			Rlimits: []specs.POSIXRlimit{{Type: "RLIMIT_NOFILE", Hard: nofile, Soft: min(1024, nofile)}},
		},
		Mounts: defaultMounts(def.Privileged),
		Linux: &specs.Linux{
			CgroupsPath:   in.CgroupPath,
			Namespaces:    namespacesOf(def),
			Resources:     resources(def),
			MaskedPaths:   maskedPaths,
			ReadonlyPaths: readonlyPaths,
		},
	}
	if in.Env != nil {
		spec.Process.Env = in.Env
	} else if len(def.Networks) == 0 {
		// The template's DHCP launcher need not watch for an eth0.
		spec.Process.Env = append(slices.Clip(defaultEnv), guestnet.NoNetworkEnv)
	}
	m, ok := def.IDMap()
	switch {
	case def.Chroot():
		// The jail's init runs as the owner of its tree's root, a host id
		// of its own range, with nothing to map it: no user namespace. A
		// hostname needs a UTS namespace of its own.
		spec.Hostname = ""
		spec.Process.User = specs.User{UID: m.HostBase, GID: m.HostBase}
		if err := confine(spec); err != nil {
			return nil, err
		}
	case ok:
		spec.Linux.UIDMappings = []specs.LinuxIDMapping{{ContainerID: 0, HostID: m.HostBase, Size: m.Size}}
		spec.Linux.GIDMappings = []specs.LinuxIDMapping{{ContainerID: 0, HostID: m.HostBase, Size: m.Size}}
		if err := confine(spec); err != nil {
			return nil, err
		}
	}
	return spec, nil
}

// jailShell is a chroot jail's init when its template names none: a
// login shell on the console. Neither busybox init nor systemd runs
// outside a pid namespace of its own (both insist on being pid 1).
var jailShell = []string{"/bin/sh", "-l"}

// capabilitiesOf returns the capabilities def's root gets: every one for
// a privileged guest; else its own list or the default, and CAP_SYS_ADMIN
// with nesting. All but a privileged guest's are namespaced: they grant
// nothing on the host.
func capabilitiesOf(def *guest.Definition) []string {
	if def.Chroot() {
		return []string{} // a non-root user's: none
	}
	if def.Privileged {
		return allCaps()
	}
	caps := def.Security.Capabilities
	if caps == nil {
		caps = capability.Default()
	}
	if def.Security.Nesting && !slices.Contains(caps, capability.SysAdmin) {
		caps = append(slices.Clone(caps), capability.SysAdmin)
	}
	return caps
}

// namespacesOf returns the namespaces def runs in: all of them, but the
// user and cgroup ones for an unprivileged guest only.
func namespacesOf(def *guest.Definition) []specs.LinuxNamespace {
	if def.Chroot() {
		// Its own mounts (/proc, /dev, /tmp) and pivot_root into its
		// tree need one; nothing else is separated from the host.
		return []specs.LinuxNamespace{{Type: specs.MountNamespace}}
	}
	ns := []specs.LinuxNamespace{
		{Type: specs.PIDNamespace}, {Type: specs.NetworkNamespace}, {Type: specs.IPCNamespace},
		{Type: specs.UTSNamespace}, {Type: specs.MountNamespace},
	}
	if !def.Privileged {
		ns = append(ns, specs.LinuxNamespace{Type: specs.UserNamespace}, specs.LinuxNamespace{Type: specs.CgroupNamespace})
	}
	return ns
}

// Confinement is what View shows a guest runs under, from what buildSpec
// gives the guest.
func (d *Driver) Confinement(def *guest.Definition) *api.Confinement {
	c := &api.Confinement{Capabilities: capabilitiesOf(def), Seccomp: "unconfined"}
	for _, ns := range namespacesOf(def) {
		c.Namespaces = append(c.Namespaces, string(ns.Type))
	}
	if !def.Privileged {
		c.Seccomp, c.NoNewPrivileges = SeccompProfile, true
	}
	c.Isolation = guest.IsolationNamespaces
	if def.Chroot() {
		m, _ := def.IDMap()
		c.Isolation, c.User = guest.IsolationChroot, fmt.Sprintf("host uid %d, gid %d (no user namespace)", m.HostBase, m.HostBase)
		c.NotIsolated = jailShares
	}
	return c
}

// jailShares is what a chroot jail shares with the host, as info says it.
var jailShares = []string{
	"pids: it sees every host process in /proc and can signal those of its own uid",
	"network: it uses the host's interfaces, addresses and ports",
	"hostname: it has the host's, and cannot set its own",
	"ipc: host System V IPC and POSIX message queues",
	"users: its ids are host ids (no user namespace)",
	"cgroups: it sees the host's hierarchy",
}

// SeccompProfile names the system call filter of unprivileged containers.
const SeccompProfile = "moby-default"

// confine gives an unprivileged container Docker's default confinement on
// top of its user namespace: no_new_privs (a setuid binary cannot raise its
// privileges, inside the guest or through its tree) and moby's default
// seccomp profile, which denies the keyring (add_key, keyctl: one guest
// could exhaust the key quota every guest of the id map shares), io_uring,
// new user namespaces, module loading, kexec, bpf and the rest, evaluated
// against the container's capabilities.
func confine(spec *specs.Spec) error {
	spec.Process.NoNewPrivileges = true
	profile, err := seccomp.GetDefaultProfile(spec)
	if err != nil {
		return fmt.Errorf("seccomp profile: %w", err)
	}
	spec.Linux.Seccomp = profile
	return nil
}

// resources turns the guest's limits into cgroup settings, which runc
// writes to cgroup v1 controllers or the v2 unified tree alike.
func resources(def *guest.Definition) *specs.LinuxResources {
	memory := int64(def.Memory)
	quota := int64(def.CPUs) * cgroup.CPUPeriod
	period := uint64(cgroup.CPUPeriod)
	pids := int64(def.Processes)
	r := &specs.LinuxResources{
		Devices: []specs.LinuxDeviceCgroup{{Allow: false, Access: "rwm"}},
		Memory:  &specs.LinuxMemory{Limit: &memory},
		CPU:     &specs.LinuxCPU{Quota: &quota, Period: &period},
		Pids:    &specs.LinuxPids{Limit: &pids},
	}
	if cgroup.SwapAccounting() {
		// Limit memory+swap to the same value so the limit cannot be dodged
		// by swapping.
		r.Memory.Swap = &memory
	}
	return r
}

// clampRlimit caps a requested hard limit at the host's own hard limit:
// without CAP_SYS_RESOURCE, asking for more fails the whole start.
func clampRlimit(in specInput, name string, resource int, want uint64) (uint64, error) {
	read := in.HostLimits
	if read == nil {
		read = hostHardLimit
	}
	hard, err := read(resource)
	if err != nil {
		return 0, fmt.Errorf("read host %s: %w", name, err)
	}
	if want > hard {
		if in.Log != nil {
			in.Log.Debug("rlimit clamped to the host's hard limit", "guest", in.Def.Name, "rlimit", name, "wanted", want, "granted", hard)
		}
		return hard, nil
	}
	return want, nil
}

var defaultEnv = []string{
	"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
	"TERM=xterm",
	"container=polyvisor",
}

func defaultMounts(privileged bool) []specs.Mount {
	mounts := []specs.Mount{
		{Destination: "/proc", Type: "proc", Source: "proc", Options: []string{"nosuid", "noexec", "nodev"}},
		{Destination: "/dev", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "strictatime", "mode=755", "size=65536k"}},
		{Destination: "/dev/pts", Type: "devpts", Source: "devpts", Options: []string{"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"}},
		{Destination: "/dev/shm", Type: "tmpfs", Source: "shm", Options: []string{"nosuid", "noexec", "nodev", "mode=1777", "size=65536k"}},
		{Destination: "/dev/mqueue", Type: "mqueue", Source: "mqueue", Options: []string{"nosuid", "noexec", "nodev"}},
		{Destination: "/sys", Type: "sysfs", Source: "sysfs", Options: []string{"nosuid", "noexec", "nodev", "ro"}},
		{Destination: "/run", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "nodev", "mode=755", "size=65536k"}},
		{Destination: "/tmp", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "nodev", "mode=1777"}},
	}
	return mounts
}

var maskedPaths = []string{
	"/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
	"/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware", "/proc/scsi",
	"/sys/devices/virtual/powercap",
}

var readonlyPaths = []string{
	"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger",
}

// allCaps is every capability the host's bounding set still holds: a
// privileged container cannot get more than the daemon has (here, for
// example, root lacks CAP_SYS_RESOURCE), and asking for it fails the start.
func allCaps() []string {
	var caps []string
	for n, name := range capability.Names {
		if held, err := unix.PrctlRetInt(unix.PR_CAPBSET_READ, uintptr(n), 0, 0, 0); err == nil && held == 1 {
			caps = append(caps, name)
		}
	}
	return caps
}
