// Package testenv runs real polyvisor daemons for end-to-end tests and
// benchmarks: it builds the binaries, starts a daemon with its own state dir
// and socket, drives it through the CLI or the Go client, and tears down
// everything the daemon made (guests, cgroups, run dir) afterwards.
//
// It is a normal package rather than a _test file so that test/e2e and
// test/bench share one copy.
package testenv

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/polyvisor/polyvisor/internal/layout"
	"github.com/polyvisor/polyvisor/pkg/api"
	"github.com/polyvisor/polyvisor/pkg/client"
)

// Time limits: generous, since they only bound a hang.
const (
	startTimeout   = 15 * time.Second
	commandTimeout = 5 * time.Minute
	stopTimeout    = 30 * time.Second
	deleteTimeout  = 2 * time.Minute
)

// RepoRoot returns the root of the polyvisor source tree this package was
// compiled from.
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// BuildBinaries builds polyvisor, polyvisord, polyvisor-monitor and the
// guest agent for every arch from repoRoot into dir/bin (side by side, as
// the daemon expects, like make build) and returns that directory.
func BuildBinaries(repoRoot, dir string) (binDir string, err error) {
	binDir = filepath.Join(dir, "bin")
	builds := [][]string{
		{"build", "-o", binDir + "/", "./cmd/polyvisord", "./cmd/polyvisor-monitor"},
		// Static and stripped, as make build makes it.
		{"build", "-trimpath", "-ldflags=-s", "-o", filepath.Join(binDir, "polyvisor"), "./cmd/polyvisor", "CGO_ENABLED=0"},
	}
	if _, err := os.Stat(filepath.Join(repoRoot, "cmd", "polyvisord")); err != nil {
		// A tree from before the daemon had a binary of its own (a
		// benchmark's baseline): its polyvisor is the daemon too.
		builds = [][]string{{"build", "-o", binDir + "/", "./cmd/polyvisor", "./cmd/polyvisor-monitor"}}
	}
	for _, goarch := range GuestArches {
		for _, cmd := range []string{"polyvisor-agent", "polyvisor-probe"} {
			builds = append(builds, []string{"build", "-trimpath", "-ldflags=-s", "-o", filepath.Join(binDir, cmd+"-"+goarch), "./cmd/" + cmd, "GOARCH=" + goarch})
		}
	}
	for _, args := range builds {
		env := os.Environ()
		switch last := args[len(args)-1]; {
		case strings.HasPrefix(last, "GOARCH="):
			env, args = append(env, last, "CGO_ENABLED=0", "GOARM=7"), args[:len(args)-1]
		case last == "CGO_ENABLED=0":
			env, args = append(env, last), args[:len(args)-1]
		}
		build := exec.Command("go", args...)
		build.Dir, build.Env = repoRoot, env
		if out, err := build.CombinedOutput(); err != nil {
			return "", fmt.Errorf("go %s: %w\n%s", strings.Join(args, " "), err, out)
		}
	}
	return binDir, nil
}

// Daemon is one polyvisor daemon with its own state dir and socket.
type Daemon struct {
	StateDir string
	Socket   string
	BinDir   string
	// Netns, when set, is the network namespace (ip netns) the daemon runs
	// in, so that its bridges and dnsmasq stay out of the host's.
	Netns string

	extra []string
	cmd   *exec.Cmd
	done  chan struct{} // closed once cmd has been waited for
	log   *lockedBuffer
}

// Start starts a daemon whose state and socket live under dir, with the
// binaries in binDir and extra daemon flags, and waits until it answers.
func Start(dir string, binDir string, extra ...string) (*Daemon, error) {
	return startIn(dir, binDir, "", extra)
}

// startIn starts a daemon under dir, in network namespace netns ("" for
// ours).
func startIn(dir, binDir, netns string, extra []string) (*Daemon, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("create daemon dir: %w", err)
	}
	if err := OpenToSearch(dir); err != nil {
		return nil, err
	}
	d := &Daemon{
		StateDir: filepath.Join(dir, "state"),
		Socket:   filepath.Join(dir, "pv.sock"),
		BinDir:   binDir,
		Netns:    netns,
		extra:    extra,
	}
	return d, d.start()
}

// StartInNetns is Start with the daemon inside a new network namespace,
// named netns, which Destroy deletes.
func StartInNetns(dir, binDir, netns string, extra ...string) (*Daemon, error) {
	return StartInNetnsBefore(dir, binDir, netns, nil, extra...)
}

// StartInNetnsBefore is StartInNetns that runs setup (links, addresses the
// daemon listens on) once the namespace is made, before the daemon starts.
func StartInNetnsBefore(dir, binDir, netns string, setup func() error, extra ...string) (*Daemon, error) {
	if out, err := exec.Command("ip", "netns", "add", netns).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("ip netns add %s: %v: %s", netns, err, strings.TrimSpace(string(out)))
	}
	if out, err := exec.Command("ip", "-n", netns, "link", "set", "lo", "up").CombinedOutput(); err != nil {
		exec.Command("ip", "netns", "delete", netns).Run()
		return nil, fmt.Errorf("bring lo up in %s: %v: %s", netns, err, out)
	}
	if setup != nil {
		if err := setup(); err != nil {
			exec.Command("ip", "netns", "delete", netns).Run()
			return nil, err
		}
	}
	d, err := startIn(dir, binDir, netns, extra)
	if err != nil {
		exec.Command("ip", "netns", "delete", netns).Run()
		return nil, err
	}
	return d, nil
}

// OpenToSearch makes dir and its parents inside the temp dir searchable by
// others: the daemon refuses a state dir whose parents are not, because a
// container's unprivileged root must traverse down to its rootfs.
// os.MkdirTemp and t.TempDir make 0700 directories.
func OpenToSearch(dir string) error {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return fmt.Errorf("resolve %s: %w", dir, err)
	}
	tmp := filepath.Clean(os.TempDir())
	for p := abs; strings.HasPrefix(p, tmp+"/"); p = filepath.Dir(p) {
		st, err := os.Stat(p)
		if err != nil {
			return fmt.Errorf("open %s to search: %w", p, err)
		}
		if err := os.Chmod(p, st.Mode().Perm()|0o111); err != nil {
			return fmt.Errorf("open %s to search: %w", p, err)
		}
	}
	return nil
}

func (d *Daemon) start() error {
	args := append([]string{filepath.Join(d.BinDir, "polyvisor"), "daemon", "--state-dir", d.StateDir, "--socket", d.Socket, "--log-level", "debug"}, d.extra...)
	if d.Netns != "" {
		// nsenter switches the network namespace alone and execs the
		// daemon (its pid is the daemon's); ip netns exec would also
		// remount /sys, hiding the cgroup mounts runc needs.
		args = append([]string{"nsenter", "--net=/run/netns/" + d.Netns, "--"}, args...)
	}
	d.cmd = exec.Command(args[0], args[1:]...)
	d.log = &lockedBuffer{}
	d.cmd.Stdout, d.cmd.Stderr = d.log, d.log
	// Its own session, so a ^C at the terminal reaches only the test, which
	// then cleans up in order.
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	d.done = make(chan struct{})
	if err := d.cmd.Start(); err != nil {
		close(d.done)
		return fmt.Errorf("start daemon: %w", err)
	}
	go func(cmd *exec.Cmd, done chan struct{}) {
		cmd.Wait()
		close(done)
	}(d.cmd, d.done)
	deadline := time.Now().Add(startTimeout)
	for time.Now().Before(deadline) {
		select {
		case <-d.done:
			return fmt.Errorf("daemon exited at start:\n%s", d.log)
		default:
		}
		if _, _, code := d.Run("list"); code == 0 {
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	d.Kill()
	return fmt.Errorf("daemon did not come up in %s:\n%s", startTimeout, d.log)
}

// Log returns what the daemon printed so far (debug level).
func (d *Daemon) Log() string { return d.log.String() }

// PID is the daemon's process id.
func (d *Daemon) PID() int { return d.cmd.Process.Pid }

// running reports whether the daemon process has not been reaped yet.
func (d *Daemon) running() bool {
	select {
	case <-d.done:
		return false
	default:
		return true
	}
}

// Alive reports whether the daemon process still runs.
func (d *Daemon) Alive() bool { return d.running() }

// Exited reports whether the daemon process ends within wait: a client
// may see its connection reset a moment before the process is reaped.
func (d *Daemon) Exited(wait time.Duration) bool {
	select {
	case <-d.done:
		return true
	case <-time.After(wait):
		return false
	}
}

// Kill ends the daemon with SIGKILL, as a crash would; guests keep running.
func (d *Daemon) Kill() {
	if d.running() {
		d.cmd.Process.Kill()
	}
	<-d.done
}

// stop ends the daemon with SIGTERM, and SIGKILL if it lingers.
func (d *Daemon) stop() {
	if !d.running() {
		return
	}
	d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.done:
	case <-time.After(stopTimeout):
		d.Kill()
	}
}

// Restart starts the daemon again on the same state dir and socket,
// stopping it first if it still runs (after Kill it does not).
func (d *Daemon) Restart() error {
	d.stop()
	return d.start()
}

// RestartWith is Restart with other daemon flags (extra as in Start): a
// test that made the daemon crash on purpose starts it again without the
// fault.
func (d *Daemon) RestartWith(extra ...string) error {
	d.extra = extra
	return d.Restart()
}

// Client returns a Go API client of this daemon.
func (d *Daemon) Client() *client.Client { return client.New(d.Socket) }

// HTTPClient is a plain HTTP client of the daemon's unix socket (URLs
// name any host), for what pkg/client does not speak: the web console's
// websockets.
func (d *Daemon) HTTPClient() *http.Client {
	return &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var dialer net.Dialer
		return dialer.DialContext(ctx, "unix", d.Socket)
	}}}
}

// Run runs the CLI against this daemon.
func (d *Daemon) Run(args ...string) (stdout, stderr string, code int) {
	return d.RunInput("", args...)
}

// RunInput runs the CLI against this daemon with stdin as its input.
func (d *Daemon) RunInput(stdin string, args ...string) (stdout, stderr string, code int) {
	ctx, cancel := context.WithTimeout(context.Background(), commandTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(d.BinDir, "polyvisor"), append([]string{"--socket", d.Socket}, args...)...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	cmd.Stdin = strings.NewReader(stdin)
	code = 0
	if err := cmd.Run(); err != nil {
		code = -1
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			code = ee.ExitCode()
		} else {
			fmt.Fprintf(&errOut, "testenv: %v\n", err)
		}
		if ctx.Err() != nil {
			// Killed at the deadline, the CLI said nothing itself.
			fmt.Fprintf(&errOut, "testenv: polyvisor %s: killed after %s\n", strings.Join(args, " "), commandTimeout)
		}
	}
	return out.String(), errOut.String(), code
}

// Command is the CLI against this daemon, not started: for a long run
// a test watches as it goes.
func (d *Daemon) Command(ctx context.Context, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, filepath.Join(d.BinDir, "polyvisor"), append([]string{"--socket", d.Socket}, args...)...)
}

// Must runs the CLI and fails tb unless it succeeds; it returns stdout.
func (d *Daemon) Must(tb testing.TB, args ...string) string {
	tb.Helper()
	out, errOut, code := d.Run(args...)
	if code != 0 {
		tb.Fatalf("polyvisor %s: exit %d: %s%s", strings.Join(args, " "), code, out, errOut)
	}
	return out
}

// Guests lists the daemon's guests through the CLI's JSON output, the
// contract scripts use.
func (d *Daemon) Guests() ([]api.Guest, error) {
	out, errOut, code := d.Run("list", "--format", "json")
	if code != 0 {
		return nil, fmt.Errorf("polyvisor list: exit %d: %s", code, errOut)
	}
	var gs []api.Guest
	if err := json.Unmarshal([]byte(out), &gs); err != nil {
		return nil, fmt.Errorf("decode polyvisor list: %w", err)
	}
	return gs, nil
}

// Destroy deletes every guest (stopping running ones), stops the daemon and
// removes the cgroup parents and run dir it made. It goes on past errors
// and returns them all. The state dir itself is the caller's to remove.
func (d *Daemon) Destroy() error {
	var errs []error
	if !d.running() {
		// Guests outlive a killed daemon: bring it back to delete them.
		if err := d.start(); err != nil {
			errs = append(errs, fmt.Errorf("restart daemon to delete its guests: %w", err))
		}
	}
	if d.running() {
		errs = append(errs, d.deleteAllGuests(), d.deleteAllNetworks())
	}
	d.stop()
	if d.Netns != "" {
		if out, err := exec.Command("ip", "netns", "delete", d.Netns).CombinedOutput(); err != nil {
			errs = append(errs, fmt.Errorf("ip netns delete %s: %v: %s", d.Netns, err, out))
		}
	}
	l := layout.New(d.StateDir)
	for _, dir := range CgroupDirs(l.CgroupParent()) {
		if err := syscall.Rmdir(dir); err != nil && !errors.Is(err, syscall.ENOENT) {
			errs = append(errs, fmt.Errorf("remove cgroup %s: %w", dir, err))
		}
	}
	if err := os.RemoveAll(l.RunDir()); err != nil {
		errs = append(errs, fmt.Errorf("remove run dir: %w", err))
	}
	return errors.Join(errs...)
}

// deleteAllNetworks deletes the daemon's networks: their dnsmasq
// processes outlive it otherwise.
func (d *Daemon) deleteAllNetworks() error {
	ctx, cancel := context.WithTimeout(context.Background(), deleteTimeout)
	defer cancel()
	c := d.Client()
	networks, err := c.Networks(ctx)
	if err != nil {
		return err
	}
	var errs []error
	for _, n := range networks {
		errs = append(errs, c.DeleteNetwork(ctx, n.Name))
	}
	return errors.Join(errs...)
}

// deleteAllGuests deletes guests through the API a few at a time, since a
// benchmark may leave hundreds.
func (d *Daemon) deleteAllGuests() error {
	ctx, cancel := context.WithTimeout(context.Background(), deleteTimeout)
	defer cancel()
	c := d.Client()
	guests, err := c.Guests(ctx)
	if err != nil {
		return fmt.Errorf("list guests to delete: %w", err)
	}
	names := make(chan string)
	var mu sync.Mutex
	var errs []error
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for name := range names {
				if err := DeleteGuest(ctx, c, name); err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
				}
			}
		})
	}
	for _, g := range guests {
		names <- g.Name
	}
	close(names)
	wg.Wait()
	return errors.Join(errs...)
}

// DeleteGuest force-deletes one guest through the API and waits for it.
func DeleteGuest(ctx context.Context, c *client.Client, name string) error {
	op, err := c.DeleteGuest(ctx, name, true)
	if err == nil {
		err = c.Wait(ctx, op, nil)
	}
	if err != nil {
		return fmt.Errorf("delete guest %s: %w", name, err)
	}
	return nil
}

// CgroupDirs lists the directories of a cgroup path in every hierarchy
// that has it (each v1 controller, the v2 tree).
func CgroupDirs(path string) []string {
	dirs, _ := filepath.Glob("/sys/fs/cgroup/*" + path)
	if _, err := os.Stat("/sys/fs/cgroup" + path); err == nil {
		dirs = append(dirs, "/sys/fs/cgroup"+path) // pure cgroup v2
	}
	return dirs
}

// lockedBuffer is a bytes.Buffer that the daemon's output copier writes
// while a test reads it.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
