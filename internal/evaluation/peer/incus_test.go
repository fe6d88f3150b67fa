package peer

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/polyvisor/polyvisor/internal/hostreq"
	"github.com/polyvisor/polyvisor/internal/template"
)

// busyboxTar builds polyvisor's busybox tree from the host's static
// busybox and returns it as a tar owned by root, as bench's Env.RootTar is.
func busyboxTar(t *testing.T) string {
	t.Helper()
	tree := filepath.Join(t.TempDir(), "rootfs")
	if err := os.Mkdir(tree, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := template.BuildBusybox(context.Background(), tree, nil); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "rootfs.tar")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tw := tar.NewWriter(f)
	if err := tw.AddFS(os.DirFS(tree)); err != nil { // links too: the applets
		t.Fatal(err)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

// requireIncus skips where make deps has not installed the Incus peer.
func requireIncus(t *testing.T) {
	t.Helper()
	requireRoot(t)
	if err := Installed("incus"); err != nil {
		t.Skipf("the Incus peer is not installed here: %v", err)
	}
}

// incusEnvDir is a fresh dir as bench makes it (in /var/tmp, mode 0700),
// where t.TempDir's parent is not searchable by the guests.
func incusEnvDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("/var/tmp", "pv-incus-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// linksNamed lists the host's network links whose name holds word.
func linksNamed(t *testing.T, word string) []string {
	t.Helper()
	ifaces, err := net.Interfaces()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, i := range ifaces {
		if strings.Contains(i.Name, word) {
			names = append(names, i.Name)
		}
	}
	return names
}

// processesMentioning lists the live processes whose command line holds s.
func processesMentioning(s string) []string {
	cmdlines, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	var found []string
	for _, p := range cmdlines {
		data, err := os.ReadFile(p)
		if err == nil && bytes.Contains(data, []byte(s)) {
			found = append(found, filepath.Base(filepath.Dir(p))+": "+string(bytes.ReplaceAll(data, []byte{0}, []byte{' '})))
		}
	}
	return found
}

// memoryLimit is the memory limit of pid's cgroup (v1 or v2), in bytes.
func memoryLimit(t *testing.T, pid int) int64 {
	t.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		t.Fatal(err)
	}
	file := ""
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.SplitN(line, ":", 3)
		if len(f) != 3 {
			continue
		}
		if slices.Contains(strings.Split(f[1], ","), "memory") {
			file = filepath.Join("/sys/fs/cgroup/memory", f[2], "memory.limit_in_bytes")
			break
		}
		if f[0] == "0" {
			file = filepath.Join("/sys/fs/cgroup", f[2], "memory.max")
		}
	}
	limit, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.ParseInt(strings.TrimSpace(string(limit)), 10, 64)
	if err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	return n
}

// TestIncusManager drives a private incusd through a guest's life on the
// busybox tree and checks that Close leaves nothing of it on the host. The
// log gives each step's time and the idle guest's PSS.
func TestIncusManager(t *testing.T) {
	requireIncus(t)
	ctx := context.Background()
	_, homeErr := os.Stat("/root/.config/incus")
	varLib, _ := os.ReadDir("/var/lib/incus")
	env := Env{Dir: incusEnvDir(t), RootTar: busyboxTar(t), CPUs: runtime.NumCPU(), MemoryMiB: 256}
	mgr, err := New("incus")
	if err != nil {
		t.Fatal(err)
	}
	m := mgr.(*Incus)
	closed := false
	t.Cleanup(func() {
		if !closed {
			m.Close(ctx)
		}
	})
	step := func(name string, f func() error) {
		t.Helper()
		began := time.Now()
		err := f()
		t.Logf("incus %s: %s", name, time.Since(began).Round(time.Millisecond))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
	}
	id := fmt.Sprintf("pv-incus-test-%d", os.Getpid())

	step("Setup", func() error { return m.Setup(ctx, env) })
	daemon := m.daemon.cmd.Process.Pid
	t.Logf("incusd on VMs: %q; bench says: %s", m.VMWarning(), IncusVMReason())
	if !strings.Contains(IncusVMReason(), "incus-base") {
		t.Errorf("IncusVMReason() = %q, want it to name the package installed", IncusVMReason())
	}
	if _, err := os.Stat("/dev/kvm"); err != nil && !strings.Contains(m.VMWarning(), "KVM") {
		t.Errorf("incusd's VM warning is %q on a host without /dev/kvm, want its word on KVM", m.VMWarning())
	}

	// A name Incus refuses fails with its own words, and leaves nothing.
	if err := m.Create(ctx, "bad_name"); err == nil || !strings.Contains(err.Error(), "Error: ") {
		t.Errorf("Create(bad_name) = %v, want incus's own error line", err)
	}

	step("Create", func() error { return m.Create(ctx, id) })
	step("Start", func() error { return m.Start(ctx, id) })

	var stdout, stderr bytes.Buffer
	code, err := m.Exec(ctx, id, []string{"echo", "hi"}, nil, &stdout, &stderr)
	if err != nil || code != 0 || stdout.String() != "hi\n" {
		t.Errorf("exec echo hi: code %d, err %v, stdout %q, stderr %q", code, err, stdout.String(), stderr.String())
	}
	stdout.Reset()
	code, err = m.Exec(ctx, id, []string{"sh", "-c", "cat; exit 3"}, strings.NewReader("from stdin\n"), &stdout, &stderr)
	if err != nil || code != 3 || stdout.String() != "from stdin\n" {
		t.Errorf("exec with stdin: code %d (want 3), err %v, stdout %q, stderr %q", code, err, stdout.String(), stderr.String())
	}

	pids, err := m.PIDs(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if len(pids) < 2 {
		t.Fatalf("PIDs = %v, want the monitor and the guest's init at least", pids)
	}
	// The first two are the monitor and init; the tree's DHCP launcher
	// comes and goes at first (with no eth0 it polls for ~10 s, then
	// sleeps), so later ones may already have ended.
	for _, pid := range pids[:2] {
		if !alive(pid) {
			t.Errorf("guest process %d is not alive", pid)
		}
	}
	if cmd, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pids[0])); !strings.HasPrefix(string(cmd), "[lxc monitor] ") {
		t.Errorf("the first pid %d is %q, want the [lxc monitor]", pids[0], cmd)
	}
	uidMap, _ := os.ReadFile(fmt.Sprintf("/proc/%d/uid_map", pids[1]))
	if f := strings.Fields(string(uidMap)); len(f) != 3 || f[0] != "0" || f[1] == "0" {
		t.Errorf("the guest's uid map is %q, want root mapped to an unprivileged host uid", uidMap)
	}
	if limit := memoryLimit(t, pids[1]); limit != int64(env.MemoryMiB)<<20 {
		t.Errorf("the guest's memory limit is %d bytes, want Env.MemoryMiB %d MiB", limit, env.MemoryMiB)
	}
	// Idle: the same processes a second apart (the launcher settled).
	for deadline := time.Now().Add(40 * time.Second); time.Now().Before(deadline); {
		time.Sleep(time.Second)
		again, err := m.PIDs(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if slices.Equal(again, pids) {
			break
		}
		pids = again
	}
	var each []string
	for _, pid := range pids {
		comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
		each = append(each, fmt.Sprintf("%d %s %d KiB", pid, bytes.TrimSpace(comm), pssKiB(t, []int{pid})))
	}
	t.Logf("incus idle guest: PSS %d KiB in %d processes (%s); uid map %s", pssKiB(t, pids), len(pids), strings.Join(each, ", "), strings.Join(strings.Fields(string(uidMap)), " "))

	step("Stop", func() error { return m.Stop(ctx, id) })
	// Every guest process is gone; the monitor may take a moment more
	// to exit after incus stop returns.
	for _, pid := range pids[1:] {
		if alive(pid) {
			t.Errorf("guest process %d outlived Stop", pid)
		}
	}
	for deadline := time.Now().Add(5 * time.Second); alive(pids[0]) && time.Now().Before(deadline); {
		time.Sleep(50 * time.Millisecond)
	}
	if alive(pids[0]) {
		t.Errorf("the guest's monitor %d outlived Stop by 5 s", pids[0])
	}
	step("Delete", func() error { return m.Delete(ctx, id) })
	if left := incusCgroups(id); len(left) > 0 {
		t.Errorf("cgroups left after Delete: %v", left)
	}
	// Close also removes what is still there: a second guest, running.
	second := id + "-2"
	step("Create (second, left running)", func() error { return m.Create(ctx, second) })
	step("Start (second)", func() error { return m.Start(ctx, second) })
	secondPIDs, err := m.PIDs(ctx, second)
	if err != nil || len(secondPIDs) < 2 {
		t.Fatalf("PIDs(second) = %v, %v", secondPIDs, err)
	}
	step("Close", func() error { closed = true; return m.Close(ctx) })

	if alive(daemon) {
		t.Errorf("incusd (pid %d) outlived Close", daemon)
	}
	// Its monitor and init (the launcher's short-lived children may have
	// ended, and their pids been reused, meanwhile).
	for _, pid := range secondPIDs[:2] {
		if alive(pid) {
			t.Errorf("process %d of the guest left running outlived Close", pid)
		}
	}
	if left := processesMentioning(env.Dir); len(left) > 0 {
		t.Errorf("processes left: %q", left)
	}
	if mounted, _ := os.ReadFile("/proc/self/mountinfo"); bytes.Contains(mounted, []byte(env.Dir)) {
		t.Errorf("mounts left under %s", env.Dir)
	}
	for _, g := range []string{id, second} {
		if left := incusCgroups(g); len(left) > 0 {
			t.Errorf("cgroups left: %v", left)
		}
	}
	if _, err := os.Stat(env.Dir); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Env.Dir is left: %v", err)
	}
	if links := linksNamed(t, "incus"); len(links) > 0 {
		t.Errorf("links left: %v", links)
	}
	if _, err := os.Stat("/root/.config/incus"); errors.Is(homeErr, fs.ErrNotExist) && !errors.Is(err, fs.ErrNotExist) {
		t.Error("the incus CLI wrote root's ~/.config/incus: its config belongs under Env.Dir")
	}
	if after, _ := os.ReadDir("/var/lib/incus"); len(after) != len(varLib) {
		t.Errorf("/var/lib/incus changed: %d entries, %d before", len(after), len(varLib))
	}
}

// TestIncusSetupFailsInIncusWordsAndLeavesNothing gives Setup a tree
// incus cannot import: the error carries incus's own line, and Close still
// stops incusd and removes everything.
func TestIncusSetupFailsInIncusWordsAndLeavesNothing(t *testing.T) {
	requireIncus(t)
	ctx := context.Background()
	bad := filepath.Join(t.TempDir(), "rootfs.tar")
	if err := os.WriteFile(bad, []byte("not a tar"), 0o600); err != nil {
		t.Fatal(err)
	}
	env := Env{Dir: incusEnvDir(t), RootTar: bad, CPUs: 1, MemoryMiB: 64}
	m := NewIncus()
	err := m.Setup(ctx, env)
	if err == nil {
		m.Close(ctx)
		t.Fatal("Setup imported a file that is not a tar")
	}
	t.Logf("Setup: %v", err)
	if !strings.Contains(err.Error(), "image import") || !strings.Contains(err.Error(), "Error: ") {
		t.Errorf("Setup's error %q does not carry incus's own line", err)
	}
	daemon := m.daemon.cmd.Process.Pid
	if err := m.Close(ctx); err != nil {
		t.Errorf("Close after a failed Setup: %v", err)
	}
	if alive(daemon) {
		t.Errorf("incusd (pid %d) outlived Close", daemon)
	}
	if mounted, _ := os.ReadFile("/proc/self/mountinfo"); bytes.Contains(mounted, []byte(env.Dir)) {
		t.Errorf("mounts left under %s", env.Dir)
	}
	if _, err := os.Stat(env.Dir); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Env.Dir is left: %v", err)
	}
}

// An incusd that ends before it is ready is reported in its own last
// words, not as a timeout: here its INCUS_DIR is a file.
func TestIncusdEndingEarlyIsReportedInItsWords(t *testing.T) {
	requireIncus(t)
	dir := t.TempDir()
	m := &Incus{env: Env{Dir: dir}, guests: map[string]bool{}}
	m.bin, _ = hostreq.Lookup("incus")
	if err := os.WriteFile(m.stateDir(), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	var err error
	m.daemon, err = startIncusd(hostreq.IncusDaemon, filepath.Join(dir, "incusd.log"), m.environ())
	if err != nil {
		t.Fatal(err)
	}
	err = m.waitReady(context.Background())
	t.Logf("waitReady: %v", err)
	if err == nil || !strings.Contains(err.Error(), "incusd exited") || strings.Contains(err.Error(), "logged nothing") {
		t.Errorf("waitReady = %v, want incusd's exit and its last line", err)
	}
	if err := m.Close(context.Background()); err != nil {
		t.Errorf("Close: %v", err)
	}
}

// A dir the guests' unprivileged root cannot reach is refused at Setup,
// naming the parent and the fix, instead of failing at the first start.
func TestIncusEnvDirMustBeSearchableByGuests(t *testing.T) {
	parent := incusEnvDir(t) // in /var/tmp, 0700
	dir := filepath.Join(parent, "peer")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	err := searchableByGuests(dir)
	if err == nil || !strings.Contains(err.Error(), parent+" (mode 0700)") || !strings.Contains(err.Error(), "chmod o+x "+parent) {
		t.Errorf("searchableByGuests under a 0700 parent = %v, want the parent named with its fix", err)
	}
	if err := os.Chmod(parent, 0o711); err != nil {
		t.Fatal(err)
	}
	if err := searchableByGuests(dir); err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(dir); fi.Mode().Perm() != 0o711 {
		t.Errorf("the env dir is %04o, want 0711", fi.Mode().Perm())
	}
}
