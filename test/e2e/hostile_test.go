package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/polyvisor/polyvisor/internal/hostreq"
	"github.com/polyvisor/polyvisor/internal/layout"
	"github.com/polyvisor/polyvisor/internal/runc"
	"github.com/polyvisor/polyvisor/internal/testenv"
	"github.com/polyvisor/polyvisor/pkg/api"
)

// TestAFrozenContainerIsThawedWhenAdopted: a daemon that dies while a
// snapshot or copy holds a container frozen (between runc pause and runc
// resume) used to leave it frozen for good: shown running, but exec, stop
// and delete --force failed. The next daemon thaws it when it adopts it.
func TestAFrozenContainerIsThawedWhenAdopted(t *testing.T) {
	requireRoot(t)
	d := ownDaemon(t)
	d.Must(t, "launch", "busybox", "frozen")
	// The state such a crash leaves: the container paused, no daemon.
	rt := runc.New(hostreq.Need(t, "runc"), layout.New(d.StateDir).RuncRoot())
	if err := rt.Pause(context.Background(), "frozen"); err != nil {
		t.Fatal(err)
	}
	d.Kill()
	if err := d.Restart(); err != nil {
		t.Fatal(err)
	}
	if out, errOut, code := d.Run("exec", "frozen", "--", "echo", "thawed"); code != 0 || out != "thawed\n" {
		t.Fatalf("exec after the restart: code %d, %q %q", code, out, errOut)
	}
	if !strings.Contains(d.Log(), "thawed a container") {
		t.Errorf("the daemon's log does not say it thawed the guest:\n%s", d.Log())
	}
	d.Must(t, "stop", "frozen")
	d.Must(t, "delete", "frozen")
}

// TestExecIntoAVMWhoseAgentIsFrozenFailsInTime: exec into a VM whose agent
// stopped answering used to wait forever; it now fails within the agent
// deadline with one line that says where to look, and the daemon stays up.
func TestExecIntoAVMWhoseAgentIsFrozenFailsInTime(t *testing.T) {
	requireVMTemplates(t)
	d := env.main
	vm := launch(t, d, "busybox", "e2e-silent", "--type", "vm")
	// The agent freezes itself a moment after answering this exec.
	d.Must(t, "exec", vm.Name, "--", "sh", "-c", "(sleep 1; kill -STOP $(pidof polyvisor-agent)) </dev/null >/dev/null 2>&1 &")
	time.Sleep(3 * time.Second)
	began := time.Now()
	out, errOut, code := d.Run("exec", vm.Name, "--", "echo", "hello")
	took := time.Since(began)
	if code == 0 || out != "" {
		t.Fatalf("exec into a frozen agent: code %d, out %q, err %q", code, out, errOut)
	}
	want := "Error: exec in e2e-silent: the guest agent did not answer within 15s: is the guest booted? see 'polyvisor console e2e-silent --log'\n"
	if errOut != want {
		t.Errorf("exec's error:\n got %q\nwant %q", errOut, want)
	}
	if took > 40*time.Second {
		t.Errorf("exec took %s to give up", took)
	}
	if g := info(t, d, vm.Name); g.State != api.StateRunning {
		t.Errorf("the guest after the failed exec: %+v", g)
	}
	// The daemon still answers, and the guest can still be stopped.
	d.Must(t, "stop", vm.Name, "--force")
}

// TestAnUnprivilegedContainerIsConfined runs, as the root of a busybox
// guest, a program that tries what a hostile guest would (the keyring,
// io_uring, new namespaces, mounts, unmounting masked paths, module
// loading, sysrq, raw block devices, bpf, kexec, the host's processes,
// setns), and
// asserts each is denied: the guest runs under Docker's default
// capabilities (no CAP_SYS_ADMIN), moby's default seccomp profile,
// no_new_privs and its own cgroup namespace.
func TestAnUnprivilegedContainerIsConfined(t *testing.T) {
	requireRoot(t)
	d := env.main
	g := launch(t, d, "busybox", "e2e-confined")
	out := runEscape(t, d, g.Name)
	attempts := 0
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		attempts++
		if !strings.Contains(line, " denied ") {
			t.Errorf("a guest's root could: %s", line)
		}
	}
	if attempts < 17 {
		t.Errorf("the escape program made %d attempts, want 17:\n%s", attempts, out)
	}
	status := d.Must(t, "exec", g.Name, "--", "cat", "/proc/self/status")
	for _, want := range []string{"NoNewPrivs:\t1", "Seccomp:\t2"} {
		if !strings.Contains(status, want) {
			t.Errorf("/proc/self/status in the guest lacks %q:\n%s", want, status)
		}
	}
	// info says what the guest runs under.
	c := info(t, d, g.Name).Confinement
	if c == nil || c.Seccomp != "moby-default" || !c.NoNewPrivileges || slices.Contains(c.Capabilities, "CAP_SYS_ADMIN") || !slices.Contains(c.Namespaces, "cgroup") {
		t.Errorf("info's confinement: %+v", c)
	}
	if t.Failed() {
		t.Logf("the escape program's report:\n%s", out)
	}
}

// runEscape builds the escape program, runs it as the root of guest name
// and returns its report, a line an attempt.
func runEscape(t *testing.T, d *testenv.Daemon, name string) string {
	t.Helper()
	escape := filepath.Join(t.TempDir(), "escape")
	build := exec.Command(hostreq.Need(t, "go"), "build", "-o", escape, "./testdata/escape")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build the escape program: %v: %s", err, out)
	}
	program, err := os.ReadFile(escape)
	if err != nil {
		t.Fatal(err)
	}
	if _, errOut, code := d.RunInput(string(program), "exec", name, "--", "sh", "-c", "cat > /tmp/escape && chmod 755 /tmp/escape"); code != 0 {
		t.Fatalf("copy the escape program in: %s", errOut)
	}
	return d.Must(t, "exec", name, "--", "/tmp/escape")
}

// TestNestingOpensMountsAndNamespacesAlone: a guest launched with
// --nesting may mount and make namespaces inside its own user namespace,
// and nothing more: the keyring, io_uring, modules and sysrq stay denied.
// An explicit capability list replaces the default one.
func TestNestingOpensMountsAndNamespacesAlone(t *testing.T) {
	requireRoot(t)
	d := env.main
	g := launch(t, d, "busybox", "e2e-nested", "--nesting")
	report := map[string]string{}
	out := runEscape(t, d, g.Name)
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		name, result, _ := strings.Cut(line, " ")
		report[name] = result
	}
	for _, opened := range []string{"unshare_user", "unshare_mount"} {
		if report[opened] != "ALLOWED" {
			t.Errorf("%s in a nesting guest: %q, want ALLOWED", opened, report[opened])
		}
	}
	for _, closed := range []string{"add_key", "keyctl", "io_uring_setup", "finit_module", "sysrq_trigger"} {
		if !strings.HasPrefix(report[closed], "denied") {
			t.Errorf("%s in a nesting guest: %q, want denied", closed, report[closed])
		}
	}
	d.Must(t, "exec", g.Name, "--", "unshare", "-m", "sh", "-c", "mkdir -p /tmp/m && mount -t tmpfs none /tmp/m && touch /tmp/m/made")
	if c := info(t, d, g.Name).Confinement; c == nil || !slices.Contains(c.Capabilities, "CAP_SYS_ADMIN") {
		t.Errorf("info's confinement of a nesting guest: %+v", c)
	}

	// Without nesting the same mount is refused.
	plain := launch(t, d, "busybox", "e2e-plain", "--capabilities", "default,CAP_SYS_PTRACE,-CAP_NET_RAW")
	if _, _, code := d.Run("exec", plain.Name, "--", "unshare", "-m", "sh", "-c", "mkdir -p /tmp/m && mount -t tmpfs none /tmp/m"); code == 0 {
		t.Error("a guest without nesting mounted a tmpfs")
	}
	status := d.Must(t, "exec", plain.Name, "--", "cat", "/proc/self/status")
	capEff := ""
	for _, line := range strings.Split(status, "\n") {
		if v, ok := strings.CutPrefix(line, "CapEff:"); ok {
			capEff = strings.TrimSpace(v)
		}
	}
	mask, err := strconv.ParseUint(capEff, 16, 64)
	if err != nil {
		t.Fatalf("CapEff %q: %v", capEff, err)
	}
	const ptrace, netRaw = 19, 13
	if mask&(1<<ptrace) == 0 || mask&(1<<netRaw) != 0 {
		t.Errorf("CapEff %s: want CAP_SYS_PTRACE and not CAP_NET_RAW", capEff)
	}
	expectError(t, d, "capabilities: \"CAP_FLY\" is not a capability", "launch", "busybox", "e2e-x", "--capabilities", "CAP_FLY")
	expectError(t, d, "nesting and capabilities are for unprivileged containers", "launch", "busybox", "e2e-x", "--privileged", "--nesting")

	// config set switches nesting at the next start.
	d.Must(t, "stop", "--force", plain.Name)
	d.Must(t, "config", "set", plain.Name, "security.nesting=true")
	d.Must(t, "start", plain.Name)
	d.Must(t, "exec", plain.Name, "--", "unshare", "-m", "sh", "-c", "mkdir -p /tmp/m && mount -t tmpfs none /tmp/m")
}

// TestARunningGuestWithABrokenDefinitionKeepsRunning: a typo in a running
// guest's guest.yaml used to get the guest killed by the next daemon's
// sweep of orphans; it is listed as broken and left running instead.
func TestARunningGuestWithABrokenDefinitionKeepsRunning(t *testing.T) {
	requireRoot(t)
	d := ownDaemon(t)
	d.Must(t, "launch", "busybox", "typo")
	g := info(t, d, "typo")
	path := filepath.Join(layout.New(d.StateDir).GuestDir("typo"), "guest.yaml")
	good, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	d.Kill()
	if err := os.WriteFile(path, append(slices.Clone(good), "colour: blue\n"...), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := d.Restart(); err != nil {
		t.Fatal(err)
	}
	if !alive(g.PID) || !alive(g.MonitorPID) {
		t.Errorf("the guest whose definition broke was killed at the restart (init %d, monitor %d)", g.PID, g.MonitorPID)
	}
	// Fixed by hand, it is adopted again and can be removed.
	d.Kill()
	if err := os.WriteFile(path, good, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := d.Restart(); err != nil {
		t.Fatal(err)
	}
	if after := info(t, d, "typo"); after.State != api.StateRunning || after.PID != g.PID {
		t.Errorf("after the fix: %+v, want running with init %d", after, g.PID)
	}
	d.Must(t, "delete", "--force", "typo")
}

// TestHostUsersCannotReachAGuestsTree: a setuid program a guest makes is
// owned by the id map's root, which is every unprivileged guest's root; a
// plain host user who could reach it through the state dir would become
// that root. The guest's directory is open to its own root alone, and the
// merged tree is mounted nosuid.
func TestHostUsersCannotReachAGuestsTree(t *testing.T) {
	requireRoot(t)
	d := ownDaemon(t)
	d.Must(t, "launch", "busybox", "suid")
	d.Must(t, "exec", "suid", "--", "sh", "-c", "cp /bin/busybox /pv-suid && chmod 4755 /pv-suid")
	dir := layout.New(d.StateDir).GuestDir("suid")
	// As a plain host user (nobody), through every path to the program.
	asNobody := func(script string) (string, error) {
		cmd := exec.Command(hostreq.Need(t, "sh"), "-c", script)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	if out, err := asNobody("test -r /etc/os-release"); err != nil {
		t.Fatalf("nobody cannot even read the host's /etc/os-release: %v %s", err, out)
	}
	// The upper dir lives in the guest's disk quota image, itself mounted
	// nosuid,nodev.
	for _, path := range []string{filepath.Join(dir, "disks/layer/upper/pv-suid"), filepath.Join(dir, "rootfs/pv-suid")} {
		if _, err := os.Stat(path); err != nil {
			t.Fatalf("root cannot see %s: %v", path, err)
		}
		if out, err := asNobody("test -e " + path); err == nil {
			t.Errorf("a plain host user reaches %s %s", path, out)
		}
	}
	var fs syscall.Statfs_t
	if err := syscall.Statfs(filepath.Join(dir, "disks/layer"), &fs); err != nil || fs.Flags&0x2 == 0 || fs.Flags&0x4 == 0 {
		t.Errorf("the disk quota image's mount: flags %#x, %v; want nosuid (0x2) and nodev (0x4)", fs.Flags, err)
	}
	st, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	root := info(t, d, "suid").IDMap.HostGID
	if st.Mode().Perm() != 0o710 || st.Sys().(*syscall.Stat_t).Gid != root || root == 1000000 {
		t.Errorf("guest dir mode %04o gid %d, want 0710 and the group of the guest's own root %d (not the shared range's)", st.Mode().Perm(), st.Sys().(*syscall.Stat_t).Gid, root)
	}
	// A state dir opened up by hand is tightened at the next start.
	d.Kill()
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := d.Restart(); err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(dir); err != nil || st.Mode().Perm() != 0o710 || st.Sys().(*syscall.Stat_t).Gid != root {
		t.Errorf("after a restart the guest dir is %v (%v), want 0710 and group %d", st.Mode().Perm(), err, root)
	}
	if out := d.Must(t, "exec", "suid", "--", "echo", "still"); out != "still\n" {
		t.Errorf("exec after the restart: %q", out)
	}
}
