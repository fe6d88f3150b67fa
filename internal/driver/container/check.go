package container

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/polyvisor/polyvisor/internal/cgroup"
	"github.com/polyvisor/polyvisor/internal/guest"
	"github.com/polyvisor/polyvisor/internal/hostreq"
	"github.com/polyvisor/polyvisor/internal/idmap"
	"github.com/polyvisor/polyvisor/internal/runc"
	"github.com/polyvisor/polyvisor/pkg/api"
)

// hostBusybox is the static busybox the canary runs (Debian's busybox-static).
const hostBusybox = hostreq.StaticBusybox

// Check implements driver.Driver: it really runs a tiny container, in a
// user namespace and with limits as a guest would get, instead of trusting
// that the runtime binary exists.
func (d *Driver) Check(ctx context.Context) (v api.ClassVerdict) {
	began := time.Now()
	v = api.ClassVerdict{Class: Class, Details: map[string]string{"runtime": d.opts.Runtime, "cgroups": cgroup.Mode()}}
	defer func() { v.Duration = time.Since(began).Round(time.Millisecond).String() }()
	runtime, err := d.runtimePath()
	if err != nil {
		v.Reason = err.Error()
		return v
	}
	if version, err := runc.New(runtime, "").Version(ctx); err == nil {
		v.Details["runtimeVersion"] = version
	}
	if err := d.canary(ctx, runtime); err != nil {
		v.Reason = err.Error()
		if filepath.Base(runtime) == "crun" && cgroup.Mode() == "hybrid" {
			v.Reason += " (crun refuses hybrid cgroups: use runc on this host)"
		}
		return v
	}
	v.Works = true
	v.Reason = fmt.Sprintf("a busybox container ran in a user namespace under %s with %s cgroups", filepath.Base(runtime), cgroup.Mode())
	return v
}

// canary runs `busybox true` in a throw-away bundle with every namespace
// and limit a guest gets, and removes all of it afterwards.
func (d *Driver) canary(ctx context.Context, runtime string) error {
	if _, err := hostreq.Lookup(hostBusybox); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	dir, err := os.MkdirTemp("", "polyvisor-canary-")
	if err != nil {
		return fmt.Errorf("canary: %w", err)
	}
	defer os.RemoveAll(dir)
	if err := os.Chmod(dir, 0o711); err != nil { // traversable by the mapped root
		return fmt.Errorf("canary: %w", err)
	}
	rootfs := filepath.Join(dir, "rootfs")
	for _, sub := range []string{"bin", "proc", "dev", "sys", "tmp", "run"} {
		if err := os.MkdirAll(filepath.Join(rootfs, sub), 0o755); err != nil {
			return fmt.Errorf("canary: %w", err)
		}
	}
	data, err := os.ReadFile(hostBusybox)
	if err != nil {
		return fmt.Errorf("canary: %w", err)
	}
	if err := os.WriteFile(filepath.Join(rootfs, "bin", "busybox"), data, 0o755); err != nil {
		return fmt.Errorf("canary: %w", err)
	}
	if err := idmap.ShiftTree(ctx, rootfs, idmap.ShiftUp(idmap.Default())); err != nil {
		return fmt.Errorf("canary: %w", err)
	}
	id := fmt.Sprintf("canary-%d", time.Now().UnixNano())
	def := &guest.Definition{Name: id, CPUs: 1, Memory: 64 << 20, Processes: 64}
	spec, err := buildSpec(specInput{
		Def: def, Rootfs: rootfs, CgroupPath: d.opts.Layout.GuestCgroup(id),
		Args: []string{"/bin/busybox", "true"},
	})
	if err != nil {
		return err
	}
	if err := writeBundle(filepath.Join(dir, "bundle"), spec); err != nil {
		return err
	}
	rt := &runc.Runtime{Binary: runtime, Root: filepath.Join(dir, "state"), LogDir: dir}
	runErr := rt.Run(ctx, id, runc.RunOpts{Bundle: filepath.Join(dir, "bundle")})
	delCtx, cancelDel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	rt.Delete(delCtx, id, true) // gone already when it ran
	cancelDel()
	cgroup.Remove(d.opts.Layout.GuestCgroup(id))
	if runErr != nil {
		return fmt.Errorf("canary container failed: %w", runErr)
	}
	return nil
}

// runtimePath finds the OCI runtime: runc and crun through the declared host
// requirements (a missing one names its package), any other by its path.
func (d *Driver) runtimePath() (string, error) {
	name := d.opts.Runtime
	if strings.Contains(name, "/") {
		if _, err := os.Stat(name); err != nil {
			return "", fmt.Errorf("OCI runtime %s: %w", name, err)
		}
		return name, nil
	}
	if _, declared := hostreq.Find(name); !declared {
		return "", fmt.Errorf("OCI runtime %s: give runc, crun or the runtime's path", name)
	}
	return hostreq.Lookup(name)
}
