package peer

import (
	"bytes"
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/polyvisor/polyvisor/internal/cgroup"
	"github.com/polyvisor/polyvisor/internal/idmap"
	"github.com/polyvisor/polyvisor/internal/procutil"
	"github.com/polyvisor/polyvisor/internal/template"
)

// busyboxRootFS makes the busybox tree polyvisor's containers run, owned
// by the shared id map's base (Env.RootFS), in a directory the mapped root
// can traverse.
func busyboxRootFS(t *testing.T) string {
	t.Helper()
	rootfs := filepath.Join(searchableTempDir(t), "rootfs")
	if err := os.Mkdir(rootfs, 0o755); err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	if err := template.BuildBusybox(ctx, rootfs, nil); err != nil {
		t.Fatal(err)
	}
	if err := idmap.ShiftTree(ctx, rootfs, idmap.ShiftUp(idmap.Default())); err != nil {
		t.Fatal(err)
	}
	return rootfs
}

// searchableTempDir is t.TempDir made searchable (0711) by a container's
// unprivileged root, up from the test's own temp root.
func searchableTempDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for _, d := range []string{filepath.Dir(dir), dir} {
		if err := os.Chmod(d, 0o711); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// polyvisorLikeSpec has the shape of the spec polyvisor gives a busybox
// container: busybox init on a terminal, every namespace with the user
// one, the shared id map, polyvisor's mounts and limits. Its paths are
// the guest's, which the peer replaces.
func polyvisorLikeSpec() *specs.Spec {
	m := idmap.Default()
	ids := []specs.LinuxIDMapping{{ContainerID: 0, HostID: m.HostBase, Size: m.Size}}
	caps := []string{"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER", "CAP_KILL", "CAP_SETGID", "CAP_SETUID", "CAP_SYS_CHROOT"}
	memory, quota, period, pids := int64(256<<20), int64(cgroup.CPUPeriod), uint64(cgroup.CPUPeriod), int64(512)
	return &specs.Spec{
		Version:  "1.0.2",
		Hostname: "g",
		Root:     &specs.Root{Path: "/var/lib/polyvisor/guests/g/rootfs"},
		Process: &specs.Process{
			Terminal: true, Args: []string{"/sbin/init"}, Cwd: "/",
			Env:          []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"},
			Capabilities: &specs.LinuxCapabilities{Bounding: caps, Effective: caps, Permitted: caps},
			Rlimits:      []specs.POSIXRlimit{{Type: "RLIMIT_NOFILE", Hard: 1024, Soft: 1024}},
		},
		Mounts: []specs.Mount{
			{Destination: "/proc", Type: "proc", Source: "proc", Options: []string{"nosuid", "noexec", "nodev"}},
			{Destination: "/dev", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "strictatime", "mode=755", "size=65536k"}},
			{Destination: "/dev/pts", Type: "devpts", Source: "devpts", Options: []string{"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"}},
			{Destination: "/sys", Type: "sysfs", Source: "sysfs", Options: []string{"nosuid", "noexec", "nodev", "ro"}},
			{Destination: "/run", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "nodev", "mode=755"}},
			{Destination: "/tmp", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "nodev", "mode=1777"}},
		},
		Linux: &specs.Linux{
			CgroupsPath: "/polyvisor/g",
			UIDMappings: ids, GIDMappings: ids,
			Namespaces: []specs.LinuxNamespace{
				{Type: specs.PIDNamespace}, {Type: specs.NetworkNamespace}, {Type: specs.IPCNamespace},
				{Type: specs.UTSNamespace}, {Type: specs.MountNamespace}, {Type: specs.UserNamespace}, {Type: specs.CgroupNamespace},
			},
			Resources: &specs.LinuxResources{
				Memory: &specs.LinuxMemory{Limit: &memory},
				CPU:    &specs.LinuxCPU{Quota: &quota, Period: &period},
				Pids:   &specs.LinuxPids{Limit: &pids},
			},
			MaskedPaths:   []string{"/proc/kcore", "/proc/keys", "/sys/firmware"},
			ReadonlyPaths: []string{"/proc/sys", "/proc/sysrq-trigger"},
		},
	}
}

// step runs one Manager step and logs how long it took.
func step(t *testing.T, name string, f func() error) {
	t.Helper()
	began := time.Now()
	err := f()
	t.Logf("%s: %v", name, time.Since(began).Round(100*time.Microsecond))
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
}

// checkExec runs the commands every peer's guest must run: output, exit
// codes and stdin.
func checkExec(t *testing.T, m Manager, id string) {
	t.Helper()
	ctx := t.Context()
	for _, c := range []struct {
		argv   []string
		stdin  string
		out    string
		stderr string
		code   int
	}{
		{argv: []string{"echo", "hi"}, out: "hi\n"},
		{argv: []string{"sh", "-c", "echo oops >&2; exit 3"}, stderr: "oops", code: 3},
		{argv: []string{"sh", "-c", "read a; read b; echo \"got $b $a\""}, stdin: "one\ntwo\n", out: "got two one\n"},
		{argv: []string{"wc", "-c"}, stdin: strings.Repeat("x", 300<<10), out: "307200\n"},
	} {
		var stdout, stderr bytes.Buffer
		var in io.Reader
		if c.stdin != "" {
			in = strings.NewReader(c.stdin)
		}
		began := time.Now()
		code, err := m.Exec(ctx, id, c.argv, in, &stdout, &stderr)
		t.Logf("exec %q: %v", c.argv, time.Since(began).Round(100*time.Microsecond))
		if err != nil {
			t.Fatalf("exec %q: %v", c.argv, err)
		}
		if code != c.code || strings.TrimSpace(stdout.String()) != strings.TrimSpace(c.out) || !strings.Contains(stderr.String(), c.stderr) {
			t.Errorf("exec %q: code %d, stdout %q, stderr %q; want %d, %q", c.argv, code, stdout.String(), stderr.String(), c.code, c.out)
		}
	}
}

// alivePIDs checks that the guest's PIDs are live processes and returns
// their identities, to check later that they are gone.
func alivePIDs(t *testing.T, m Manager, id string) []procutil.Identity {
	t.Helper()
	var pids []int
	step(t, "pids", func() (err error) { pids, err = m.PIDs(t.Context(), id); return err })
	if len(pids) == 0 {
		t.Fatal("PIDs of a running guest: none")
	}
	var ids []procutil.Identity
	for _, pid := range pids {
		p, err := procutil.Identify(pid)
		if err != nil || !p.Alive() {
			t.Errorf("PID %d of the running guest is not alive: %v", pid, err)
			continue
		}
		ids = append(ids, p)
	}
	t.Logf("pids of %s: %v", id, pids)
	return ids
}

// requireGone fails for each process of procs still alive.
func requireGone(t *testing.T, procs []procutil.Identity) {
	t.Helper()
	for _, p := range procs {
		// Reaped asynchronously by the host's init: give it a moment.
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		err := p.Wait(ctx)
		cancel()
		if err != nil {
			t.Errorf("process %d of the guest is still alive", p.PID)
		}
	}
}

// requireNoMountsUnder fails for each mount at or below dir.
func requireNoMountsUnder(t *testing.T, dir string) {
	t.Helper()
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) > 4 && (f[4] == dir || strings.HasPrefix(f[4], dir+"/")) {
			t.Errorf("still mounted: %s", f[4])
		}
	}
}

// requireEmptyDir fails unless dir is empty or gone.
func requireEmptyDir(t *testing.T, dir string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		t.Fatal(err)
	}
	for _, e := range entries {
		t.Errorf("left in %s: %s", dir, e.Name())
	}
}

// cgroupsOf lists the cgroup directories of path in every hierarchy.
func cgroupsOf(path string) []string {
	found, _ := filepath.Glob(filepath.Join(cgroup.Root, "*", path))
	if _, err := os.Stat(filepath.Join(cgroup.Root, path)); err == nil {
		found = append(found, filepath.Join(cgroup.Root, path))
	}
	return slices.Compact(found)
}
