package bench

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/polyvisor/polyvisor/internal/testenv"
)

// rawCgroupParent holds the cgroups of raw runc containers, apart from any
// daemon's.
const rawCgroupParent = "/pv-bench-raw"

// templateOwner is the host uid and gid of a template's root directory
// (container root under the shared id map); a raw overlay's upper and work
// dirs take it, as polyvisor's do, so the merged root is the container's.
const templateOwner = 1000000

// rawContainer is a busybox container run by runc directly from a copy of
// a polyvisor guest's config.json: the peer that polyvisor's launch
// latency is compared with.
type rawContainer struct {
	id       string
	dir      string // bundle/, rootfs/ (overlay mount), upper/, work/
	runcRoot string
}

// prepareRaw makes the bundle and mounts the overlay rootfs of a raw
// container; none of this is timed, as the peer of polyvisor's launch is
// runc run alone.
func prepareRaw(rawDir string, spec *specs.Spec, lower, id string) (*rawContainer, error) {
	r := &rawContainer{id: id, dir: filepath.Join(rawDir, id), runcRoot: filepath.Join(rawDir, "runc-root")}
	// Searchable by the container's unprivileged root, down to its rootfs.
	for _, sub := range []string{"", "bundle", "rootfs", "upper", "work"} {
		if err := os.MkdirAll(filepath.Join(r.dir, sub), 0o711); err != nil {
			return nil, fmt.Errorf("raw %s: %w", id, err)
		}
	}
	if err := os.Chmod(rawDir, 0o711); err != nil {
		return nil, fmt.Errorf("raw %s: %w", id, err)
	}
	for _, sub := range []string{"upper", "work"} {
		p := filepath.Join(r.dir, sub)
		if err := os.Lchown(p, templateOwner, templateOwner); err != nil {
			return nil, fmt.Errorf("raw %s: %w", id, err)
		}
		if err := os.Chmod(p, 0o755); err != nil {
			return nil, fmt.Errorf("raw %s: %w", id, err)
		}
	}
	opts := fmt.Sprintf("lowerdir=%s,upperdir=%s,workdir=%s", lower, filepath.Join(r.dir, "upper"), filepath.Join(r.dir, "work"))
	if err := unix.Mount("overlay", r.rootfs(), "overlay", 0, opts); err != nil {
		return nil, fmt.Errorf("raw %s: mount overlay: %w", id, err)
	}
	s := *spec
	proc, root, linux := *s.Process, *s.Root, *s.Linux
	// No terminal, so no console socket is needed: runc run -d then passes
	// its own stdio (/dev/null) through to init.
	proc.Terminal = false
	root.Path = r.rootfs()
	linux.CgroupsPath = rawCgroupParent + "/" + id
	s.Process, s.Root, s.Linux = &proc, &root, &linux
	data, err := json.MarshalIndent(&s, "", "  ")
	if err != nil {
		r.remove()
		return nil, fmt.Errorf("raw %s: encode config.json: %w", id, err)
	}
	if err := os.WriteFile(filepath.Join(r.dir, "bundle", "config.json"), data, 0o600); err != nil {
		r.remove()
		return nil, fmt.Errorf("raw %s: %w", id, err)
	}
	return r, nil
}

func (r *rawContainer) rootfs() string { return filepath.Join(r.dir, "rootfs") }

// run starts the container detached and returns how long runc took; runc
// run -d returns once the container's init has been started.
func (r *rawContainer) run() (time.Duration, error) {
	// runc's complaints go to an unlinked file, not a pipe that init would
	// inherit and hold open.
	stderr, err := os.CreateTemp(r.dir, ".stderr-")
	if err != nil {
		return 0, fmt.Errorf("raw %s: %w", r.id, err)
	}
	os.Remove(stderr.Name())
	defer stderr.Close()
	cmd := exec.Command("runc", "--root", r.runcRoot, "run", "-d", "--bundle", filepath.Join(r.dir, "bundle"), r.id)
	cmd.Stderr = stderr // stdin and stdout: /dev/null
	began := time.Now()
	err = cmd.Run()
	took := time.Since(began)
	if err != nil {
		stderr.Seek(0, io.SeekStart)
		msg, _ := io.ReadAll(io.LimitReader(stderr, 4096))
		return 0, fmt.Errorf("raw %s: runc run: %w: %s", r.id, err, bytes.TrimSpace(msg))
	}
	return took, nil
}

// remove deletes the container, its cgroups, mount and files.
func (r *rawContainer) remove() error {
	var errs []error
	if out, err := exec.Command("runc", "--root", r.runcRoot, "delete", "--force", r.id).CombinedOutput(); err != nil &&
		!strings.Contains(string(out), "does not exist") {
		errs = append(errs, fmt.Errorf("raw %s: runc delete: %w: %s", r.id, err, bytes.TrimSpace(out)))
	}
	errs = append(errs, removeCgroup(rawCgroupParent+"/"+r.id))
	if err := unix.Unmount(r.rootfs(), unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		errs = append(errs, fmt.Errorf("raw %s: unmount: %w", r.id, err))
	}
	if err := os.RemoveAll(r.dir); err != nil {
		errs = append(errs, fmt.Errorf("raw %s: %w", r.id, err))
	}
	return errors.Join(errs...)
}

// sweepRaw removes whatever raw containers an interrupted or failed run
// left in rawDir, then the raw cgroup parent.
func sweepRaw(rawDir string) error {
	var errs []error
	entries, err := os.ReadDir(rawDir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		errs = append(errs, err)
	}
	for _, e := range entries {
		if e.IsDir() && e.Name() != "runc-root" {
			r := &rawContainer{id: e.Name(), dir: filepath.Join(rawDir, e.Name()), runcRoot: filepath.Join(rawDir, "runc-root")}
			errs = append(errs, r.remove())
		}
	}
	errs = append(errs, removeCgroup(rawCgroupParent))
	return errors.Join(errs...)
}

// removeCgroup removes a cgroup from every hierarchy; one already gone is
// fine.
func removeCgroup(path string) error {
	var errs []error
	for _, dir := range testenv.CgroupDirs(path) {
		if err := syscall.Rmdir(dir); err != nil && !errors.Is(err, syscall.ENOENT) {
			errs = append(errs, fmt.Errorf("remove cgroup %s: %w", dir, err))
		}
	}
	return errors.Join(errs...)
}

// unmountUnder lazily detaches every mount at or below dir, deepest first.
func unmountUnder(dir string) error {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return fmt.Errorf("read mounts: %w", err)
	}
	defer f.Close()
	var points []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// Mount points with spaces are escaped as \040; ours have none.
		if fields := strings.Fields(sc.Text()); len(fields) > 4 && hasPrefixPath(fields[4], dir) {
			points = append(points, fields[4])
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("read mounts: %w", err)
	}
	sort.Sort(sort.Reverse(sort.StringSlice(points)))
	var errs []error
	for _, p := range points {
		if err := unix.Unmount(p, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) {
			errs = append(errs, fmt.Errorf("unmount %s: %w", p, err))
		}
	}
	return errors.Join(errs...)
}
