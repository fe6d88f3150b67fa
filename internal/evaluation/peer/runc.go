package peer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/polyvisor/polyvisor/internal/idmap"
	"github.com/polyvisor/polyvisor/internal/runc"
)

// Runc is a container run by an OCI runtime (runc, or crun) directly from
// a copy of a polyvisor guest's config.json, on an overlay of the
// template's rootfs of its own.
type Runc struct {
	ID       string
	Runtime  string // the OCI runtime's binary: runc ("" too) or crun
	Dir      string // bundle/, rootfs/ (overlay mount), upper/, work/
	RuncRoot string // the runtime's --root, shared by the containers of one Dir's parent
	Cgroup   string // the container's cgroup path
}

// stateRootName is the runtime's --root under the containers' parent.
const stateRootName = "runc-root"

// runtime is the OCI runtime's binary.
func (r *Runc) runtime() string {
	if r.Runtime == "" {
		return "runc"
	}
	return r.Runtime
}

// rt is the container's runtime with its --root, through the one wrapper
// (which bounds how long a child holding its output can hold us). Its log,
// which a container's init inherits as stderr, goes in the container's
// directory, unlinked.
func (r *Runc) rt() *runc.Runtime {
	return &runc.Runtime{Binary: r.runtime(), Root: r.RuncRoot, LogDir: r.Dir}
}

// ReadSpec reads a bundle's config.json.
func ReadSpec(path string) (*specs.Spec, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read guest bundle: %w", err)
	}
	var spec specs.Spec
	if err := json.Unmarshal(data, &spec); err != nil {
		return nil, fmt.Errorf("decode %s: %w", path, err)
	}
	return &spec, nil
}

// runcOf names the container id's files under parent.
func runcOf(runtime, parent, id, cgroupParent string) *Runc {
	return &Runc{ID: id, Runtime: runtime, Dir: filepath.Join(parent, id), RuncRoot: filepath.Join(parent, stateRootName), Cgroup: cgroupParent + "/" + id}
}

// PrepareRunc is PrepareOCI for runc.
func PrepareRunc(parent string, spec *specs.Spec, lower, id, cgroupParent string) (*Runc, error) {
	return PrepareOCI("runc", parent, spec, lower, id, cgroupParent)
}

// PrepareOCI makes the bundle of container id under parent, for runtime
// (runc or crun), and mounts its overlay rootfs over lower (a template
// rootfs, owned by the container's id map); its cgroup goes under
// cgroupParent. None of this is part of the container's boot, which is
// the runtime's run alone. On failure it leaves nothing.
func PrepareOCI(runtime, parent string, spec *specs.Spec, lower, id, cgroupParent string) (_ *Runc, err error) {
	r := runcOf(runtime, parent, id, cgroupParent)
	defer func() {
		if err != nil {
			r.Remove()
			err = fmt.Errorf("raw %s %s: %w", r.runtime(), id, err)
		}
	}()
	// Searchable by the container's unprivileged root, down to its rootfs.
	for _, sub := range []string{"", "bundle", "rootfs", "upper", "work"} {
		if err := os.MkdirAll(filepath.Join(r.Dir, sub), 0o711); err != nil {
			return nil, err
		}
	}
	if err := os.Chmod(parent, 0o711); err != nil {
		return nil, err
	}
	// The merged root takes the upper dir's owner and mode: the
	// container's root's, as polyvisor's does.
	owner := int(idmap.Default().HostBase)
	for _, sub := range []string{"upper", "work"} {
		p := filepath.Join(r.Dir, sub)
		if err := os.Lchown(p, owner, owner); err != nil {
			return nil, err
		}
		if err := os.Chmod(p, 0o755); err != nil {
			return nil, err
		}
	}
	opts := fmt.Sprintf("lowerdir=%s,upperdir=%s,workdir=%s", lower, r.Upper(), filepath.Join(r.Dir, "work"))
	if err := unix.Mount("overlay", r.Rootfs(), "overlay", 0, opts); err != nil {
		return nil, fmt.Errorf("mount overlay: %w", err)
	}
	s := *spec
	proc, root, linux := *s.Process, *s.Root, *s.Linux
	// No terminal, so no console socket is needed: runc run -d then passes
	// its own stdio (/dev/null) through to init.
	proc.Terminal = false
	root.Path = r.Rootfs()
	linux.CgroupsPath = r.Cgroup
	if len(linux.UIDMappings) > 0 {
		// The tree is the shared range's (the template's, no idmapped
		// mount): so is the container's map, whatever the guest's was.
		m := idmap.Default()
		ids := []specs.LinuxIDMapping{{ContainerID: 0, HostID: m.HostBase, Size: m.Size}}
		linux.UIDMappings, linux.GIDMappings = ids, ids
	}
	s.Process, s.Root, s.Linux = &proc, &root, &linux
	data, err := json.MarshalIndent(&s, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encode config.json: %w", err)
	}
	if err := os.WriteFile(filepath.Join(r.Dir, "bundle", "config.json"), data, 0o600); err != nil {
		return nil, err
	}
	return r, nil
}

// Rootfs is where the container's overlay root is mounted.
func (r *Runc) Rootfs() string { return filepath.Join(r.Dir, "rootfs") }

// Upper is the overlay's upper dir.
func (r *Runc) Upper() string { return filepath.Join(r.Dir, "upper") }

// CopyIn copies the host file src to name in the container's root
// directory, executable and owned by the container's root. The container
// runs, so its tree may hold symlinks pointing anywhere on the host: name
// is resolved inside the root (os.Root refuses to leave it), and the owner
// is set through the open file.
func (r *Runc) CopyIn(src, name string) error {
	data, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	// Through the mount, so the file lands in the upper dir.
	root, err := os.OpenRoot(r.Rootfs())
	if err != nil {
		return err
	}
	defer root.Close()
	f, err := root.OpenFile(strings.TrimPrefix(name, "/"), os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o755)
	if err != nil {
		return err
	}
	defer f.Close()
	if _, err := f.Write(data); err != nil {
		return err
	}
	owner := int(idmap.Default().HostBase)
	if err := f.Chown(owner, owner); err != nil {
		return err
	}
	return f.Close()
}

// Run starts the container detached and returns how long the runtime
// took; run -d returns once the container's init has been started. A
// failure ends with the runtime's own last line of complaint.
func (r *Runc) Run() (time.Duration, error) {
	return r.run(context.Background())
}

func (r *Runc) run(ctx context.Context) (time.Duration, error) {
	// The runtime's complaints go to an unlinked file, not a pipe that
	// init would inherit and hold open; stdin and stdout are /dev/null.
	began := time.Now()
	err := r.rt().Run(ctx, r.ID, runc.RunOpts{Bundle: filepath.Join(r.Dir, "bundle"), Detach: true})
	took := time.Since(began)
	if err != nil {
		return 0, fmt.Errorf("raw %s %s: %w", r.runtime(), r.ID, err)
	}
	return took, nil
}

// Exec runs args in the running container and returns its exit code.
func (r *Runc) Exec(ctx context.Context, args []string, stdout, stderr io.Writer) (int, error) {
	return r.ExecInput(ctx, args, nil, stdout, stderr)
}

// ExecInput runs args in the running container with the runtime's exec,
// with stdin (nil: none), and returns its exit code.
func (r *Runc) ExecInput(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) (int, error) {
	p, err := r.rt().Exec(ctx, r.ID, runc.ExecOpts{}, args)
	if err != nil {
		return -1, fmt.Errorf("raw %s %s: %w", r.runtime(), r.ID, err)
	}
	p.Cmd.Stdin, p.Cmd.Stdout, p.Cmd.Stderr = stdin, stdout, stderr
	if err := p.Start(); err != nil {
		return -1, fmt.Errorf("raw %s %s: %w", r.runtime(), r.ID, err)
	}
	code, err := p.Wait()
	if err != nil {
		return -1, fmt.Errorf("raw %s %s: %w", r.runtime(), r.ID, err)
	}
	return code, nil
}

// Remove deletes the container, its cgroup, mount and files; what is
// already gone is fine.
func (r *Runc) Remove() error { return r.remove(context.Background()) }

func (r *Runc) remove(ctx context.Context) error {
	var errs []error
	if err := r.rt().Delete(ctx, r.ID, true); err != nil && !runc.IsNotExist(err) {
		errs = append(errs, fmt.Errorf("raw %s %s: %w", r.runtime(), r.ID, err))
	}
	errs = append(errs, RemoveCgroup(r.Cgroup))
	if err := unix.Unmount(r.Rootfs(), unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		errs = append(errs, fmt.Errorf("raw %s %s: unmount: %w", r.runtime(), r.ID, err))
	}
	if err := os.RemoveAll(r.Dir); err != nil {
		errs = append(errs, fmt.Errorf("raw %s %s: %w", r.runtime(), r.ID, err))
	}
	return errors.Join(errs...)
}

// SweepRunc is SweepOCI for runc.
func SweepRunc(parent, cgroupParent string) error { return SweepOCI("runc", parent, cgroupParent) }

// SweepOCI removes whatever raw containers of runtime an interrupted or
// failed run left under parent, then the cgroup parent.
func SweepOCI(runtime, parent, cgroupParent string) error {
	var errs []error
	entries, err := os.ReadDir(parent)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		errs = append(errs, err)
	}
	for _, e := range entries {
		if e.IsDir() && e.Name() != stateRootName {
			errs = append(errs, runcOf(runtime, parent, e.Name(), cgroupParent).Remove())
		}
	}
	errs = append(errs, RemoveCgroup(cgroupParent))
	return errors.Join(errs...)
}

// RemoveCgroup removes a cgroup from every hierarchy; one already gone is
// fine.
func RemoveCgroup(path string) error {
	dirs, _ := filepath.Glob("/sys/fs/cgroup/*" + path) // cgroup v1, hybrid
	if _, err := os.Stat("/sys/fs/cgroup" + path); err == nil {
		dirs = append(dirs, "/sys/fs/cgroup"+path) // cgroup v2
	}
	var errs []error
	for _, dir := range dirs {
		if err := syscall.Rmdir(dir); err != nil && !errors.Is(err, syscall.ENOENT) {
			errs = append(errs, fmt.Errorf("remove cgroup %s: %w", dir, err))
		}
	}
	return errors.Join(errs...)
}
