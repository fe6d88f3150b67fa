// Package e2e drives the real polyvisor binaries (daemon, CLI, monitor)
// against real runc, busybox-static and debootstrap, as a user would.
// Templates are built once per run and shared by every test.
package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/polyvisor/polyvisor/internal/api"
	"github.com/polyvisor/polyvisor/internal/layout"
)

// env is the shared fixture: binaries, one daemon, built templates.
var env struct {
	bin     string // directory holding polyvisor and polyvisor-monitor
	main    *daemon
	skipWhy string
}

func TestMain(m *testing.M) {
	code, err := setup(m)
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e setup:", err)
		code = 1
	}
	os.Exit(code)
}

func setup(m *testing.M) (int, error) {
	if os.Geteuid() != 0 {
		fmt.Println("e2e: skipped: containers need root (run make test as root)")
		env.skipWhy = "needs root"
		return m.Run(), nil
	}
	tmp, err := os.MkdirTemp("", "pv-e2e-")
	if err != nil {
		return 1, err
	}
	defer os.RemoveAll(tmp)
	// Containers' unprivileged root must traverse down to their rootfs.
	if err := os.Chmod(tmp, 0o711); err != nil {
		return 1, err
	}
	env.bin = filepath.Join(tmp, "bin")
	_, file, _, _ := runtime.Caller(0)
	root := filepath.Join(filepath.Dir(file), "..", "..")
	build := exec.Command("go", "build", "-o", env.bin+"/", "./cmd/polyvisor", "./cmd/polyvisor-monitor")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		return 1, fmt.Errorf("build: %v\n%s", err, out)
	}
	env.main, err = startDaemon(filepath.Join(tmp, "main"))
	if err != nil {
		return 1, err
	}
	defer env.main.destroy()
	for _, args := range [][]string{{"template", "build", "busybox"}, {"template", "build", "debian:bookworm", "--name", "debian"}} {
		began := time.Now()
		if out, errOut, code := env.main.run(args...); code != 0 {
			return 1, fmt.Errorf("%v: %s%s", args, out, errOut)
		}
		fmt.Printf("e2e: %s took %s\n", strings.Join(args, " "), time.Since(began).Round(time.Millisecond))
	}
	return m.Run(), nil
}

// daemon is one polyvisor daemon with its own state dir and socket.
type daemon struct {
	state, socket string
	extra         []string
	cmd           *exec.Cmd
	log           *bytes.Buffer
}

func startDaemon(dir string, extra ...string) (*daemon, error) {
	d := &daemon{state: filepath.Join(dir, "state"), socket: filepath.Join(dir, "pv.sock"), extra: extra}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	// t.TempDir() makes 0700 parents: open them to search, as /var/lib is.
	for p := dir; p != "/" && p != os.TempDir(); p = filepath.Dir(p) {
		os.Chmod(p, 0o711)
	}
	return d, d.start()
}

func (d *daemon) start() error {
	args := append([]string{"daemon", "--state-dir", d.state, "--socket", d.socket, "--log-level", "debug"}, d.extra...)
	d.cmd = exec.Command(filepath.Join(env.bin, "polyvisor"), args...)
	d.log = &bytes.Buffer{}
	d.cmd.Stdout, d.cmd.Stderr = d.log, d.log
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := d.cmd.Start(); err != nil {
		return err
	}
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		if _, _, code := d.run("list"); code == 0 {
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("daemon did not come up:\n%s", d.log)
}

// kill ends the daemon with SIGKILL, as a crash would.
func (d *daemon) kill() {
	d.cmd.Process.Kill()
	d.cmd.Wait()
}

// destroy deletes every guest and template, stops the daemon and removes
// the cgroup parents and run dir it made.
func (d *daemon) destroy() {
	if guests, err := d.guests(); err == nil {
		for _, g := range guests {
			d.run("delete", "--force", g.Name)
		}
	}
	d.cmd.Process.Signal(syscall.SIGTERM)
	d.cmd.Wait()
	l := layout.New(d.state)
	for _, dir := range cgroupDirs(l.CgroupParent()) {
		syscall.Rmdir(dir)
	}
	os.RemoveAll(l.RunDir())
}

// run runs the CLI against this daemon.
func (d *daemon) run(args ...string) (stdout, stderr string, code int) {
	return d.runInput("", args...)
}

func (d *daemon) runInput(stdin string, args ...string) (stdout, stderr string, code int) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(env.bin, "polyvisor"), append([]string{"--socket", d.socket}, args...)...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	cmd.Stdin = strings.NewReader(stdin)
	err := cmd.Run()
	code = 0
	if err != nil {
		code = -1
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		}
	}
	return out.String(), errOut.String(), code
}

// must runs the CLI and fails the test unless it succeeds.
func (d *daemon) must(t *testing.T, args ...string) string {
	t.Helper()
	out, errOut, code := d.run(args...)
	if code != 0 {
		t.Fatalf("polyvisor %s: exit %d: %s%s", strings.Join(args, " "), code, out, errOut)
	}
	return out
}

func (d *daemon) guests() ([]api.Guest, error) {
	out, errOut, code := d.run("list", "--format", "json")
	if code != 0 {
		return nil, fmt.Errorf("list: %s", errOut)
	}
	var gs []api.Guest
	return gs, json.Unmarshal([]byte(out), &gs)
}

func (d *daemon) info(t *testing.T, name string) api.Guest {
	t.Helper()
	var g api.Guest
	if err := json.Unmarshal([]byte(d.must(t, "info", name, "--format", "json")), &g); err != nil {
		t.Fatal(err)
	}
	return g
}

// launch starts a guest and deletes it when the test ends.
func (d *daemon) launch(t *testing.T, template, name string, flags ...string) api.Guest {
	t.Helper()
	d.must(t, append([]string{"launch", template, name}, flags...)...)
	t.Cleanup(func() { d.run("delete", "--force", name) })
	return d.info(t, name)
}

func requireRoot(t *testing.T) {
	t.Helper()
	if env.skipWhy != "" {
		t.Skip("e2e: " + env.skipWhy)
	}
}

// cgroupDirs lists the directories of a cgroup path in every hierarchy.
func cgroupDirs(path string) []string {
	dirs, _ := filepath.Glob("/sys/fs/cgroup/*" + path)
	if _, err := os.Stat("/sys/fs/cgroup" + path); err == nil {
		dirs = append(dirs, "/sys/fs/cgroup"+path) // pure cgroup v2
	}
	return dirs
}
