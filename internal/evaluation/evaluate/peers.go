package evaluate

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/polyvisor/polyvisor/internal/evaluation/benchreport"
	"github.com/polyvisor/polyvisor/internal/evaluation/peer"
	"github.com/polyvisor/polyvisor/internal/evaluation/probe"
	"github.com/polyvisor/polyvisor/internal/idmap"
	"github.com/polyvisor/polyvisor/internal/layout"
)

// DefaultPeers are the peers measured unless asked otherwise: those of
// runc and QEMU that are installed.
func DefaultPeers() []string {
	var names []string
	for _, n := range []string{"runc", "qemu"} {
		if peer.Installed(n) == nil {
			names = append(names, n)
		}
	}
	return names
}

var peerLabels = map[string]string{
	"runc":   "raw runc run (peer)",
	"crun":   "raw crun run (peer)",
	"qemu":   "raw QEMU, same argv",
	"lxc":    "LXC (peer)",
	"podman": "podman (peer)",
	"incus":  "Incus (peer)",
	"virsh":  "libvirt/virsh (peer)",
}

// peerDirPrefix starts the name of each peer's own directory in /var/tmp.
const peerDirPrefix = "polyvisor-peer-"

// peerRun is a peer bench drives: its class in the report, its manager
// and the guest the rounds run the probe in.
type peerRun struct {
	name  string
	class int // index into Report.Classes
	mgr   peer.Manager
	dir   string
	guest string // the probe guest, "" when it did not start
}

// peerGuest is the id of a peer's guest the rounds run the probe in.
const peerGuest = "pv-bench-probe"

// setupPeers adds a class for each peer asked for and gets those that can
// run ready: set up, their lifecycle timed, their idle memory read and a
// guest running the rounds will probe. Close (closePeers) undoes all of it.
func (r *runner) setupPeers(ctx context.Context, report *benchreport.Report, guests probeGuests) []*peerRun {
	var runs []*peerRun
	var tree *peerTree
	for _, name := range r.opts.Peers {
		if ctx.Err() != nil {
			break
		}
		c := benchreport.Class{Name: benchreport.PeerPrefix + name, Label: peerLabels[name], Arch: report.Host.Arch}
		vm := slices.Contains(peer.VMPeers, name)
		if vm {
			c.Accel = report.Host.Accel
			c.Label = fmt.Sprintf("%s (%s)", c.Label, strings.ToUpper(report.Host.Accel))
		}
		report.Classes = append(report.Classes, c)
		pc := &report.Classes[len(report.Classes)-1]
		if err := peer.Installed(name); err != nil {
			pc.Reason = err.Error()
			continue
		}
		mgr, err := peer.New(name)
		if err != nil {
			pc.Reason = err.Error()
			continue
		}
		if tree == nil {
			if tree, err = r.makePeerTree(ctx); err != nil {
				pc.Reason = "the busybox tree for peers: " + err.Error()
				tree = nil
				continue
			}
			defer tree.remove()
		}
		env, err := r.peerEnv(ctx, name, vm, tree, guests)
		if err != nil {
			pc.Reason = err.Error()
			continue
		}
		pr := &peerRun{name: name, class: len(report.Classes) - 1, mgr: mgr, dir: env.Dir}
		runs = append(runs, pr)
		pc.Works = true
		r.opts.Progress(pc.Label + ": set up")
		if err := mgr.Setup(ctx, env); err != nil {
			pc.Works, pc.Reason = false, "set up: "+err.Error()
			continue
		}
		r.opts.Progress(pc.Label + ": lifecycle")
		pc.Lifecycle = r.peerLifecycle(ctx, mgr)
		if !slices.ContainsFunc(pc.Lifecycle, func(f benchreport.Figure) bool { return f.Name == benchreport.Boot && len(f.Runs) > 0 }) {
			// Not one guest booted: the peer cannot run here, in its words.
			pc.Works, pc.Reason = false, lifecycleError(pc.Lifecycle)
			continue
		}
		r.opts.Progress(pc.Label + ": idle memory and the probe's guest")
		pc.Density, pr.guest, err = r.peerProbeGuest(ctx, mgr, env, vm)
		if err != nil {
			pc.ProbeError = err.Error()
		}
	}
	return runs
}

// lifecycleError is the first error of a class's lifecycle figures.
func lifecycleError(figs []benchreport.Figure) string {
	for _, f := range figs {
		if f.Error != "" {
			return f.Error
		}
	}
	return "no guest booted"
}

// peerLifecycle times a peer's provision, boot, stop and delete.
func (r *runner) peerLifecycle(ctx context.Context, m peer.Manager) []benchreport.Figure {
	step := func(f func(context.Context, string) error, timeout time.Duration) func(string) error {
		return func(id string) error {
			ctx, cancel := context.WithTimeout(ctx, timeout)
			defer cancel()
			return f(ctx, id)
		}
	}
	return timeLifecycle(r.scale.lifecycleRuns, func(i int) string { return fmt.Sprintf("pv-bench-life-%d", i) }, lifecycleSteps{
		create: step(m.Create, peer.StepTimeout),
		start:  step(m.Start, peer.StartTimeout),
		stop:   step(m.Stop, peer.StepTimeout),
		delete: step(m.Delete, peer.StepTimeout),
		cleanup: func(id string) {
			ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), peer.StepTimeout)
			defer cancel()
			m.Stop(ctx, id)
			m.Delete(ctx, id)
		},
	})
}

// peerProbeGuest starts the peer's guest for the rounds, reads its idle
// memory once it has settled and copies the probe in.
func (r *runner) peerProbeGuest(ctx context.Context, m peer.Manager, env peer.Env, vm bool) (*benchreport.Density, string, error) {
	if err := m.Create(ctx, peerGuest); err != nil {
		return nil, "", fmt.Errorf("create the probe's guest: %w", err)
	}
	sctx, cancel := context.WithTimeout(ctx, peer.StartTimeout)
	defer cancel()
	if err := m.Start(sctx, peerGuest); err != nil {
		return nil, "", fmt.Errorf("start the probe's guest: %w", err)
	}
	select {
	case <-time.After(2 * time.Second): // settle into idleness, as density's guests do
	case <-ctx.Done():
		return nil, "", ctx.Err()
	}
	d := &benchreport.Density{Guests: 1}
	if pids, err := m.PIDs(ctx, peerGuest); err != nil {
		d.Error = err.Error()
	} else if pss, err := pidsPSS(pids); err != nil {
		d.Error = fmt.Sprintf("measure the guest's memory: %v", err)
	} else {
		d.PerGuestBytes = pss
	}
	goarch := runtime.GOARCH
	if vm && env.VM != nil {
		goarch = specOf(benchreport.VM).arch.GOARCH
	}
	bin, err := os.Open(filepath.Join(r.opts.ProbeDir, ProbeName(goarch)))
	if err != nil {
		return d, "", err
	}
	defer bin.Close()
	var stderr bytes.Buffer
	code, err := m.Exec(ctx, peerGuest, copyProbeCommand, bin, &stderr, &stderr)
	if err == nil && code != 0 {
		err = fmt.Errorf("exit code %d: %s", code, strings.TrimSpace(stderr.String()))
	}
	if err != nil {
		return d, "", fmt.Errorf("copy the probe in: %w", err)
	}
	return d, peerGuest, nil
}

// probePeer runs the probe in a peer's probe guest, for a round.
func (r *runner) probePeer(ctx context.Context, p *peerRun) (*probe.Output, error) {
	var stdout, stderr bytes.Buffer
	code, err := p.mgr.Exec(ctx, p.guest, r.probeArgs(inGuestProbe, "/var/tmp"), nil, &stdout, &stderr)
	if err == nil && code != 0 {
		err = fmt.Errorf("exit code %d: %s", code, lastLine(stderr.String()))
	}
	if err != nil {
		return nil, fmt.Errorf("run the probe: %w", err)
	}
	return parseProbe(stdout.Bytes())
}

// pidsPSS is the proportional set size of pids and their descendants.
func pidsPSS(pids []int) (int64, error) {
	if len(pids) == 0 {
		return 0, errors.New("the peer named no process of the guest")
	}
	return treePSS(pids, nil)
}

// closePeers removes everything the peers made; it runs even when ctx is
// cancelled, and reports what it could not remove.
func closePeers(ctx context.Context, runs []*peerRun) error {
	var errs []error
	for _, p := range runs {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 3*time.Minute)
		if err := p.mgr.Close(cctx); err != nil {
			errs = append(errs, fmt.Errorf("peer %s: %w", p.name, err))
		}
		cancel()
		if err := os.RemoveAll(p.dir); err != nil {
			errs = append(errs, fmt.Errorf("peer %s: %w", p.name, err))
		}
	}
	return errors.Join(errs...)
}

// peerPIDs are the processes of the peers' probe guests, for the load
// sampler to tell bench's own work from other work.
func peerPIDs(ctx context.Context, runs []*peerRun) []int {
	var pids []int
	for _, p := range runs {
		if p.guest != "" {
			ps, _ := p.mgr.PIDs(ctx, p.guest)
			pids = append(pids, ps...)
		}
	}
	return pids
}

// probeGuests are polyvisor's probe guests, by class: a peer's Env is read
// from them.
type probeGuests map[string]string

// peerEnv gives a peer its own directory, the busybox tree and, as it
// needs, the OCI spec of polyvisor's container or the boot of its VM.
func (r *runner) peerEnv(ctx context.Context, name string, vm bool, tree *peerTree, guests probeGuests) (env peer.Env, err error) {
	env = peer.Env{RootTar: tree.tar, RootFS: tree.rootfs, CPUs: runtime.NumCPU(), MemoryMiB: 512}
	switch {
	case vm:
		if env.VM, err = r.vmEnv(ctx, guests); err != nil {
			return env, fmt.Errorf("read polyvisor's VM: %w", err)
		}
		env.VM.DiskBytes = vmDiskBytes
	case name == "runc" || name == "crun":
		if env.Spec, err = r.containerSpec(ctx, guests); err != nil {
			return env, fmt.Errorf("read polyvisor's container: %w", err)
		}
	}
	env.Dir, err = os.MkdirTemp("/var/tmp", peerDirPrefix+name+"-")
	return env, err
}

// containerSpec reads the OCI spec of polyvisor's container probe guest,
// or of one launched for it.
func (r *runner) containerSpec(ctx context.Context, guests probeGuests) (*specs.Spec, error) {
	info, err := r.opts.Client.Server(ctx)
	if err != nil {
		return nil, err
	}
	name, done, err := r.guestToRead(ctx, guests, benchreport.Container)
	if err != nil {
		return nil, err
	}
	defer done()
	return peer.ContainerSpecOf(layout.New(info.StateDir).GuestDir(name))
}

// vmEnv reads the boot of polyvisor's VM probe guest, or of one launched
// for it.
func (r *runner) vmEnv(ctx context.Context, guests probeGuests) (*peer.VMEnv, error) {
	name, done, err := r.guestToRead(ctx, guests, benchreport.VM)
	if err != nil {
		return nil, err
	}
	defer done()
	g, err := r.opts.Client.Guest(ctx, name)
	if err != nil {
		return nil, err
	}
	return peer.VMEnvOf(g.PID)
}

// guestToRead is a running polyvisor guest of the class for a peer to
// copy: the class's probe guest, or one launched for it, which done
// removes.
func (r *runner) guestToRead(ctx context.Context, guests probeGuests, class string) (name string, done func(), err error) {
	if name, ok := guests[class]; ok {
		return name, func() {}, nil
	}
	spec := specOf(class)
	name = namePrefix + "peer-" + class
	if err := r.ensureTemplate(ctx, spec); err != nil {
		return "", nil, err
	}
	if err := r.create(ctx, spec, name, spec.memory, true); err != nil {
		r.remove(ctx, name)
		return "", nil, fmt.Errorf("launch the guest to copy: %w", err)
	}
	return name, func() { r.remove(ctx, name) }, nil
}

// peerTree is the busybox template's tree as peers take it: a copy of its
// rootfs (owned by the shared id map, in a directory the guests' mapped
// root can traverse, which the template's is not) and a tar of it owned
// by root.
type peerTree struct {
	dir, rootfs, tar string
}

func (t *peerTree) remove() { os.RemoveAll(t.dir) }

// makePeerTree copies the busybox template's rootfs and writes its tar.
func (r *runner) makePeerTree(ctx context.Context) (_ *peerTree, err error) {
	info, err := r.opts.Client.Server(ctx)
	if err != nil {
		return nil, err
	}
	spec := specOf(benchreport.Container)
	if err := r.ensureTemplate(ctx, spec); err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("/var/tmp", peerDirPrefix+"tree-")
	if err != nil {
		return nil, err
	}
	t := &peerTree{dir: dir, rootfs: filepath.Join(dir, "rootfs"), tar: filepath.Join(dir, "rootfs.tar")}
	defer func() {
		if err != nil {
			t.remove()
		}
	}()
	if err := os.Chmod(dir, 0o711); err != nil {
		return nil, err
	}
	template := filepath.Join(layout.New(info.StateDir).TemplatesDir(), "busybox", "rootfs")
	if err := idmap.CopyTree(ctx, template, t.rootfs, nil); err != nil {
		return nil, err
	}
	if err := writeRootTar(t.rootfs, t.tar, int(idmap.Default().HostBase)); err != nil {
		return nil, err
	}
	return t, nil
}

// writeRootTar writes the tree at root to a tar at dst, its owners shifted
// down by base (the id map's host side) so that root inside is uid 0.
// The tree is a template's: regular files, directories, symlinks and
// device nodes; anything else is refused.
func writeRootTar(root, dst string, base int) error {
	f, err := os.Create(dst)
	if err != nil {
		return err
	}
	tw := tar.NewWriter(f)
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(root, path)
		if err != nil || rel == "." {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		link := ""
		if fi.Mode()&fs.ModeSymlink != 0 {
			if link, err = os.Readlink(path); err != nil {
				return err
			}
		}
		hdr, err := tar.FileInfoHeader(fi, link)
		if err != nil {
			return fmt.Errorf("%s: %w", rel, err)
		}
		hdr.Name = rel
		if fi.IsDir() {
			hdr.Name += "/"
		}
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			hdr.Uid, hdr.Gid = max(int(st.Uid)-base, 0), max(int(st.Gid)-base, 0)
		}
		hdr.Uname, hdr.Gname = "", ""
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if !fi.Mode().IsRegular() {
			return nil
		}
		src, err := os.Open(path)
		if err != nil {
			return err
		}
		defer src.Close()
		_, err = io.Copy(tw, src)
		return err
	})
	if err == nil {
		err = tw.Close()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("tar of %s: %w", root, err)
	}
	return nil
}
