package peer

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/polyvisor/polyvisor/internal/fsutil"
)

// incusdStopTimeout bounds incusd's own shutdown before it is killed.
const incusdStopTimeout = 30 * time.Second

// incusDaemon is the private incusd, a child of bench.
type incusDaemon struct {
	cmd     *exec.Cmd
	log     string        // its stderr: warnings and errors
	exited  chan struct{} // closed once it has ended and been reaped
	waitErr error         // how it ended; read only after exited is closed
}

// startIncusd starts incusd on state dir INCUS_DIR (in env), its output
// to logPath. A goroutine owned by the daemon reaps it.
func startIncusd(path, logPath string, env []string) (*incusDaemon, error) {
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	defer logf.Close() // incusd holds its own copy
	cmd := exec.Command(path)
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = logf, logf
	// Its own process group: a terminal's Ctrl-C reaches bench, whose
	// Close then stops incusd and its guests in order.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start incusd: %w", err)
	}
	d := &incusDaemon{cmd: cmd, log: logPath, exited: make(chan struct{})}
	go func() {
		d.waitErr = cmd.Wait()
		close(d.exited)
	}()
	return d, nil
}

func (d *incusDaemon) alive() bool {
	select {
	case <-d.exited:
		return false
	default:
		return true
	}
}

// lastWords is the last line incusd logged.
func (d *incusDaemon) lastWords() string {
	data, err := os.ReadFile(d.log)
	if err != nil || len(bytes.TrimSpace(data)) == 0 {
		return "(incusd logged nothing)"
	}
	return lastLine(string(data))
}

// stop ends incusd with SIGTERM (the pid it was started as: it is our
// child, so the pid cannot have been reused before we reap it), and
// SIGKILL if it does not end within incusdStopTimeout.
func (d *incusDaemon) stop(ctx context.Context) error {
	if !d.alive() {
		return nil
	}
	if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("stop incusd: %w", err)
	}
	timer := time.NewTimer(incusdStopTimeout)
	defer timer.Stop()
	select {
	case <-d.exited:
		return nil
	case <-timer.C:
	case <-ctx.Done():
	}
	d.cmd.Process.Kill()
	<-d.exited
	return fmt.Errorf("stop incusd: it did not end within %s of SIGTERM; killed", incusdStopTimeout)
}

// Close deletes every container, the image and the pool through incusd,
// shuts it down, then removes by hand whatever a failed step left: guest
// processes, mounts under Env.Dir, the guests' cgroups, and Env.Dir.
func (m *Incus) Close(ctx context.Context) error {
	var errs []error
	m.mu.Lock()
	names := make([]string, 0, len(m.guests))
	for id := range m.guests {
		names = append(names, id)
	}
	m.mu.Unlock()
	if m.daemon != nil && m.daemon.alive() && m.bin != "" {
		if out, err := m.run(ctx, nil, "list", "--format", "csv", "--columns", "n"); err == nil {
			for _, name := range strings.Fields(out) {
				if !slices.Contains(names, name) {
					names = append(names, name)
				}
			}
		}
		for _, id := range names {
			if _, err := m.run(ctx, nil, "delete", "--force", id); err != nil && !strings.Contains(err.Error(), "not found") {
				errs = append(errs, err)
			}
		}
		for _, args := range [][]string{
			{"image", "delete", incusImage},
			{"profile", "device", "remove", "default", "root"},
			{"storage", "delete", incusPool},
		} {
			if _, err := m.run(ctx, nil, args...); err != nil && !strings.Contains(err.Error(), "not found") &&
				!strings.Contains(err.Error(), "doesn't exist") {
				errs = append(errs, err)
			}
		}
		if _, err := m.run(ctx, nil, "admin", "shutdown", "--timeout", "30"); err != nil {
			errs = append(errs, err)
		}
	}
	if m.daemon != nil {
		errs = append(errs, m.daemon.stop(ctx))
	}
	if m.env.Dir == "" {
		return errors.Join(errs...)
	}
	errs = append(errs, killIncusGuests(filepath.Join(m.stateDir(), "containers")))
	errs = append(errs, fsutil.UnmountUnder(m.env.Dir))
	for _, id := range names {
		errs = append(errs, removeIncusCgroups(id))
	}
	if err := os.RemoveAll(m.env.Dir); err != nil {
		errs = append(errs, fmt.Errorf("incus: %w", err))
	}
	return errors.Join(errs...)
}

// killIncusGuests kills, by pid, every [lxc monitor] of a container under
// containersDir that outlived incusd, and the processes under it.
func killIncusGuests(containersDir string) error {
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	var errs []error
	for _, p := range procs {
		cmd, err := os.ReadFile(p)
		if err != nil || !bytes.HasPrefix(cmd, []byte("[lxc monitor] "+containersDir+" ")) {
			continue
		}
		monitor, _ := strconv.Atoi(filepath.Base(filepath.Dir(p)))
		pids, err := descendants(monitor)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, pid := range pids {
			if err := syscall.Kill(pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
				errs = append(errs, fmt.Errorf("kill incus guest process %d: %w", pid, err))
			}
		}
	}
	return errors.Join(errs...)
}

// incusCgroups are the cgroup dirs liblxc makes for container id, in
// every hierarchy (cgroup v1 and hybrid: /sys/fs/cgroup/*/; v2:
// /sys/fs/cgroup/): lxc.payload.ID for the guest, lxc.monitor.ID for its
// monitor.
func incusCgroups(id string) []string {
	roots, _ := filepath.Glob("/sys/fs/cgroup/*")
	roots = append(roots, "/sys/fs/cgroup")
	var dirs []string
	for _, root := range roots {
		for _, name := range []string{"lxc.payload." + id, "lxc.monitor." + id} {
			if fi, err := os.Stat(filepath.Join(root, name)); err == nil && fi.IsDir() {
				dirs = append(dirs, filepath.Join(root, name))
			}
		}
	}
	return dirs
}

// removeIncusCgroups removes what liblxc left of container id's cgroups,
// children first; none left is fine.
func removeIncusCgroups(id string) error {
	var errs []error
	for _, top := range incusCgroups(id) {
		var dirs []string
		filepath.WalkDir(top, func(path string, d fs.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, path)
			}
			return nil
		})
		for i := len(dirs) - 1; i >= 0; i-- {
			if err := syscall.Rmdir(dirs[i]); err != nil && !errors.Is(err, syscall.ENOENT) {
				errs = append(errs, fmt.Errorf("remove incus cgroup %s: %w", dirs[i], err))
			}
		}
	}
	return errors.Join(errs...)
}

// parentPID is pid's parent, from /proc/PID/stat.
func parentPID(pid int) (int, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// pid (comm) state ppid ...: comm may hold spaces and parentheses.
	s := string(data)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(fields) < 2 {
		return 0, fmt.Errorf("/proc/%d/stat: %q", pid, s)
	}
	return strconv.Atoi(fields[1])
}

// descendants returns root and every process descended from it.
func descendants(root int) ([]int, error) {
	children := map[int][]int{}
	stats, err := filepath.Glob("/proc/[0-9]*/stat")
	if err != nil {
		return nil, err
	}
	for _, stat := range stats {
		pid, _ := strconv.Atoi(filepath.Base(filepath.Dir(stat)))
		ppid, err := parentPID(pid)
		if err != nil {
			continue // it ended meanwhile
		}
		children[ppid] = append(children[ppid], pid)
	}
	pids := []int{root}
	for i := 0; i < len(pids); i++ {
		pids = append(pids, children[pids[i]]...)
	}
	return pids, nil
}
