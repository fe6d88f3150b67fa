package peer

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/polyvisor/polyvisor/internal/cgroup"
	"github.com/polyvisor/polyvisor/internal/guestnet"
	"github.com/polyvisor/polyvisor/internal/idmap"
)

// LXC is the LXC peer: unprivileged-style containers (the shared id map,
// as polyvisor's containers have) on an overlay of Env.RootFS, in an
// lxcpath of their own under Env.Dir, with no network. Each container's
// cgroups, and its monitor's, lie under one cgroup of the manager's own.
type LXC struct {
	env    Env
	path   string // the lxcpath (-P)
	cgroup string // the manager's cgroup, relative to each hierarchy's root
	lxc    func(name string) tool
}

// lxcShare holds the configs LXC's own templates include in every
// container (capabilities, device rules, seccomp) and in unprivileged ones.
const lxcShare = "/usr/share/lxc/config"

// lxcPATH is the PATH of a command run in the guest: lxc-attach clears the
// environment, so as not to pass the host's through.
const lxcPATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// Setup makes the lxcpath.
func (l *LXC) Setup(ctx context.Context, env Env) error {
	l.env = env
	l.path = filepath.Join(env.Dir, "lxc")
	l.cgroup = privateCgroup("lxc", env.Dir)
	l.lxc = func(name string) tool { return tool{name: name, global: []string{"-P", l.path}, tmp: env.Dir} }
	if env.RootFS == "" {
		return errors.New("lxc: no RootFS: the peer's guests run on an overlay of the shifted busybox tree")
	}
	if _, err := os.Stat(filepath.Join(env.RootFS, "sbin", "init")); err != nil {
		return fmt.Errorf("lxc: the tree has no init: %w", err)
	}
	// The container's root, an unprivileged user on the host, mounts its
	// overlay itself: it must reach its upper dir and the lower tree.
	for _, dir := range []string{filepath.Dir(env.Dir), filepath.Dir(env.RootFS)} {
		if err := searchable(dir); err != nil {
			return fmt.Errorf("lxc: %w", err)
		}
	}
	if err := os.MkdirAll(l.path, 0o711); err != nil {
		return fmt.Errorf("lxc: %w", err)
	}
	if err := os.Chmod(env.Dir, 0o711); err != nil {
		return fmt.Errorf("lxc: %w", err)
	}
	return nil
}

// searchable fails unless every dir from / down to dir lets others
// through (o+x), as an unprivileged container's root needs.
func searchable(dir string) error {
	for d := filepath.Clean(dir); ; d = filepath.Dir(d) {
		fi, err := os.Stat(d)
		if err != nil {
			return err
		}
		if fi.Mode().Perm()&0o001 == 0 {
			return fmt.Errorf("%s is not searchable by the container's unprivileged root: chmod o+x %s", d, d)
		}
		if d == "/" {
			return nil
		}
	}
}

// config is container id's LXC configuration.
func (l *LXC) config(id string) string {
	m := idmap.Default()
	dir := filepath.Join(l.path, id)
	var b strings.Builder
	line := func(key, value string) { fmt.Fprintf(&b, "%s = %s\n", key, value) }
	// What LXC's download template gives an unprivileged container.
	for _, inc := range []string{"common.conf", "userns.conf"} {
		if _, err := os.Stat(filepath.Join(lxcShare, inc)); err == nil {
			line("lxc.include", filepath.Join(lxcShare, inc))
		}
	}
	line("lxc.uts.name", id)
	// LXC mounts the overlay in the container's mount namespace, with its
	// work dir ("work") beside the upper dir: nothing on the host's.
	line("lxc.rootfs.path", "overlay:"+l.env.RootFS+":"+filepath.Join(dir, "upper"))
	line("lxc.idmap", fmt.Sprintf("u 0 %d %d", m.HostBase, m.Size))
	line("lxc.idmap", fmt.Sprintf("g 0 %d %d", m.HostBase, m.Size))
	line("lxc.net.0.type", "empty")
	line("lxc.init.cmd", "/sbin/init")
	// What polyvisor tells its own guests with no network: the tree's
	// DHCP launcher then sleeps instead of watching for an eth0 for 10 s.
	line("lxc.environment", guestnet.NoNetworkEnv)
	// busybox init powers off on SIGUSR2 (SIGPWR, LXC's default, it ignores).
	line("lxc.signal.halt", "SIGUSR2")
	if _, err := os.Stat("/sys/kernel/security/apparmor"); err != nil {
		line("lxc.apparmor.profile", "unconfined")
	}
	// LXC takes these relative to each hierarchy's root.
	cg := strings.TrimPrefix(l.cgroup, "/")
	line("lxc.cgroup.dir.monitor", cg+"/"+id+".monitor")
	line("lxc.cgroup.dir.container", cg+"/"+id+".payload")
	line("lxc.cgroup.dir.monitor.pivot", cg+"/pivot")
	period := 100000
	quota := strconv.Itoa(max(l.env.CPUs, 1) * period)
	mem := strconv.Itoa(l.env.MemoryMiB << 20)
	if cgroup.Mode() == "v2" {
		if l.env.CPUs > 0 {
			line("lxc.cgroup2.cpu.max", quota+" "+strconv.Itoa(period))
		}
		if l.env.MemoryMiB > 0 {
			line("lxc.cgroup2.memory.max", mem)
		}
	} else {
		if l.env.CPUs > 0 {
			line("lxc.cgroup.cpu.cfs_period_us", strconv.Itoa(period))
			line("lxc.cgroup.cpu.cfs_quota_us", quota)
		}
		if l.env.MemoryMiB > 0 {
			line("lxc.cgroup.memory.limit_in_bytes", mem)
		}
	}
	line("lxc.log.file", filepath.Join(dir, "lxc.log"))
	line("lxc.log.level", "ERROR")
	return b.String()
}

// Create writes container id's config and makes its overlay's upper and
// work dirs, owned by the container's root.
func (l *LXC) Create(ctx context.Context, id string) (err error) {
	dir := filepath.Join(l.path, id)
	if err := os.Mkdir(dir, 0o711); err != nil {
		return fmt.Errorf("lxc create %s: %w", id, err)
	}
	defer func() {
		if err != nil {
			os.RemoveAll(dir)
			err = fmt.Errorf("lxc create %s: %w", id, err)
		}
	}()
	owner := int(idmap.Default().HostBase)
	for _, sub := range []string{"upper", "work"} {
		p := filepath.Join(dir, sub)
		if err := os.Mkdir(p, 0o755); err != nil {
			return err
		}
		if err := os.Lchown(p, owner, owner); err != nil {
			return err
		}
	}
	return os.WriteFile(filepath.Join(dir, "config"), []byte(l.config(id)), 0o644)
}

// Start runs lxc-start -d, which returns once the container runs, then
// waits until lxc-attach can run a command in it.
func (l *LXC) Start(ctx context.Context, id string) error {
	logFile := filepath.Join(l.path, id, "lxc.log")
	os.Truncate(logFile, 0)
	if err := l.lxc("lxc-start").run(ctx, nil, nil, "-n", id, "-d"); err != nil {
		// lxc-start's own last words only say to read the log: put the
		// log's first error, the cause, before them.
		if cause := firstLogError(logFile); cause != "" {
			return fmt.Errorf("lxc start %s: %s: %w", id, cause, err)
		}
		return fmt.Errorf("lxc start %s: %w", id, err)
	}
	err := waitExec(ctx, func(ctx context.Context) error {
		return l.lxc("lxc-attach").run(ctx, nil, nil, "-n", id, "--clear-env", "--", "/bin/true")
	})
	if err != nil {
		return fmt.Errorf("lxc start %s: %w", id, err)
	}
	return nil
}

// firstLogError is the message of the first ERROR line of an LXC log.
func firstLogError(path string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if _, msg, ok := strings.Cut(s.Text(), " ERROR "); ok {
			// "confile - ../src/lxc/confile.c:func:170 - the message"
			if i := strings.LastIndex(msg, " - "); i >= 0 {
				msg = msg[i+3:]
			}
			return strings.TrimSpace(msg)
		}
	}
	return ""
}

// Stop asks init to power off and kills the container after 2 s: busybox
// init takes 2 to 3 s to end by itself.
func (l *LXC) Stop(ctx context.Context, id string) error {
	if err := l.lxc("lxc-stop").run(ctx, nil, nil, "-n", id, "-t", "2"); err != nil {
		return fmt.Errorf("lxc stop %s: %w", id, err)
	}
	return nil
}

// Delete destroys the stopped container: its config, upper dir and
// cgroups (LXC leaves its monitor's behind).
func (l *LXC) Delete(ctx context.Context, id string) error {
	if err := l.lxc("lxc-destroy").run(ctx, nil, nil, "-n", id); err != nil {
		return fmt.Errorf("lxc delete %s: %w", id, err)
	}
	errs := []error{
		removeCgroupTree(ctx, l.cgroup+"/"+id+".monitor"),
		removeCgroupTree(ctx, l.cgroup+"/"+id+".payload"),
	}
	if err := os.RemoveAll(filepath.Join(l.path, id)); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("lxc delete %s: %w", id, err)
	}
	return nil
}

// Exec runs argv with lxc-attach, whose exit code is argv's.
func (l *LXC) Exec(ctx context.Context, id string, argv []string, stdin io.Reader, stdout, stderr io.Writer) (int, error) {
	args := append([]string{"-n", id, "--clear-env", "--set-var", lxcPATH, "--"}, argv...)
	// lxc-attach's own failures say so in its own name.
	own := func(code int, text string) bool { return strings.Contains(text, "lxc-attach: "+id+": ") }
	code, err := l.lxc("lxc-attach").exec(ctx, args, stdin, stdout, stderr, own)
	if err != nil {
		return -1, fmt.Errorf("lxc exec %s: %w", id, err)
	}
	return code, nil
}

// PIDs are the container's monitor, "[lxc monitor] LXCPATH ID", and every
// process in the container's cgroup.
func (l *LXC) PIDs(ctx context.Context, id string) ([]int, error) {
	monitor, err := l.monitor(id)
	if err != nil {
		return nil, fmt.Errorf("lxc pids %s: %w", id, err)
	}
	procs, err := cgroupProcs(l.cgroup + "/" + id + ".payload")
	if err != nil {
		return nil, fmt.Errorf("lxc pids %s: %w", id, err)
	}
	if len(procs) == 0 {
		return nil, fmt.Errorf("lxc pids %s: no process in its cgroup: is it running?", id)
	}
	return append([]int{monitor}, procs...), nil
}

// monitor finds the container's monitor process by its title.
func (l *LXC) monitor(id string) (int, error) {
	want := "[lxc monitor] " + l.path + " " + id
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return 0, err
	}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		data, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err == nil && strings.TrimRight(string(data), "\x00 ") == want {
			return pid, nil
		}
	}
	return 0, fmt.Errorf("no process titled %q", want)
}

// Close stops and destroys every container left, then removes the
// manager's cgroups and lxcpath.
func (l *LXC) Close(ctx context.Context) error {
	if l.path == "" {
		return nil
	}
	var errs []error
	entries, err := os.ReadDir(l.path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		errs = append(errs, err)
	}
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		id := e.Name()
		// -k: kill at once; a stopped container makes lxc-stop fail,
		// which is fine.
		l.lxc("lxc-stop").run(ctx, nil, nil, "-n", id, "-k")
		if err := l.lxc("lxc-destroy").run(ctx, nil, nil, "-n", id); err != nil {
			errs = append(errs, err)
		}
	}
	if err := removeCgroupTree(ctx, l.cgroup); err != nil {
		errs = append(errs, err)
	}
	if err := os.RemoveAll(l.path); err != nil {
		errs = append(errs, err)
	}
	if err := removeLocks(l.path); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("lxc close: %w", err)
	}
	return nil
}

// lxcLocks is where LXC keeps a lock file per container, in a tree that
// mirrors the lxcpath's, and never removes them.
const lxcLocks = "/run/lxc/lock"

// removeLocks removes the lock files of lxcpath's containers, then each
// parent dir left empty, up to /run/lxc, which other users of LXC make
// again when they need it.
func removeLocks(lxcpath string) error {
	dir := lxcLocks + lxcpath
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	for dir = filepath.Dir(dir); strings.HasPrefix(dir, filepath.Dir(lxcLocks)); dir = filepath.Dir(dir) {
		if os.Remove(dir) != nil {
			break
		}
	}
	return nil
}
