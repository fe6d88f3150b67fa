package peer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/polyvisor/polyvisor/internal/fsutil"
	"golang.org/x/sys/unix"
)

// Podman is the podman peer: rootful containers of the busybox tree
// imported as an image, run by runc (crun refuses hybrid cgroups) with no
// network, busybox init as pid 1 on a terminal of conmon's. Everything
// podman keeps (storage, state, locks, events, network configs) lies in a
// private store under Env.Dir, chosen by flags and a containers.conf of its
// own, and its containers' cgroups (and conmon's) under one cgroup of the
// manager's own.
type Podman struct {
	env    Env
	cgroup string
	podman tool
	// runLink is a short link to the store's run dir, where its path is
	// too long for podman; Close removes it.
	runLink string
	// made are the paths of podman's host-wide blob info cache that the
	// import made; Close removes them.
	made []string
}

// podmanMaxRunroot is the longest runroot podman 4.3 takes ("the specified
// runroot is longer than 50 characters"): conmon's sockets lie in it.
const podmanMaxRunroot = 50

// blobInfoCache is what containers/image writes on every image copy,
// root's import included, whatever the store: no flag or configuration
// moves it. Setup notes which of these did not exist before.
var blobInfoCache = []string{"/var/lib/containers", "/var/lib/containers/cache", "/var/lib/containers/cache/blob-info-cache-v1.boltdb"}

// podmanImage is the name the busybox tree is imported under.
const podmanImage = "localhost/pv-bench-busybox"

// conmonNproc is the RLIMIT_NPROC hard limit conmon runs with here
// (measured: 32768, below the host's); runc, lacking CAP_SYS_RESOURCE,
// cannot raise the container's above it, and podman asks for more than
// that unless told.
const conmonNproc = 32768

// Setup writes the private store's configuration and imports RootTar.
func (p *Podman) Setup(ctx context.Context, env Env) error {
	p.env = env
	p.cgroup = privateCgroup("podman", env.Dir)
	dir := func(name string) string { return filepath.Join(env.Dir, name) }
	runroot := dir("run")
	if len(runroot) > podmanMaxRunroot {
		p.runLink = "/run/polyvisor-peer-podman-" + dirTag(env.Dir)
		runroot = p.runLink
	}
	p.podman = tool{
		name: "podman",
		global: []string{
			"--root", dir("root"), "--runroot", runroot, "--tmpdir", dir("tmp"),
			"--volumepath", dir("volumes"), "--network-config-dir", dir("networks"),
			"--cgroup-manager", "cgroupfs", "--runtime", "runc",
			"--events-backend", "file", "--storage-driver", "overlay",
		},
		env: []string{
			"CONTAINERS_CONF=" + dir("containers.conf"),
			"CONTAINERS_STORAGE_CONF=" + dir("storage.conf"),
			// Where an import unpacks its layer; /var/tmp otherwise.
			"TMPDIR=" + dir("tmp"),
		},
		tmp: env.Dir,
	}
	if env.RootTar == "" {
		return errors.New("podman: no RootTar: the peer imports the busybox tree from it")
	}
	for _, d := range []string{"tmp", "networks", "run"} {
		if err := os.MkdirAll(dir(d), 0o700); err != nil {
			return fmt.Errorf("podman: %w", err)
		}
	}
	if p.runLink != "" {
		// One left by a manager of the same dir that did not close.
		if target, err := os.Readlink(p.runLink); err == nil && target == dir("run") {
			os.Remove(p.runLink)
		}
		if err := os.Symlink(dir("run"), p.runLink); err != nil {
			return fmt.Errorf("podman: a runroot short enough for podman: %w", err)
		}
	}
	q := strconv.Quote
	// Locks in files of the store's, not the host's shared
	// /dev/shm/libpod_lock; no network namespace to set up.
	conf := "[containers]\nnetns = \"none\"\n\n[engine]\n" +
		"cgroup_manager = \"cgroupfs\"\nruntime = \"runc\"\nlock_type = \"file\"\n" +
		"events_logger = \"file\"\nevents_logfile_path = " + q(dir("events.log")) + "\n" +
		"tmp_dir = " + q(dir("tmp")) + "\nvolume_path = " + q(dir("volumes")) + "\n" +
		"static_dir = " + q(filepath.Join(dir("root"), "libpod")) + "\n\n" +
		"[network]\nnetwork_config_dir = " + q(dir("networks")) + "\n"
	storage := "[storage]\ndriver = \"overlay\"\n" +
		"graphroot = " + q(dir("root")) + "\nrunroot = " + q(runroot) + "\n"
	if err := os.WriteFile(dir("containers.conf"), []byte(conf), 0o644); err != nil {
		return fmt.Errorf("podman: %w", err)
	}
	if err := os.WriteFile(dir("storage.conf"), []byte(storage), 0o644); err != nil {
		return fmt.Errorf("podman: %w", err)
	}
	for _, path := range blobInfoCache {
		if _, err := os.Lstat(path); errors.Is(err, os.ErrNotExist) {
			p.made = append(p.made, path)
		}
	}
	if err := p.podman.run(ctx, nil, nil, "import", "--quiet", env.RootTar, podmanImage); err != nil {
		return fmt.Errorf("podman: import the busybox tree: %w", err)
	}
	return nil
}

// ulimits are the container's rlimits, below what this process (and
// conmon) may grant: root here lacks CAP_SYS_RESOURCE.
func ulimits() []string {
	var nofile, nproc unix.Rlimit
	unix.Getrlimit(unix.RLIMIT_NOFILE, &nofile)
	unix.Getrlimit(unix.RLIMIT_NPROC, &nproc)
	n := min(nproc.Max, conmonNproc)
	return []string{
		"--ulimit", fmt.Sprintf("nofile=%d:%d", min(1024, nofile.Max), nofile.Max),
		"--ulimit", fmt.Sprintf("nproc=%d:%d", n, n),
	}
}

// Create makes container id from the image, with busybox init as its
// command on a terminal (init's console).
func (p *Podman) Create(ctx context.Context, id string) error {
	args := []string{"create", "--quiet", "--name", id, "--cgroup-parent", p.cgroup, "--network", "none", "-t"}
	args = append(args, ulimits()...)
	if p.env.CPUs > 0 {
		args = append(args, "--cpus", strconv.Itoa(p.env.CPUs))
	}
	if p.env.MemoryMiB > 0 {
		args = append(args, "--memory", strconv.Itoa(p.env.MemoryMiB)+"m")
	}
	args = append(args, podmanImage, "/sbin/init")
	if err := p.podman.run(ctx, nil, nil, args...); err != nil {
		return fmt.Errorf("podman create %s: %w", id, err)
	}
	return nil
}

// Start runs podman start, which returns once the container runs, then
// waits until podman exec can run a command in it.
func (p *Podman) Start(ctx context.Context, id string) error {
	if err := p.podman.run(ctx, nil, nil, "start", id); err != nil {
		return fmt.Errorf("podman start %s: %w", id, err)
	}
	err := waitExec(ctx, func(ctx context.Context) error {
		return p.podman.run(ctx, nil, nil, "exec", id, "/bin/true")
	})
	if err != nil {
		return fmt.Errorf("podman start %s: %w", id, err)
	}
	return nil
}

// Stop sends init SIGTERM and kills the container after 2 s: busybox init
// takes 2 to 3 s to end by itself.
func (p *Podman) Stop(ctx context.Context, id string) error {
	if err := p.podman.run(ctx, nil, nil, "stop", "-t", "2", id); err != nil {
		return fmt.Errorf("podman stop %s: %w", id, err)
	}
	return nil
}

// Delete removes the stopped container.
func (p *Podman) Delete(ctx context.Context, id string) error {
	if err := p.podman.run(ctx, nil, nil, "rm", id); err != nil {
		return fmt.Errorf("podman delete %s: %w", id, err)
	}
	return nil
}

// Exec runs argv with podman exec, whose exit code is argv's but for its
// own failures: 125 and up (126 and 127: argv could not be run; 255: the
// container is not running) with podman's "Error: " line.
func (p *Podman) Exec(ctx context.Context, id string, argv []string, stdin io.Reader, stdout, stderr io.Writer) (int, error) {
	args := []string{"exec"}
	if stdin != nil {
		args = append(args, "-i")
	}
	args = append(append(args, id), argv...)
	own := func(code int, text string) bool {
		return code >= 125 && (strings.HasPrefix(text, "Error: ") || strings.Contains(text, "\nError: "))
	}
	code, err := p.podman.exec(ctx, args, stdin, stdout, stderr, own)
	if err != nil {
		return -1, fmt.Errorf("podman exec %s: %w", id, err)
	}
	return code, nil
}

// PIDs are the container's conmon and every process in its cgroup.
func (p *Podman) PIDs(ctx context.Context, id string) ([]int, error) {
	out, err := p.podman.output(ctx, "inspect", "--format", "{{.State.ConmonPid}} {{.Id}}", id)
	if err != nil {
		return nil, fmt.Errorf("podman pids %s: %w", id, err)
	}
	conmonPID, full, _ := strings.Cut(out, " ")
	conmon, err := strconv.Atoi(conmonPID)
	if err != nil || conmon <= 0 {
		return nil, fmt.Errorf("podman pids %s: no conmon (%q): is it running?", id, out)
	}
	procs, err := cgroupProcs(p.cgroup + "/libpod-" + full)
	if err != nil {
		return nil, fmt.Errorf("podman pids %s: %w", id, err)
	}
	if len(procs) == 0 {
		return nil, fmt.Errorf("podman pids %s: no process in its cgroup: is it running?", id)
	}
	return append([]int{conmon}, procs...), nil
}

// Close removes every container and image and resets the private store,
// then removes what podman leaves: mounts under Env.Dir, the cgroups
// (conmon's is never removed by podman) and the store's files.
func (p *Podman) Close(ctx context.Context) error {
	if p.cgroup == "" {
		return nil
	}
	var errs []error
	if _, err := os.Stat(filepath.Join(p.env.Dir, "containers.conf")); err == nil {
		for _, args := range [][]string{{"rm", "--all", "--force", "--time", "0"}, {"rmi", "--all", "--force"}, {"system", "reset", "--force"}} {
			if err := p.podman.run(ctx, nil, nil, args...); err != nil {
				errs = append(errs, err)
			}
		}
	}
	if err := fsutil.UnmountUnder(p.env.Dir); err != nil {
		errs = append(errs, err)
	}
	if err := removeCgroupTree(ctx, p.cgroup); err != nil {
		errs = append(errs, err)
	}
	for _, name := range []string{"root", "run", "tmp", "volumes", "networks", "containers.conf", "storage.conf", "events.log", "events.log.lock"} {
		if err := os.RemoveAll(filepath.Join(p.env.Dir, name)); err != nil {
			errs = append(errs, err)
		}
	}
	if p.runLink != "" {
		if err := os.Remove(p.runLink); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	// Deepest first; a dir another user of podman filled meanwhile stays.
	for i := len(p.made) - 1; i >= 0; i-- {
		if err := os.Remove(p.made[i]); err != nil && !errors.Is(err, os.ErrNotExist) && !errors.Is(err, unix.ENOTEMPTY) {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("podman close: %w", err)
	}
	return nil
}
