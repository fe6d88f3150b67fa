package template

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/polyvisor/polyvisor/internal/hostreq"
	"github.com/polyvisor/polyvisor/internal/testgate"
)

func requireRoot(t *testing.T) {
	t.Helper()
	testgate.RequireRoot(t, "needs root (chroot, chown, namespaces)")
}

// requireCommand fails t, naming the package, when name is missing.
func requireCommand(t *testing.T, name string) {
	t.Helper()
	hostreq.Need(t, name)
}

// inChroot runs script with /bin/sh inside rootfs and returns its output.
func inChroot(t *testing.T, rootfs, script string) string {
	t.Helper()
	out, err := exec.Command("chroot", rootfs, "/bin/sh", "-c", script).CombinedOutput()
	if err != nil {
		t.Fatalf("chroot %s sh -c %q: %v: %s", rootfs, script, err, out)
	}
	return string(out)
}

// bootAndStop runs rootfs's /sbin/init as pid 1 of a new pid namespace, checks it stays up,
// sends it SIGTERM and returns how long it took to end.
func bootAndStop(t *testing.T, rootfs string) time.Duration {
	t.Helper()
	requireCommand(t, "unshare")
	var output bytes.Buffer
	cmd := exec.Command("unshare", "--pid", "--fork", "--kill-child", "--mount-proc",
		"chroot", rootfs, "/sbin/init")
	cmd.Stdout, cmd.Stderr = &output, &output
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	var initPID int
	deadline := time.Now().Add(5 * time.Second)
	for initPID == 0 && time.Now().Before(deadline) {
		children, _ := os.ReadFile(filepath.Join("/proc", itoa(cmd.Process.Pid), "task", itoa(cmd.Process.Pid), "children"))
		if fields := strings.Fields(string(children)); len(fields) > 0 {
			initPID = atoi(t, fields[0])
		}
		time.Sleep(20 * time.Millisecond)
	}
	if initPID == 0 {
		cmd.Process.Kill()
		t.Fatalf("init did not start: %s", output.String())
	}
	select {
	case err := <-exited:
		t.Fatalf("init ended by itself: %v: %s", err, output.String())
	case <-time.After(time.Second):
	}
	start := time.Now()
	if err := syscall.Kill(initPID, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		t.Logf("init ended %v after SIGTERM (%v)", time.Since(start).Round(time.Millisecond), err)
	case <-time.After(15 * time.Second):
		cmd.Process.Kill()
		t.Fatalf("init still running 15 s after SIGTERM: %s", output.String())
	}
	return time.Since(start)
}

func itoa(n int) string { return strconv.Itoa(n) }

func atoi(t *testing.T, s string) int {
	t.Helper()
	n, err := strconv.Atoi(s)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestInstallProbePutsTheProbeOfTheArchInTheTree(t *testing.T) {
	bin, rootfs := t.TempDir(), t.TempDir()
	if err := InstallProbe(rootfs, bin, "riscv64"); err != nil {
		t.Fatalf("a build without the probe: %v, want none installed and no error", err)
	}
	if _, err := os.Stat(filepath.Join(rootfs, GuestProbe)); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("a probe installed from nowhere: %v", err)
	}
	if err := os.WriteFile(filepath.Join(bin, ProbeName("riscv64")), []byte("probe for riscv64"), 0o755); err != nil {
		t.Fatal(err)
	}
	// A tree whose usr/libexec is a symlink out of it gets nothing there.
	escape := t.TempDir()
	if err := os.MkdirAll(filepath.Join(rootfs, "usr"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(escape, filepath.Join(rootfs, "usr/libexec")); err != nil {
		t.Fatal(err)
	}
	if err := InstallProbe(rootfs, bin, "riscv64"); err == nil {
		t.Error("the probe was installed through a symlink that leaves the tree")
	}
	if entries, _ := os.ReadDir(escape); len(entries) != 0 {
		t.Errorf("the probe reached outside the tree: %v", entries)
	}
	os.Remove(filepath.Join(rootfs, "usr/libexec"))
	if err := InstallProbe(rootfs, bin, "riscv64"); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(filepath.Join(rootfs, GuestProbe))
	if err != nil || st.Mode().Perm() != 0o755 {
		t.Fatalf("installed probe: %v %v", st, err)
	}
	if data, _ := os.ReadFile(filepath.Join(rootfs, GuestProbe)); string(data) != "probe for riscv64" {
		t.Errorf("installed probe holds %q", data)
	}
}
