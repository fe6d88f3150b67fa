package peer

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/polyvisor/polyvisor/internal/cgroup"
	"github.com/polyvisor/polyvisor/internal/hostreq"
	"github.com/polyvisor/polyvisor/internal/runcmd"
)

// tool runs one peer's command-line program with the global flags and
// environment that keep it on the peer's private state.
type tool struct {
	name   string   // a host requirement's name
	global []string // flags before the subcommand's
	env    []string // added to ours
	tmp    string   // where its stderr is kept while it runs
}

// label names a command run with args in an error: the tool and its
// subcommand, if it has one.
func (t tool) label(args []string) string {
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		return t.name + " " + args[0]
	}
	return t.name
}

// run runs the tool with args. A failure's error ends with the tool's own
// last line of stderr, which says why in the peer's words.
func (t tool) run(ctx context.Context, stdin io.Reader, stdout io.Writer, args ...string) error {
	path, err := hostreq.Lookup(t.name)
	if err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, path, append(append([]string(nil), t.global...), args...)...)
	if t.env != nil {
		cmd.Env = append(os.Environ(), t.env...)
	}
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	// stderr goes to an unlinked file, not a pipe: a daemon the tool
	// starts (LXC's monitor, conmon) inherits it and would keep a pipe
	// open long after the tool returned.
	stderr, err := os.CreateTemp(t.tmp, ".stderr-")
	if err != nil {
		return fmt.Errorf("%s: %w", t.label(args), err)
	}
	os.Remove(stderr.Name())
	defer stderr.Close()
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdin, stdout, stderr
	err = cmd.Run()
	if ctx.Err() != nil {
		return fmt.Errorf("%s: %w", t.label(args), ctx.Err())
	}
	if err != nil {
		stderr.Seek(0, io.SeekStart)
		msg, _ := io.ReadAll(io.LimitReader(stderr, 1<<16))
		return fmt.Errorf("%s: %w: %s", t.label(args), err, runcmd.LastLines(string(msg), 1))
	}
	return nil
}

// output runs the tool and returns its standard output, trimmed.
func (t tool) output(ctx context.Context, args ...string) (string, error) {
	var out bytes.Buffer
	err := t.run(ctx, nil, &out, args...)
	return strings.TrimSpace(out.String()), err
}

// exec runs argv through the tool with the caller's stdio and returns the
// exit code, which the tool passes through from argv. own says whether an
// exit code is the tool's own failure (the program never ran); the error
// then ends with the tool's last line of stderr, which still reaches
// stderr too.
func (t tool) exec(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer, own func(code int, stderr string) bool) (int, error) {
	path, err := hostreq.Lookup(t.name)
	if err != nil {
		return -1, err
	}
	cmd := exec.CommandContext(ctx, path, append(append([]string(nil), t.global...), args...)...)
	if t.env != nil {
		cmd.Env = append(os.Environ(), t.env...)
	}
	cmd.Dir = "/"
	tail := &tailWriter{}
	if stderr == nil {
		stderr = io.Discard
	}
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdin, stdout, io.MultiWriter(stderr, tail)
	cmd.WaitDelay = 5 * time.Second
	err = cmd.Run()
	var ee *exec.ExitError
	switch {
	case ctx.Err() != nil:
		return -1, fmt.Errorf("%s: %w", t.label(args), ctx.Err())
	case errors.As(err, &ee) && ee.ExitCode() >= 0:
		if own(ee.ExitCode(), tail.String()) {
			return -1, fmt.Errorf("%s: %w: %s", t.label(args), err, runcmd.LastLines(tail.String(), 1))
		}
		return ee.ExitCode(), nil
	case err != nil:
		return -1, fmt.Errorf("%s: %w", t.label(args), err)
	}
	return 0, nil
}

// tailWriter keeps the last few KiB written to it.
type tailWriter struct{ buf []byte }

func (w *tailWriter) Write(p []byte) (int, error) {
	const keep = 4096
	w.buf = append(w.buf, p...)
	if len(w.buf) > keep {
		w.buf = w.buf[len(w.buf)-keep:]
	}
	return len(p), nil
}

func (w *tailWriter) String() string { return string(w.buf) }

// privateCgroup names the cgroup, relative to each hierarchy's root, that
// a manager with state in dir keeps its guests (and their monitors) in:
// one of its own, so that Close finds everything by removing one tree.
func privateCgroup(peer, dir string) string {
	return "/polyvisor-peer-" + peer + "-" + dirTag(dir)
}

// dirTag is a short name for a manager's dir, for what must lie outside it.
func dirTag(dir string) string {
	sum := sha256.Sum256([]byte(dir))
	return hex.EncodeToString(sum[:4])
}

// cgroupDirs lists every directory of the cgroup at rel: one per v1
// hierarchy (and the hybrid host's empty v2 tree), or the v2 one.
func cgroupDirs(rel string) []string {
	var dirs []string
	if cgroup.Mode() != "v2" {
		dirs, _ = filepath.Glob(filepath.Join(cgroup.Root, "*") + rel)
	}
	if fi, err := os.Stat(cgroup.Root + rel); err == nil && fi.IsDir() {
		dirs = append(dirs, cgroup.Root+rel)
	}
	return dirs
}

// removeCgroupTree removes the cgroup at rel and every cgroup under it,
// deepest first, from every hierarchy; one already gone is fine. A monitor
// that has just been told to end may still be leaving its cgroup (LXC's
// moves itself to its pivot cgroup to exit): a busy cgroup is tried again
// for a few seconds.
func removeCgroupTree(ctx context.Context, rel string) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	for {
		err := removeCgroupTreeOnce(rel)
		if !errors.Is(err, unix.EBUSY) {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func removeCgroupTreeOnce(rel string) error {
	var errs []error
	for _, dir := range cgroupDirs(rel) {
		var tree []string
		filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				tree = append(tree, path)
			}
			return nil
		})
		for i := len(tree) - 1; i >= 0; i-- {
			if err := unix.Rmdir(tree[i]); err != nil && !errors.Is(err, unix.ENOENT) {
				errs = append(errs, fmt.Errorf("remove cgroup %s: %w", tree[i], err))
			}
		}
	}
	return errors.Join(errs...)
}

// cgroupProcs lists the processes in the cgroup at rel and every cgroup
// under it, read from the pids hierarchy (v1) or the unified one (v2).
func cgroupProcs(rel string) ([]int, error) {
	root := filepath.Join(cgroup.Root, "pids")
	if cgroup.Mode() == "v2" {
		root = cgroup.Root
	}
	var pids []int
	err := filepath.WalkDir(root+rel, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			return nil
		}
		data, err := os.ReadFile(filepath.Join(path, "cgroup.procs"))
		if err != nil {
			return err
		}
		for _, f := range strings.Fields(string(data)) {
			if pid, err := strconv.Atoi(f); err == nil {
				pids = append(pids, pid)
			}
		}
		return nil
	})
	return pids, err
}

// waitExec retries probe until it succeeds (the guest runs commands) or
// ctx ends; the error then ends with the last failure's words.
func waitExec(ctx context.Context, probe func(context.Context) error) error {
	var last error
	for delay := time.Millisecond; ; delay = min(2*delay, 50*time.Millisecond) {
		err := probe(ctx)
		if err == nil {
			return nil
		}
		if ctx.Err() == nil || last == nil {
			last = err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("not ready (%w): %w", ctx.Err(), last)
		case <-time.After(delay):
		}
	}
}
