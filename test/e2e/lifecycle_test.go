package e2e

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/polyvisor/polyvisor/internal/cgroup"
	"github.com/polyvisor/polyvisor/internal/guest"
	"github.com/polyvisor/polyvisor/internal/hostreq"
	"github.com/polyvisor/polyvisor/internal/layout"
	"github.com/polyvisor/polyvisor/internal/procutil"
	"github.com/polyvisor/polyvisor/internal/testenv"
	"github.com/polyvisor/polyvisor/pkg/api"
)

// hostUID reads the real uid of a host process.
func hostUID(t *testing.T, pid int) int {
	t.Helper()
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, "Uid:"); ok {
			uid, _ := strconv.Atoi(strings.Fields(rest)[0])
			return uid
		}
	}
	t.Fatalf("no Uid line for pid %d", pid)
	return -1
}

// alive reports whether pid runs: a zombie has ended (this host's pid 1
// does not reap the orphans it inherits).
func alive(pid int) bool {
	id, err := procutil.Identify(pid)
	return err == nil && id.Alive()
}

// ownMonitor is g's monitor when it is g's alone (a VM's), 0 for a
// container: the supervisor that runs containers lives on after any one.
func ownMonitor(g api.Guest) int {
	if g.Type == guest.TypeContainer {
		return 0
	}
	return g.MonitorPID
}

func TestBusyboxAndDebianGuestsRun(t *testing.T) {
	requireRoot(t)
	d := env.main
	bb := launch(t, d, "busybox", "e2e-bb")
	deb := launch(t, d, "debian", "e2e-deb")
	for _, g := range []api.Guest{bb, deb} {
		if g.State != api.StateRunning || g.PID <= 0 || g.Class != "container" || g.Arch == "" {
			t.Errorf("%s: %+v, want a running container with a pid", g.Name, g)
		}
	}
	out := d.Must(t, "list")
	for _, want := range []string{"NAME", "e2e-bb", "e2e-deb", "RUNNING"} {
		if !strings.Contains(out, want) {
			t.Errorf("list lacks %q:\n%s", want, out)
		}
	}
	osRelease := d.Must(t, "exec", "e2e-deb", "--", "cat", "/etc/os-release")
	if !strings.Contains(osRelease, "Debian") || !strings.Contains(osRelease, "bookworm") {
		t.Errorf("Debian guest's os-release:\n%s", osRelease)
	}
	if h := d.Must(t, "exec", "e2e-bb", "--", "hostname"); strings.TrimSpace(h) != "e2e-bb" {
		t.Errorf("hostname inside = %q, want the guest's name", h)
	}
	if p := d.Must(t, "exec", "e2e-deb", "--", "cat", "/proc/1/comm"); strings.TrimSpace(p) != "init" {
		t.Errorf("pid 1 inside is %q, want init", p)
	}
}

func TestRootInsideIsUnprivilegedOnHost(t *testing.T) {
	requireRoot(t)
	d := env.main
	g := launch(t, d, "busybox", "e2e-userns")
	if uid := strings.TrimSpace(d.Must(t, "exec", g.Name, "--", "id", "-u")); uid != "0" {
		t.Errorf("id -u inside = %q, want 0", uid)
	}
	if uid := hostUID(t, g.PID); uid != int(g.IDMap.HostUID) || uid == 0 {
		t.Errorf("host sees init as uid %d, want %d (unprivileged)", uid, g.IDMap.HostUID)
	}
	// Root inside cannot touch what the host's root owns.
	if _, _, code := d.Run("exec", g.Name, "--", "sh", "-c", "echo x > /proc/sys/kernel/hostname"); code == 0 {
		t.Error("container root wrote a host sysctl")
	}
}

func TestPrivilegedGuestIsHostRoot(t *testing.T) {
	requireRoot(t)
	d := env.main
	g := launch(t, d, "busybox", "e2e-priv", "--privileged")
	if g.Rootfs != "copy" || g.IDMap != nil {
		t.Errorf("privileged guest: rootfs %s idmap %+v, want a copy and no id map", g.Rootfs, g.IDMap)
	}
	if uid := hostUID(t, g.PID); uid != 0 {
		t.Errorf("host sees privileged init as uid %d, want 0", uid)
	}
	if out := d.Must(t, "exec", g.Name, "--", "ls", "-ln", "/bin/busybox"); !strings.Contains(out, " 0 ") {
		t.Errorf("files of a privileged guest are not owned by root: %s", out)
	}
}

func TestMemoryHogIsKilledInsideTheGuest(t *testing.T) {
	requireRoot(t)
	d := env.main
	g := launch(t, d, "busybox", "e2e-oom", "--memory", "64MiB")
	// tail keeps the "last line" of an endless line of zeros: it grows until killed.
	_, _, code := d.Run("exec", g.Name, "--", "sh", "-c", "tail /dev/zero")
	if code != 137 {
		t.Fatalf("memory hog exit code %d, want 137 (SIGKILL by the OOM killer)", code)
	}
	after := info(t, d, g.Name)
	if after.State != api.StateRunning || after.PID != g.PID {
		t.Errorf("the guest did not survive its hog: %+v", after)
	}
	if out := d.Must(t, "exec", g.Name, "--", "echo", "alive"); strings.TrimSpace(out) != "alive" {
		t.Errorf("exec after OOM: %q", out)
	}
	limit, err := os.ReadFile(cgroupFile(d, g.Name, "memory", "memory.limit_in_bytes"))
	if err == nil && strings.TrimSpace(string(limit)) != strconv.Itoa(64<<20) {
		t.Errorf("memory.limit_in_bytes = %s, want %d", limit, 64<<20)
	}
}

// cgroupFile is a file of a guest's v1 cgroup.
func cgroupFile(d *testenv.Daemon, guest, controller, file string) string {
	return filepath.Join("/sys/fs/cgroup", controller, layout.New(d.StateDir).CgroupParent(), guest, file)
}

func TestExecPropagatesStreamsAndExitCode(t *testing.T) {
	requireRoot(t)
	d := env.main
	g := launch(t, d, "busybox", "e2e-exec")
	out, errOut, code := d.RunInput("hello from stdin\n", "exec", g.Name, "--", "sh", "-c", "cat; echo to-stderr >&2; exit 7")
	if code != 7 || out != "hello from stdin\n" || errOut != "to-stderr\n" {
		t.Errorf("exec: code %d stdout %q stderr %q; want 7, the stdin echoed, to-stderr", code, out, errOut)
	}
	if _, _, code := d.Run("exec", g.Name, "--", "/no/such/command"); code == 0 {
		t.Error("exec of a missing command succeeded")
	}
}

func TestStopStartRestartAndDeleteCleanUp(t *testing.T) {
	requireRoot(t)
	d := env.main
	g := launch(t, d, "busybox", "e2e-life")
	d.Must(t, "exec", g.Name, "--", "sh", "-c", "echo kept > /root/mark")
	rootfs := filepath.Join(layout.New(d.StateDir).GuestDir(g.Name), "rootfs")
	d.Must(t, "stop", g.Name, "--timeout", "20s")
	stopped := info(t, d, g.Name)
	if stopped.State != api.StateStopped || alive(g.PID) {
		t.Fatalf("after stop: %+v, init alive %v", stopped, alive(g.PID))
	}
	if mounted(t, rootfs) {
		t.Error("rootfs still mounted after stop")
	}
	if dirs := existing(testenv.CgroupDirs(layout.New(d.StateDir).GuestCgroup(g.Name))); len(dirs) > 0 {
		t.Errorf("cgroups left after stop: %v", dirs)
	}
	d.Must(t, "start", g.Name)
	if out := d.Must(t, "exec", g.Name, "--", "cat", "/root/mark"); out != "kept\n" {
		t.Errorf("a file written before stop reads %q after start", out)
	}
	before := info(t, d, g.Name)
	d.Must(t, "restart", g.Name, "--force")
	after := info(t, d, g.Name)
	if after.State != api.StateRunning || after.PID == before.PID {
		t.Errorf("restart kept pid %d (now %+v)", before.PID, after)
	}
	d.Must(t, "delete", "--force", g.Name)
	if _, err := os.Stat(layout.New(d.StateDir).GuestDir(g.Name)); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("guest dir left after delete: %v", err)
	}
	if mounted(t, rootfs) || alive(after.PID) || alive(ownMonitor(after)) {
		t.Error("mount or process left after delete")
	}
	if dirs := existing(testenv.CgroupDirs(layout.New(d.StateDir).GuestCgroup(g.Name))); len(dirs) > 0 {
		t.Errorf("cgroups left after delete: %v", dirs)
	}
}

func TestGuestEndingOnItsOwnIsNoticed(t *testing.T) {
	requireRoot(t)
	d := env.main
	g := launch(t, d, "busybox", "e2e-self")
	// Kill init from outside, as an admin or the OOM killer might.
	if p, err := os.FindProcess(g.PID); err == nil {
		p.Kill()
	}
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if info := info(t, d, g.Name); info.State == api.StateStopped && info.LastExit != nil {
			if info.LastExit.Signal != 9 {
				t.Errorf("lastExit %+v, want signal 9", info.LastExit)
			}
			if mounted(t, filepath.Join(layout.New(d.StateDir).GuestDir(g.Name), "rootfs")) {
				t.Error("rootfs of an ended guest still mounted")
			}
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("guest still reported as %+v after its init was killed", info(t, d, g.Name))
}

func TestCopyRootfsIsPrivate(t *testing.T) {
	requireRoot(t)
	d := env.main
	g := launch(t, d, "busybox", "e2e-copy", "--copy")
	if g.Rootfs != "copy" {
		t.Fatalf("rootfs %q, want copy", g.Rootfs)
	}
	d.Must(t, "exec", g.Name, "--", "rm", "/bin/vi")
	tmpl := filepath.Join(layout.New(d.StateDir).TemplatesDir(), "busybox", "rootfs", "bin", "vi")
	if _, err := os.Lstat(tmpl); err != nil {
		t.Errorf("deleting inside a copy guest touched the template: %v", err)
	}
}

func TestConfigSetAppliesLiveOrAtNextStart(t *testing.T) {
	requireRoot(t)
	d := env.main
	g := launch(t, d, "busybox", "e2e-cfg", "--memory", "64MiB")
	out := d.Must(t, "config", "set", g.Name, "memory=96MiB", "cpus=2")
	if !strings.Contains(out, "memory=96MiB: applied live") || !strings.Contains(out, "cpus=2: applied live") {
		t.Errorf("config set on a running guest said:\n%s", out)
	}
	if limit, err := os.ReadFile(cgroupFile(d, g.Name, "memory", "memory.limit_in_bytes")); err == nil && strings.TrimSpace(string(limit)) != strconv.Itoa(96<<20) {
		t.Errorf("memory limit after live set: %s", limit)
	}
	if quota, err := os.ReadFile(cgroupFile(d, g.Name, "cpu", "cpu.cfs_quota_us")); err == nil && strings.TrimSpace(string(quota)) != "200000" {
		t.Errorf("cpu quota after live set: %s", quota)
	}
	d.Must(t, "stop", g.Name, "--force")
	out = d.Must(t, "config", "set", g.Name, "processes=50")
	if !strings.Contains(out, "applies at next start") {
		t.Errorf("config set on a stopped guest said: %s", out)
	}
	if yaml := d.Must(t, "config", "show", g.Name); !strings.Contains(yaml, "processes: 50") || !strings.Contains(yaml, "memory: 96MiB") {
		t.Errorf("config show:\n%s", yaml)
	}
	// config edit: only settable keys may change.
	t.Setenv("EDITOR", "sed -i -e 's/^processes: 50$/processes: 60/'")
	if out := d.Must(t, "config", "edit", g.Name); !strings.Contains(out, "processes: applies at next start") {
		t.Errorf("config edit said: %s", out)
	}
	t.Setenv("EDITOR", "sed -i -e 's/^template: busybox$/template: debian/'")
	expectError(t, d, "only cpus, memory, processes", "config", "edit", g.Name)
	t.Setenv("EDITOR", "sed -i -e 's/^processes: 60$/processes: 50/'")
	d.Must(t, "config", "edit", g.Name)
	d.Must(t, "start", g.Name)
	if pids, err := os.ReadFile(cgroupFile(d, g.Name, "pids", "pids.max")); err == nil && strings.TrimSpace(string(pids)) != "50" {
		t.Errorf("pids.max after restart: %s", pids)
	}
}

func TestConsoleAttachAndLog(t *testing.T) {
	requireRoot(t)
	d := env.main
	g := launch(t, d, "busybox", "e2e-console")
	// Type a command on the console, then detach with Ctrl-a q.
	out, errOut, code := d.RunInput("echo console-$((6*7))\n\x01q", "console", g.Name)
	if code != 0 {
		t.Fatalf("console: exit %d: %s", code, errOut)
	}
	deadline := time.Now().Add(5 * time.Second)
	var log string
	for time.Now().Before(deadline) {
		log = d.Must(t, "console", g.Name, "--log")
		if strings.Contains(log, "console-42") {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if !strings.Contains(log, "console-42") {
		t.Errorf("console log lacks the command's output:\nlog: %q\nattached output: %q", log, out)
	}
	if info := info(t, d, g.Name); info.State != api.StateRunning {
		t.Error("detaching the console stopped the guest")
	}
}

func TestHostCheckRunsTheCanary(t *testing.T) {
	requireRoot(t)
	out := env.main.Must(t, "host", "check", "--format", "json")
	var check api.HostCheck
	if err := jsonUnmarshal(out, &check); err != nil {
		t.Fatal(err)
	}
	works := map[string]bool{}
	for _, v := range check.Classes {
		works[v.Class] = v.Works
	}
	for _, class := range []string{"container", "qemu", "uml", "bochs"} {
		if !works[class] {
			t.Errorf("host check: class %s does not work here: %+v", class, check.Classes)
		}
	}
	// After make deps, every requirement it installs is reported present,
	// where it really is.
	if len(check.Requirements) != len(hostreq.All()) {
		t.Errorf("host check lists %d requirements, %d are declared", len(check.Requirements), len(hostreq.All()))
	}
	for _, s := range check.Requirements {
		if s.Installed() && (!s.Present || s.Path == "") {
			t.Errorf("after make deps, host check says %s (%s) is missing", s.Name, s.Package)
		}
	}
	if table := env.main.Must(t, "host", "check"); !strings.Contains(table, "Host requirements: all that make deps installs are present") {
		t.Errorf("host check's table:\n%s", table)
	}
}

// mounted reports whether path is a mount point on the host.
func mounted(t *testing.T, path string) bool {
	t.Helper()
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) > 4 && f[4] == path {
			return true
		}
	}
	return false
}

func existing(paths []string) []string {
	var out []string
	for _, p := range paths {
		if _, err := os.Stat(p); err == nil {
			out = append(out, p)
		}
	}
	return out
}

// TestRuntimeIsASetting runs the host check under crun: it works on pure
// cgroup v2 hosts and must refuse hybrid ones, saying why.
func TestRuntimeIsASetting(t *testing.T) {
	requireRoot(t)
	d := ownDaemon(t, "--runtime", "crun")
	var check api.HostCheck
	if err := jsonUnmarshal(d.Must(t, "host", "check", "--format", "json"), &check); err != nil {
		t.Fatal(err)
	}
	i := slices.IndexFunc(check.Classes, func(v api.ClassVerdict) bool { return v.Class == "container" })
	if i < 0 {
		t.Fatalf("host check has no container class: %+v", check.Classes)
	}
	v := check.Classes[i]
	if v.Details["runtime"] != "crun" {
		t.Errorf("host check ran %q, want crun", v.Details["runtime"])
	}
	switch mode := cgroup.Mode(); mode {
	case "hybrid":
		if v.Works || !strings.Contains(v.Reason, "hybrid mode not supported") { // crun's own words, not only our hint
			t.Errorf("crun on hybrid cgroups: %+v, want a refusal that names the cgroup mode", v)
		}
	case "v2":
		if !v.Works {
			t.Errorf("crun on cgroup v2: %+v", v)
		}
	default:
		t.Logf("cgroup mode %s: crun's verdict: works=%v (%s)", mode, v.Works, v.Reason)
	}
}
