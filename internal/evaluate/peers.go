package evaluate

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/polyvisor/polyvisor/internal/agent"
	"github.com/polyvisor/polyvisor/internal/benchreport"
	"github.com/polyvisor/polyvisor/internal/layout"
	"github.com/polyvisor/polyvisor/internal/peer"
	"github.com/polyvisor/polyvisor/internal/probe"
)

// peerCgroup holds the cgroups of bench's raw runc containers.
const peerCgroup = "/pv-bench-peer"

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
	"qemu":   "raw QEMU, same argv",
	"lxc":    "LXC (peer)",
	"podman": "podman (peer)",
	"virsh":  "libvirt/virsh (peer)",
}

// measurePeers runs the probe and times the boot of each peer asked for,
// each on the busybox template polyvisor's guests use, the same way.
func (r *runner) measurePeers(ctx context.Context, host benchreport.Host) []benchreport.Class {
	var classes []benchreport.Class
	for _, name := range r.opts.Peers {
		if ctx.Err() != nil {
			break
		}
		c := benchreport.Class{Name: benchreport.PeerPrefix + name, Label: peerLabels[name], Arch: host.Arch}
		if err := peer.Installed(name); err != nil {
			c.Reason = err.Error()
			classes = append(classes, c)
			continue
		}
		c.Works = true
		var boots []float64
		var out *probe.Output
		var err error
		switch name {
		case "runc":
			boots, out, err = r.peerRunc(ctx)
		case "qemu":
			c.Accel = host.Accel
			c.Label = fmt.Sprintf("%s (%s)", c.Label, strings.ToUpper(host.Accel))
			boots, out, err = r.peerQEMU(ctx)
		default:
			c.Works, c.Reason = false, "installed, but bench does not drive it yet"
			classes = append(classes, c)
			continue
		}
		c.Probe = out
		if err != nil {
			c.ProbeError = err.Error()
		}
		boot := figureOf(benchreport.Boot, "ms", false, boots)
		if len(boots) == 0 {
			boot.Error = c.ProbeError
		}
		c.Lifecycle = []benchreport.Figure{boot}
		classes = append(classes, c)
	}
	return classes
}

// ms is a duration in milliseconds.
func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// peerRunc copies the bundle of a polyvisor container started for the
// probe and runs it with runc by hand, on an overlay of the same template:
// the boot is runc run -d, the probe runs under runc exec.
func (r *runner) peerRunc(ctx context.Context) (boots []float64, out *probe.Output, err error) {
	info, err := r.opts.Client.Server(ctx)
	if err != nil {
		return nil, nil, err
	}
	l := layout.New(info.StateDir)
	spec := specOf(benchreport.Container)
	name := namePrefix + "peer-runc"
	r.opts.Progress("raw runc: copy a polyvisor container's bundle")
	if err := r.ensureTemplate(ctx, spec); err != nil {
		return nil, nil, err
	}
	if err := r.create(ctx, spec, name, spec.memory, true); err != nil {
		r.remove(ctx, name)
		return nil, nil, fmt.Errorf("launch the guest to copy: %w", err)
	}
	oci, err := peer.ReadSpec(filepath.Join(l.GuestDir(name), "bundle", "config.json"))
	r.remove(ctx, name)
	if err != nil {
		return nil, nil, err
	}
	dir, err := os.MkdirTemp("/var/tmp", "polyvisor-peer-runc-")
	if err != nil {
		return nil, nil, err
	}
	defer func() {
		if serr := peer.SweepRunc(dir, peerCgroup); serr != nil && err == nil {
			err = serr
		}
		os.RemoveAll(dir)
	}()
	lower := filepath.Join(l.TemplatesDir(), "busybox", "rootfs")
	r.opts.Progress("raw runc: boot and probe")
	for i := range r.scale.lifecycleRuns {
		c, err := peer.PrepareRunc(dir, oci, lower, fmt.Sprintf("pv-bench-peer-%d", i), peerCgroup)
		if err != nil {
			return boots, nil, err
		}
		took, err := c.Run()
		if err == nil {
			boots = append(boots, ms(took))
			if i == r.scale.lifecycleRuns-1 {
				out, err = r.probeRunc(ctx, c)
			}
		}
		if rerr := c.Remove(); err == nil {
			err = rerr
		}
		if err != nil {
			return boots, nil, err
		}
	}
	return boots, out, nil
}

// probeRunc runs the probe in a raw runc container.
func (r *runner) probeRunc(ctx context.Context, c *peer.Runc) (*probe.Output, error) {
	const inGuest = "/polyvisor-probe"
	if err := c.CopyIn(filepath.Join(r.opts.ProbeDir, ProbeName(specOf(benchreport.Container).arch.GOARCH)), inGuest); err != nil {
		return nil, fmt.Errorf("copy the probe in: %w", err)
	}
	var stdout, stderr bytes.Buffer
	code, err := c.Exec(ctx, []string{"sh", "-c", "mkdir -p /var/tmp && exec " + inGuest + " --size " + r.opts.Size + " --dir /var/tmp"}, &stdout, &stderr)
	if err == nil && code != 0 {
		err = fmt.Errorf("exit code %d: %s", code, lastLine(stderr.String()))
	}
	if err != nil {
		return nil, fmt.Errorf("run the probe: %w", err)
	}
	return parseProbe(stdout.Bytes())
}

// peerQEMU reads the QEMU command line of a polyvisor VM started for the
// probe, deletes that VM and runs the same command line by hand on a fresh
// overlay of the same base disk: the boot ends when the agent answers.
func (r *runner) peerQEMU(ctx context.Context) (boots []float64, out *probe.Output, err error) {
	spec := specOf(benchreport.VM)
	name := namePrefix + "peer-qemu"
	r.opts.Progress("raw QEMU: read a polyvisor VM's command line")
	if err := r.ensureTemplate(ctx, spec); err != nil {
		return nil, nil, err
	}
	argv, base, err := r.vmArgv(ctx, spec, name)
	r.remove(ctx, name)
	if err != nil {
		return nil, nil, err
	}
	r.opts.Progress("raw QEMU: boot and probe")
	for i := range r.scale.lifecycleRuns {
		took, o, err := r.bootQEMU(ctx, argv, base, i == r.scale.lifecycleRuns-1)
		if err != nil {
			return boots, nil, err
		}
		boots = append(boots, ms(took))
		out = o
	}
	return boots, out, nil
}

// vmArgv starts a VM of the class and returns its QEMU's argv and the base
// disk its overlay stands on.
func (r *runner) vmArgv(ctx context.Context, spec guestSpec, name string) ([]string, string, error) {
	if err := r.create(ctx, spec, name, spec.memory, true); err != nil {
		return nil, "", fmt.Errorf("launch the guest to copy: %w", err)
	}
	g, err := r.opts.Client.Guest(ctx, name)
	if err != nil {
		return nil, "", err
	}
	argv, err := peer.Cmdline(g.PID)
	if err != nil {
		return nil, "", fmt.Errorf("read QEMU's command line: %w", err)
	}
	disk := peer.RootDisk(argv)
	if disk == "" {
		return nil, "", fmt.Errorf("no root disk in QEMU's command line")
	}
	base, err := peer.BackingOf(disk)
	return argv, base, err
}

// bootQEMU boots QEMU by hand once, times it until its agent answers and,
// with probe, runs the probe in it; QEMU and its files are gone when it
// returns.
func (r *runner) bootQEMU(ctx context.Context, argv []string, base string, withProbe bool) (time.Duration, *probe.Output, error) {
	dir, err := os.MkdirTemp("/var/tmp", "polyvisor-peer-qemu-")
	if err != nil {
		return 0, nil, err
	}
	defer os.RemoveAll(dir)
	disk, err := peer.Overlay(base, dir)
	if err != nil {
		return 0, nil, err
	}
	began := time.Now()
	q, err := peer.StartQEMU(argv, disk, dir)
	if err != nil {
		return 0, nil, err
	}
	defer q.Stop()
	actx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	c, err := q.Agent(actx)
	if err != nil {
		return 0, nil, err
	}
	defer c.Close()
	took := time.Since(began)
	if !withProbe {
		return took, nil, nil
	}
	out, err := r.probeAgent(ctx, c)
	return took, out, err
}

// probeAgent copies the probe into a VM through its agent and runs it.
func (r *runner) probeAgent(ctx context.Context, c *agent.Client) (*probe.Output, error) {
	bin, err := os.Open(filepath.Join(r.opts.ProbeDir, ProbeName(specOf(benchreport.VM).arch.GOARCH)))
	if err != nil {
		return nil, err
	}
	defer bin.Close()
	const inGuest = "/var/tmp/polyvisor-probe"
	var stdout, stderr bytes.Buffer
	code, err := c.Exec(ctx, agent.ExecRequest{Command: []string{"sh", "-c", "mkdir -p /var/tmp && cat > " + inGuest + " && chmod 755 " + inGuest}}, bin, nil, &stderr, nil)
	if err == nil && code != 0 {
		err = fmt.Errorf("exit code %d: %s", code, strings.TrimSpace(stderr.String()))
	}
	if err != nil {
		return nil, fmt.Errorf("copy the probe in: %w", err)
	}
	stderr.Reset()
	code, err = c.Exec(ctx, agent.ExecRequest{Command: []string{inGuest, "--size", r.opts.Size, "--dir", "/var/tmp"}}, nil, &stdout, &stderr, nil)
	if err == nil && code != 0 {
		err = fmt.Errorf("exit code %d: %s", code, lastLine(stderr.String()))
	}
	if err != nil {
		return nil, fmt.Errorf("run the probe: %w", err)
	}
	return parseProbe(stdout.Bytes())
}
