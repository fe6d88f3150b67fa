package peer

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/polyvisor/polyvisor/internal/exporter"
	"github.com/polyvisor/polyvisor/internal/idmap"
	"github.com/polyvisor/polyvisor/internal/template"
)

// testEnv builds the busybox tree bench gives a peer: RootTar owned by
// root, RootFS shifted to the shared id map, and a fresh Dir. Every
// directory down to them is searchable, as the container's unprivileged
// root needs.
func testEnv(t *testing.T) Env {
	t.Helper()
	ctx := context.Background()
	base := t.TempDir()
	for _, d := range []string{filepath.Dir(base), base} {
		if err := os.Chmod(d, 0o711); err != nil {
			t.Fatal(err)
		}
	}
	tree := filepath.Join(base, "tree")
	if err := os.Mkdir(tree, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := template.BuildBusybox(ctx, tree, nil); err != nil {
		t.Fatal(err)
	}
	env := Env{
		// Long, as bench's may be: podman refuses a runroot over 50
		// characters, which its Manager works around.
		Dir:       filepath.Join(base, "state-of-the-peer-under-test"),
		RootTar:   filepath.Join(base, "root.tar"),
		RootFS:    filepath.Join(base, "rootfs"),
		CPUs:      runtime.NumCPU(),
		MemoryMiB: 256,
	}
	if err := exporter.Tree(ctx, tree, env.RootTar, nil, func(string, int64, int64) {}); err != nil {
		t.Fatal(err)
	}
	if err := idmap.CopyTree(ctx, tree, env.RootFS, idmap.ShiftUp(idmap.Default())); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(env.Dir, 0o700); err != nil {
		t.Fatal(err)
	}
	return env
}

// hostState is what a peer could leave behind on the host, read before
// and after it runs.
type hostState struct {
	links   []string // network interfaces
	cgroups []string // top-level cgroups of every hierarchy
	paths   map[string]bool
}

// watchedPaths are the peers' host-wide defaults, which a private store
// must leave alone.
var watchedPaths = []string{"/var/lib/containers", "/dev/shm/libpod_lock", "/etc/containers/networks", "/run/libpod", "/run/containers", "/var/lib/lxc", "/run/lxc"}

func readHostState(t *testing.T) hostState {
	t.Helper()
	var s hostState
	entries, _ := os.ReadDir("/sys/class/net")
	for _, e := range entries {
		s.links = append(s.links, e.Name())
	}
	hier, _ := filepath.Glob("/sys/fs/cgroup/*/*")
	for _, h := range hier {
		if fi, err := os.Stat(h); err == nil && fi.IsDir() {
			s.cgroups = append(s.cgroups, h)
		}
	}
	s.paths = map[string]bool{}
	for _, p := range watchedPaths {
		_, err := os.Lstat(p)
		s.paths[p] = err == nil
	}
	return s
}

// checkNothingLeft fails the test for anything the peer made that is still
// there: processes (seen ones, and any naming its dir), mounts, cgroups
// (its own, and host-wide ones naming a guest or the peer), network links,
// its files, and host-wide defaults it should not have touched.
func checkNothingLeft(t *testing.T, before hostState, env Env, pids []int, guests []string, cgroupName string) {
	t.Helper()
	for _, pid := range pids {
		if alive(pid) {
			t.Errorf("process %d (%s) is still alive", pid, cmdline(pid))
		}
	}
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		data, _ := os.ReadFile(p)
		if bytes.Contains(data, []byte(env.Dir)) {
			t.Errorf("process %s is left: %q", filepath.Base(filepath.Dir(p)), bytes.ReplaceAll(data, []byte{0}, []byte{' '}))
		}
	}
	mounts, _ := os.ReadFile("/proc/self/mountinfo")
	for _, line := range strings.Split(string(mounts), "\n") {
		if strings.Contains(line, env.Dir) {
			t.Errorf("mount left: %s", line)
		}
	}
	if dirs := cgroupDirs(cgroupName); len(dirs) > 0 {
		t.Errorf("the peer's cgroups are left: %v", dirs)
	}
	after := readHostState(t)
	for _, cg := range after.cgroups {
		if slices.Contains(before.cgroups, cg) {
			continue
		}
		name := filepath.Base(cg)
		for _, g := range guests {
			if strings.Contains(name, g) {
				t.Errorf("cgroup left: %s", cg)
			}
		}
		if name == "libpod_parent" || strings.HasPrefix(name, "polyvisor-peer-") {
			t.Errorf("cgroup left: %s", cg)
		}
	}
	for _, l := range after.links {
		if !slices.Contains(before.links, l) && (strings.Contains(l, "podman") || strings.Contains(l, "lxc") || strings.HasPrefix(l, "cni")) {
			t.Errorf("network link left: %s", l)
		}
	}
	for p, was := range before.paths {
		if !was && after.paths[p] {
			t.Errorf("%s was made outside the peer's dir", p)
		}
	}
	if _, err := os.Lstat(lxcLocks + filepath.Join(env.Dir, "lxc")); err == nil {
		t.Error("LXC's lock files are left")
	}
	if _, err := os.Lstat("/run/polyvisor-peer-podman-" + dirTag(env.Dir)); err == nil {
		t.Error("podman's short runroot link is left")
	}
	entries, err := os.ReadDir(env.Dir)
	if err != nil {
		t.Errorf("the peer's dir: %v", err)
	}
	for _, e := range entries {
		t.Errorf("left in the peer's dir: %s", e.Name())
	}
}

func alive(pid int) bool {
	err := syscall.Kill(pid, 0)
	if err != nil {
		return false
	}
	// A zombie is gone but for its parent's wait.
	data, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if i := bytes.LastIndexByte(data, ')'); i >= 0 && i+2 < len(data) {
		return data[i+2] != 'Z'
	}
	return true
}

func cmdline(pid int) string {
	data, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	return string(bytes.ReplaceAll(bytes.TrimRight(data, "\x00"), []byte{0}, []byte{' '}))
}

// pssKiB sums the proportional set size of pids.
func pssKiB(t *testing.T, pids []int) int64 {
	t.Helper()
	var total int64
	for _, pid := range pids {
		data, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
		if err != nil {
			t.Logf("read the PSS of %d: %v", pid, err)
			continue
		}
		for _, line := range strings.Split(string(data), "\n") {
			if rest, ok := strings.CutPrefix(line, "Pss:"); ok {
				kib, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
				total += kib
			}
		}
	}
	return total
}

// steps times each step of a guest's life over several guests.
type steps map[string][]time.Duration

func (s steps) time(t *testing.T, step string, f func() error) {
	t.Helper()
	began := time.Now()
	if err := f(); err != nil {
		t.Fatalf("%s: %v", step, err)
	}
	s[step] = append(s[step], time.Since(began))
}

func (s steps) log(t *testing.T, peer string) {
	for _, step := range []string{"setup", "create", "start", "exec", "stop", "delete", "close"} {
		d := slices.Clone(s[step])
		if len(d) == 0 {
			continue
		}
		slices.Sort(d)
		t.Logf("%s %s: median %v of %d (min %v, max %v)", peer, step, d[len(d)/2].Round(100*time.Microsecond), len(d), d[0].Round(100*time.Microsecond), d[len(d)-1].Round(100*time.Microsecond))
	}
}

// runLifecycle drives manager m through every step bench takes, checking
// each, with rounds guests made and removed one after the other for the
// steps' timings, and then checks that Close leaves nothing.
func runLifecycle(t *testing.T, name string, m Manager, env Env, cgroupName string, monitorWord string) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	before := readHostState(t)
	timing := steps{}
	closed := false
	t.Cleanup(func() {
		if !closed {
			m.Close(context.Background())
		}
	})
	timing.time(t, "setup", func() error { return m.Setup(ctx, env) })
	// A Start that fails says why in the peer's words, naming the guest.
	missing := fmt.Sprintf("pvpeer-%d-never-created", os.Getpid())
	if err := m.Start(ctx, missing); err == nil || !strings.Contains(err.Error(), missing) {
		t.Errorf("Start of a guest never created: %v, want an error naming it", err)
	} else {
		t.Logf("Start of a guest never created: %v", err)
	}
	const rounds = 3
	var seen []int
	var guests []string
	for round := range rounds {
		id := fmt.Sprintf("pvpeer-%d-%d", os.Getpid(), round)
		guests = append(guests, id)
		timing.time(t, "create", func() error { return m.Create(ctx, id) })
		timing.time(t, "start", func() error { return m.Start(ctx, id) })
		var out, errOut bytes.Buffer
		var code int
		timing.time(t, "exec", func() (err error) {
			code, err = m.Exec(ctx, id, []string{"echo", "hi"}, nil, &out, &errOut)
			return err
		})
		if code != 0 || out.String() != "hi\n" {
			t.Errorf("exec echo hi: exit %d, stdout %q, stderr %q", code, out.String(), errOut.String())
		}
		if round == 0 {
			checkExec(t, m, id)
			// Idle: busybox init, its shell on the console, and the DHCP
			// launcher, which finds no eth0 for 10 s and then sleeps.
			time.Sleep(11 * time.Second)
			pids, err := m.PIDs(ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			if len(pids) < 2 {
				t.Errorf("PIDs = %v, want the monitor and the guest's init at least", pids)
			}
			// The monitor and init must live; the others may be a
			// short-lived child (the DHCP launcher's sleep) that ended
			// since.
			for _, pid := range pids[:min(2, len(pids))] {
				if !alive(pid) {
					t.Errorf("PID %d is not alive", pid)
				}
			}
			if c := cmdline(pids[0]); !strings.Contains(c, monitorWord) {
				t.Errorf("the first PID, %d, is %q, want the monitor (%s)", pids[0], c, monitorWord)
			}
			t.Logf("%s idle PSS of one guest: %d KiB over %d processes (monitor %d KiB)", name, pssKiB(t, pids), len(pids), pssKiB(t, pids[:1]))
			seen = append(seen, pids...)
		}
		timing.time(t, "stop", func() error { return m.Stop(ctx, id) })
		if round == 0 {
			for _, pid := range seen[1:] {
				if alive(pid) {
					t.Errorf("guest process %d (%s) outlived Stop", pid, cmdline(pid))
				}
			}
			// An exec in a stopped guest is the peer's failure, not an
			// exit code of the command's.
			if code, err := m.Exec(ctx, id, []string{"true"}, nil, nil, nil); err == nil {
				t.Errorf("exec in a stopped guest: exit %d and no error", code)
			} else {
				t.Logf("exec in a stopped guest: %v", err)
			}
		}
		timing.time(t, "delete", func() error { return m.Delete(ctx, id) })
	}
	// A guest left running is Close's to remove.
	id := fmt.Sprintf("pvpeer-%d-left", os.Getpid())
	guests = append(guests, id)
	if err := m.Create(ctx, id); err != nil {
		t.Fatal(err)
	}
	if err := m.Start(ctx, id); err != nil {
		t.Fatal(err)
	}
	pids, err := m.PIDs(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	seen = append(seen, pids...)
	closed = true
	timing.time(t, "close", func() error { return m.Close(ctx) })
	timing.log(t, name)
	checkNothingLeft(t, before, env, seen, guests, cgroupName)
}
