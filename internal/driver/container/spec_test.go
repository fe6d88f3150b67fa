package container

import (
	"slices"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/polyvisor/polyvisor/internal/capability"
	"github.com/polyvisor/polyvisor/internal/cgroup"
	"github.com/polyvisor/polyvisor/internal/guest"
	"github.com/polyvisor/polyvisor/internal/guestnet"
)

func specFor(t *testing.T, def *guest.Definition, hostNofile uint64) *specs.Spec {
	t.Helper()
	spec, err := buildSpec(specInput{
		Def: def, Rootfs: "/rootfs", CgroupPath: "/polyvisor/" + def.Name, Args: []string{"/sbin/init"}, Terminal: true,
		HostLimits: func(int) (uint64, error) { return hostNofile, nil },
	})
	if err != nil {
		t.Fatal(err)
	}
	return spec
}

func TestSpecOfAnUnprivilegedGuest(t *testing.T) {
	def := &guest.Definition{Name: "web", CPUs: 2, Memory: 64 << 20, Processes: 100}
	spec := specFor(t, def, 20000)
	if spec.Hostname != "web" || spec.Root.Path != "/rootfs" || spec.Linux.CgroupsPath != "/polyvisor/web" || !spec.Process.Terminal {
		t.Errorf("spec basics: hostname %q root %q cgroup %q", spec.Hostname, spec.Root.Path, spec.Linux.CgroupsPath)
	}
	var types []specs.LinuxNamespaceType
	for _, ns := range spec.Linux.Namespaces {
		types = append(types, ns.Type)
	}
	for _, want := range []specs.LinuxNamespaceType{specs.PIDNamespace, specs.NetworkNamespace, specs.IPCNamespace, specs.UTSNamespace, specs.MountNamespace, specs.UserNamespace} {
		if !slices.Contains(types, want) {
			t.Errorf("namespace %s missing from %v", want, types)
		}
	}
	want := specs.LinuxIDMapping{ContainerID: 0, HostID: 1000000, Size: 65536}
	if len(spec.Linux.UIDMappings) != 1 || spec.Linux.UIDMappings[0] != want || len(spec.Linux.GIDMappings) != 1 || spec.Linux.GIDMappings[0] != want {
		t.Errorf("id maps %v %v, want %v", spec.Linux.UIDMappings, spec.Linux.GIDMappings, want)
	}
	r := spec.Linux.Resources
	if *r.Memory.Limit != 64<<20 || *r.CPU.Quota != 200000 || *r.CPU.Period != cgroup.CPUPeriod || *r.Pids.Limit != 100 {
		t.Errorf("limits: memory %d quota %d period %d pids %d", *r.Memory.Limit, *r.CPU.Quota, *r.CPU.Period, *r.Pids.Limit)
	}
	if slices.Contains(spec.Process.Capabilities.Bounding, "CAP_SYS_MODULE") {
		t.Error("an unprivileged guest may load kernel modules")
	}
}

func TestSpecClampsRlimitsToTheHost(t *testing.T) {
	spec := specFor(t, &guest.Definition{Name: "a", CPUs: 1, Memory: 64 << 20, Processes: 10}, 20000)
	nofile := spec.Process.Rlimits[0]
	if nofile.Type != "RLIMIT_NOFILE" || nofile.Hard != 20000 || nofile.Soft != 1024 {
		t.Errorf("nofile %+v, want hard clamped to the host's 20000, soft 1024", nofile)
	}
	spec = specFor(t, &guest.Definition{Name: "a", CPUs: 1, Memory: 64 << 20, Processes: 10}, 500)
	if nofile := spec.Process.Rlimits[0]; nofile.Hard != 500 || nofile.Soft != 500 {
		t.Errorf("nofile %+v, want soft and hard at the host's 500", nofile)
	}
}

func TestSpecOfAPrivilegedGuestStaysWithinTheHostsCapabilities(t *testing.T) {
	spec := specFor(t, &guest.Definition{Name: "p", CPUs: 1, Memory: 64 << 20, Processes: 10, Privileged: true}, 20000)
	for _, ns := range spec.Linux.Namespaces {
		if ns.Type == specs.UserNamespace {
			t.Error("a privileged guest got a user namespace")
		}
	}
	if len(spec.Linux.UIDMappings) != 0 {
		t.Error("a privileged guest got an id map")
	}
	for n, name := range capability.Names {
		held, _ := unix.PrctlRetInt(unix.PR_CAPBSET_READ, uintptr(n), 0, 0, 0)
		if got := slices.Contains(spec.Process.Capabilities.Bounding, name); got != (held == 1) {
			t.Errorf("%s: in spec %v, held by this process %v", name, got, held == 1)
		}
	}
}

// TestConfinementSaysWhatTheSpecGives keeps info's confinement true to the
// bundle the guest really runs.
func TestConfinementSaysWhatTheSpecGives(t *testing.T) {
	d := &Driver{}
	for _, privileged := range []bool{false, true} {
		def := &guest.Definition{Name: "c", CPUs: 1, Memory: 64 << 20, Processes: 100, Privileged: privileged}
		spec, c := specFor(t, def, 20000), d.Confinement(def)
		if !slices.Equal(c.Capabilities, spec.Process.Capabilities.Bounding) {
			t.Errorf("privileged %v: confinement capabilities %q, spec %q", privileged, c.Capabilities, spec.Process.Capabilities.Bounding)
		}
		var ns []string
		for _, n := range spec.Linux.Namespaces {
			ns = append(ns, string(n.Type))
		}
		if !slices.Equal(c.Namespaces, ns) {
			t.Errorf("privileged %v: confinement namespaces %q, spec %q", privileged, c.Namespaces, ns)
		}
		if c.NoNewPrivileges != spec.Process.NoNewPrivileges || (c.Seccomp == SeccompProfile) != (spec.Linux.Seccomp != nil) {
			t.Errorf("privileged %v: confinement %+v, spec no_new_privs %v seccomp %v", privileged, c, spec.Process.NoNewPrivileges, spec.Linux.Seccomp != nil)
		}
		if !privileged && (slices.Contains(c.Capabilities, "CAP_SYS_ADMIN") || !slices.Contains(c.Namespaces, "cgroup")) {
			t.Errorf("an unprivileged guest's confinement: %+v", c)
		}
	}
}

// TestNestingAndCapabilitiesShapeTheSpec: nesting adds CAP_SYS_ADMIN and
// the system calls moby's profile opens with it (mount, unshare); an
// explicit list replaces the default; the confinement info follows.
func TestNestingAndCapabilitiesShapeTheSpec(t *testing.T) {
	allows := func(spec *specs.Spec, call string) bool {
		for _, rule := range spec.Linux.Seccomp.Syscalls {
			if rule.Action == specs.ActAllow && len(rule.Args) == 0 && slices.Contains(rule.Names, call) {
				return true
			}
		}
		return false
	}
	plain := &guest.Definition{Name: "c", CPUs: 1, Memory: 64 << 20, Processes: 100}
	nested := plain.Clone()
	nested.Security.Nesting = true
	listed := plain.Clone()
	listed.Security.Capabilities = []string{"CAP_CHOWN", "CAP_SYS_PTRACE"}
	for _, c := range []struct {
		def        *guest.Definition
		caps       []string
		mountAllow bool
	}{
		{plain, capability.Default(), false},
		{nested, append(capability.Default(), capability.SysAdmin), true},
		{listed, []string{"CAP_CHOWN", "CAP_SYS_PTRACE"}, false},
	} {
		spec := specFor(t, c.def, 20000)
		if got := spec.Process.Capabilities.Bounding; !slices.Equal(got, c.caps) {
			t.Errorf("nesting %v, capabilities %v: spec holds %v, want %v", c.def.Security.Nesting, c.def.Security.Capabilities, got, c.caps)
		}
		if got := (&Driver{}).Confinement(c.def).Capabilities; !slices.Equal(got, c.caps) {
			t.Errorf("confinement says %v, want %v", got, c.caps)
		}
		if allows(spec, "mount") != c.mountAllow || allows(spec, "add_key") {
			t.Errorf("nesting %v: seccomp allows mount %v (want %v), add_key %v (want false)", c.def.Security.Nesting, allows(spec, "mount"), c.mountAllow, allows(spec, "add_key"))
		}
		if !spec.Process.NoNewPrivileges {
			t.Error("no_new_privs off")
		}
	}
}

// A guest with no network tells its template's DHCP launcher so, which
// then sleeps instead of forking twice every 50 ms for 10 s watching for
// an eth0 that does not come; one with a network says nothing.
func TestSpecSaysWhenTheGuestHasNoNetwork(t *testing.T) {
	alone := specFor(t, &guest.Definition{Name: "alone", CPUs: 1, Memory: 64 << 20}, 20000)
	if !slices.Contains(alone.Process.Env, guestnet.NoNetworkEnv) {
		t.Errorf("env of a guest with no network %v lacks %s", alone.Process.Env, guestnet.NoNetworkEnv)
	}
	joined := specFor(t, &guest.Definition{Name: "joined", CPUs: 1, Memory: 64 << 20, Networks: []string{"polyvisor0"}}, 20000)
	if slices.Contains(joined.Process.Env, guestnet.NoNetworkEnv) {
		t.Errorf("env of a guest on a network %v has %s", joined.Process.Env, guestnet.NoNetworkEnv)
	}
	if slices.Contains(defaultEnv, guestnet.NoNetworkEnv) {
		t.Error("building a spec changed the shared default environment")
	}
}

func TestSpecOfAChrootJail(t *testing.T) {
	def := &guest.Definition{Name: "jail", Type: guest.TypeContainer, CPUs: 1, Memory: 64 << 20, Processes: 40,
		Security: guest.Security{IDMap: "isolated", IDMapBase: 1065536, Isolation: guest.IsolationChroot}}
	spec := specFor(t, def, 20000)
	if len(spec.Linux.Namespaces) != 1 || spec.Linux.Namespaces[0].Type != specs.MountNamespace {
		t.Errorf("a jail's namespaces %v, want the mount one alone", spec.Linux.Namespaces)
	}
	if len(spec.Linux.UIDMappings)+len(spec.Linux.GIDMappings) != 0 {
		t.Errorf("a jail has id maps %v %v, but no user namespace", spec.Linux.UIDMappings, spec.Linux.GIDMappings)
	}
	if u := spec.Process.User; u.UID != 1065536 || u.GID != 1065536 {
		t.Errorf("a jail's init runs as %d:%d, want its range's first host id", u.UID, u.GID)
	}
	if spec.Hostname != "" {
		t.Errorf("a jail sets hostname %q without a UTS namespace of its own", spec.Hostname)
	}
	if c := spec.Process.Capabilities; len(c.Bounding)+len(c.Effective)+len(c.Permitted) != 0 {
		t.Errorf("a jail's capabilities: %+v", c)
	}
	if !spec.Process.NoNewPrivileges || spec.Linux.Seccomp == nil {
		t.Error("a jail runs without no_new_privs or seccomp")
	}
	if *spec.Linux.Resources.Pids.Limit != 40 || *spec.Linux.Resources.Memory.Limit != 64<<20 {
		t.Error("a jail's limits are not in its spec")
	}
	c := (&Driver{}).Confinement(def)
	if c.Isolation != guest.IsolationChroot || len(c.NotIsolated) == 0 || c.User == "" {
		t.Errorf("a jail's confinement does not say what it shares: %+v", c)
	}
}
