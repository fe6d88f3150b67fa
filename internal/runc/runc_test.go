package runc

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/creack/pty"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/polyvisor/polyvisor/internal/hostreq"
	"github.com/polyvisor/polyvisor/internal/testgate"
	"github.com/polyvisor/polyvisor/pkg/api"
)

func TestParseLogKeepsErrorMessages(t *testing.T) {
	for _, tc := range []struct{ log, want string }{
		{`{"level":"error","msg":"container does not exist","time":"2026-12-05T14:51:35Z"}` + "\n" +
			"container does not exist\n", "container does not exist"},
		{`{"level":"warning","msg":"odd","time":"t"}` + "\n" +
			`{"level":"error","msg":"runc run failed: unable to start container process: exec: \"/nope\": stat /nope: no such file or directory","time":"t"}`,
			`runc run failed: unable to start container process: exec: "/nope": stat /nope: no such file or directory`},
		// crun writes keys in another order and no final newline.
		{`{"msg":"error opening file ` + "`/r/x/status`" + `: No such file or directory","level":"error","time":"t"}`,
			"error opening file `/r/x/status`: No such file or directory"},
		{"panic: oops\n\ngoroutine 1 [running]:\nmain.main()\n", "main.main()"},
		{`{"level":"info","msg":"fine"}`, ""},
		{"", ""},
	} {
		if got := ParseLog([]byte(tc.log)); got != tc.want {
			t.Errorf("ParseLog(%q) = %q, want %q", tc.log, got, tc.want)
		}
	}
}

func TestKindOfMapsRuntimeWordsToSentinels(t *testing.T) {
	for msg, want := range map[string]error{
		"container does not exist":                                    api.ErrNotFound,
		"error opening file `/r/x/status`: No such file or directory": api.ErrNotFound,
		"container with given ID already exists":                      api.ErrExists,
		"container `x` already exists":                                api.ErrExists,
		"container not running":                                       api.ErrNotRunning,
		"container not paused":                                        api.ErrConflict,
		"cannot delete container x that is not stopped: running":      api.ErrConflict,
		"open config.json: no such file or directory":                 nil,
	} {
		if got := kindOf(msg); !errors.Is(got, want) {
			t.Errorf("kindOf(%q) = %v, want %v", msg, got, want)
		}
	}
}

// needRuntime skips without root and fails when make deps did not
// install binary.
func needRuntime(t *testing.T, binary string) {
	t.Helper()
	testgate.RequireRoot(t, "running containers needs root")
	hostreq.Need(t, binary)
}

func TestRealRuncFailuresMapToSentinels(t *testing.T) {
	needRuntime(t, "runc")
	if _, err := os.Stat(hostreq.StaticBusybox); err != nil {
		t.Skipf("no static busybox to run: %v", err)
	}
	ctx := context.Background()
	dir := t.TempDir()
	r := New("runc", filepath.Join(dir, "state"))
	id := "pv-runc-test-" + strconv.Itoa(os.Getpid())
	bundle := busyboxBundle(t, dir, "/pv-runc-test-"+strconv.Itoa(os.Getpid()), "sleep", "300")

	err := r.Delete(ctx, id, false)
	wantKind(t, "delete of a container never made", err, api.ErrNotFound, "container does not exist")
	if !IsNotExist(err) {
		t.Errorf("IsNotExist(%v) = false", err)
	}
	_, err = r.State(ctx, id)
	wantKind(t, "state of a container never made", err, api.ErrNotFound, "container does not exist")

	if err := r.Run(ctx, id, RunOpts{Bundle: bundle, Detach: true}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := r.Delete(context.Background(), id, true); err != nil && !IsNotExist(err) {
			t.Errorf("clean up: %v", err)
		}
	})
	st, err := r.State(ctx, id)
	if err != nil || st.Status != "running" || st.Pid <= 0 || st.ID != id {
		t.Fatalf("state of the running container: %+v, %v", st, err)
	}
	// The log handed to runc as fd 3 does not reach the guest.
	fds, err := os.ReadDir("/proc/" + strconv.Itoa(st.Pid) + "/fd")
	if err != nil {
		t.Fatal(err)
	}
	if len(fds) == 0 {
		t.Error("the container's init has no fds to look at")
	}
	for _, fd := range fds {
		if n, _ := strconv.Atoi(fd.Name()); n > 2 {
			target, _ := os.Readlink("/proc/" + strconv.Itoa(st.Pid) + "/fd/" + fd.Name())
			t.Errorf("the container's init holds fd %d (%s)", n, target)
		}
	}
	err = r.Run(ctx, id, RunOpts{Bundle: bundle, Detach: true})
	wantKind(t, "run of an id in use", err, api.ErrExists, "already exists")
	err = r.Resume(ctx, id)
	wantKind(t, "resume of a running container", err, api.ErrConflict, "not paused")
	err = r.Delete(ctx, id, false)
	wantKind(t, "delete of a running container", err, api.ErrConflict, "not stopped")

	// exec: the process's own exit code, and the runtime's failure told
	// apart from it.
	var out bytes.Buffer
	code, fail := execIn(t, r, id, &out, "sh", "-c", "echo hi; exit 7")
	if code != 7 || fail != nil || out.String() != "hi\n" {
		t.Errorf("exec exit 7: code %d, failure %v, output %q", code, fail, out.String())
	}
	code, fail = execIn(t, r, id, &out, "/no/such/program")
	if code != 255 || fail == nil || !strings.Contains(fail.Error(), "/no/such/program") {
		t.Errorf("exec of a missing program: code %d, failure %v", code, fail)
	}

	// exec -t: runc in a session of its own on our pty, the code passed on.
	master, slave, err := pty.Open()
	if err != nil {
		t.Fatal(err)
	}
	defer master.Close()
	p, err := r.Exec(ctx, id, ExecOpts{Env: []string{"PATH=/bin"}, TTY: true}, []string{"sh", "-c", "[ -t 0 ] && echo on-a-tty; exit 3"})
	if err != nil {
		t.Fatal(err)
	}
	p.Cmd.Stdin, p.Cmd.Stdout, p.Cmd.Stderr = slave, slave, slave
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	slave.Close()
	ttyOut := make(chan []byte)
	go func() {
		data, _ := io.ReadAll(master) // ends with EIO once runc exits
		ttyOut <- data
	}()
	code, err = p.Wait()
	if got := <-ttyOut; code != 3 || err != nil || !strings.Contains(string(got), "on-a-tty") {
		t.Errorf("exec -t: code %d, %v, output %q", code, err, got)
	}

	if err := r.Kill(ctx, id, "SIGKILL"); err != nil {
		t.Fatal(err)
	}
	waitStatus(t, r, id, "stopped")
	err = r.Pause(ctx, id)
	wantKind(t, "pause of a stopped container", err, api.ErrNotRunning, "not running")
	err = r.Kill(ctx, id, "SIGTERM")
	wantKind(t, "kill of a stopped container", err, api.ErrNotRunning, "not running")
	_, fail = execIn(t, r, id, &out, "true")
	if !errors.Is(fail, api.ErrNotRunning) {
		t.Errorf("exec in a stopped container: %v, want api.ErrNotRunning", fail)
	}
	if err := r.Delete(ctx, id, false); err != nil {
		t.Fatalf("delete of the stopped container: %v", err)
	}

	// A failure the runtime has no sentinel for still says what it was.
	err = r.Run(ctx, id, RunOpts{Bundle: filepath.Join(dir, "no-bundle"), Detach: true})
	var re *Error
	if !errors.As(err, &re) || re.Kind != nil || !strings.Contains(re.Message, "no-bundle") {
		t.Errorf("run of a missing bundle: %#v", err)
	}
}

func TestRealCrunSaysNotFound(t *testing.T) {
	needRuntime(t, "crun")
	r := New("crun", t.TempDir())
	_, err := r.State(context.Background(), "nosuch")
	wantKind(t, "crun state of a container never made", err, api.ErrNotFound, "No such file")
}

// A runtime that leaves a child holding its output, or that hangs, cannot
// hold the caller: WaitDelay and the process group's kill see to it.
func TestStuckRuntimeDoesNotHangTheCaller(t *testing.T) {
	dir := t.TempDir()
	pidFile := filepath.Join(dir, "child")
	fake := filepath.Join(dir, "fake-runtime")
	script := "#!/bin/sh\nsleep 300 &\necho $! > " + pidFile + "\n"
	script += `case "$*" in *hang*) wait ;; esac` + "\necho '{}'\n"
	if err := os.WriteFile(fake, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	r := &Runtime{Binary: fake, Root: dir, WaitDelay: 100 * time.Millisecond}

	// Exits at once, but its child keeps stdout open.
	_, err := r.State(context.Background(), "leaves-child")
	if err == nil || !errors.Is(err, exec.ErrWaitDelay) {
		t.Errorf("state with a child holding stdout: %v, want exec.ErrWaitDelay", err)
	}
	killChild(t, pidFile)

	// Hangs until the context ends: its whole group is killed.
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	_, err = r.State(ctx, "hang")
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("state of a hanging runtime: %v, want context.DeadlineExceeded", err)
	}
	data, _ := os.ReadFile(pidFile)
	pid, _ := strconv.Atoi(strings.TrimSpace(string(data)))
	if pid <= 0 {
		t.Fatalf("the fake runtime's child pid: %q", data)
	}
	for deadline := time.Now().Add(10 * time.Second); alive(pid); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			killChild(t, pidFile)
			t.Fatal("the hanging runtime's child outlived its killed group")
		}
	}
}

// killChild ends the fake runtime's child, which this test started.
func killChild(t *testing.T, pidFile string) {
	data, _ := os.ReadFile(pidFile)
	if pid, err := strconv.Atoi(strings.TrimSpace(string(data))); err == nil && pid > 0 && alive(pid) {
		if p, err := os.FindProcess(pid); err == nil {
			p.Kill()
		}
	}
}

// alive says whether pid runs and is not a zombie.
func alive(pid int) bool {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	_, rest, _ := strings.Cut(string(data), ") ")
	return !strings.HasPrefix(rest, "Z")
}

func wantKind(t *testing.T, what string, err, kind error, says string) {
	t.Helper()
	var re *Error
	if !errors.As(err, &re) {
		t.Errorf("%s: %v (%T), want a *runc.Error", what, err, err)
		return
	}
	if !errors.Is(err, kind) || !strings.Contains(re.Message, says) || !strings.Contains(err.Error(), says) {
		t.Errorf("%s: %v (message %q), want %v saying %q", what, err, re.Message, kind, says)
	}
}

func execIn(t *testing.T, r *Runtime, id string, out *bytes.Buffer, argv ...string) (int, error) {
	t.Helper()
	out.Reset()
	p, err := r.Exec(context.Background(), id, ExecOpts{Cwd: "/", Env: []string{"PATH=/bin"}}, argv)
	if err != nil {
		t.Fatal(err)
	}
	p.Cmd.Stdout = out
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	code, err := p.Wait()
	if err != nil {
		t.Fatalf("exec %v: %v", argv, err)
	}
	return code, p.Failure()
}

func waitStatus(t *testing.T, r *Runtime, id, want string) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		st, err := r.State(context.Background(), id)
		if err == nil && st.Status == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("container %s: %+v %v, want %s", id, st, err, want)
		}
	}
}

// busyboxBundle makes a bundle under dir whose init runs busybox with args,
// in its own pid, mount, ipc and uts namespaces and the cgroup cgroupPath.
func busyboxBundle(t *testing.T, dir, cgroupPath string, args ...string) string {
	t.Helper()
	bundle := filepath.Join(dir, "bundle")
	rootfs := filepath.Join(bundle, "rootfs")
	for _, sub := range []string{"bin", "proc", "dev", "tmp"} {
		if err := os.MkdirAll(filepath.Join(rootfs, sub), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	data, err := os.ReadFile(hostreq.StaticBusybox)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(rootfs, "bin", "busybox"), data, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"sh", "sleep", "true", "echo"} {
		if err := os.Symlink("busybox", filepath.Join(rootfs, "bin", name)); err != nil {
			t.Fatal(err)
		}
	}
	spec := specs.Spec{
		Version: specs.Version,
		Process: &specs.Process{
			Args: append([]string{"/bin/busybox"}, args...), Cwd: "/", Env: []string{"PATH=/bin"},
			Capabilities: &specs.LinuxCapabilities{},
		},
		Root: &specs.Root{Path: "rootfs"},
		Mounts: []specs.Mount{
			{Destination: "/proc", Type: "proc", Source: "proc"},
			{Destination: "/dev", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "mode=755", "size=1m"}},
			{Destination: "/dev/pts", Type: "devpts", Source: "devpts", Options: []string{"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"}},
		},
		Linux: &specs.Linux{
			CgroupsPath: cgroupPath,
			Namespaces: []specs.LinuxNamespace{
				{Type: specs.PIDNamespace}, {Type: specs.MountNamespace},
				{Type: specs.IPCNamespace}, {Type: specs.UTSNamespace},
			},
		},
	}
	out, err := json.Marshal(&spec)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(bundle, "config.json"), out, 0o600); err != nil {
		t.Fatal(err)
	}
	return bundle
}
