package bench

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/polyvisor/polyvisor/internal/evaluation/peer"
	"github.com/polyvisor/polyvisor/pkg/api"
)

// The benchmarks learn what they need of a guest from the daemon's API
// (client.Guest: its processes, disks, confinement) and, where the API
// has nothing to say, from the host's own objects reached through the
// processes the API names (a process's cgroup, its mount table, its
// command line), as VMEnvOf reads a QEMU's command line. They never
// compute paths in the daemon's state directory: its layout is the
// daemon's business.

// cgroupOf is the cgroup process pid runs in, as /proc/PID/cgroup names
// it: in controller's hierarchy under cgroup v1, the unified one under v2.
func cgroupOf(pid int, controller string) (string, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		return "", err
	}
	defer f.Close()
	unified := ""
	s := bufio.NewScanner(f)
	for s.Scan() {
		// hierarchy-ID:controller-list:path
		fields := strings.SplitN(s.Text(), ":", 3)
		if len(fields) != 3 {
			continue
		}
		if slices.Contains(strings.Split(fields[1], ","), controller) {
			return fields[2], nil
		}
		if fields[0] == "0" && fields[1] == "" {
			unified = fields[2]
		}
	}
	if err := s.Err(); err != nil {
		return "", err
	}
	if unified == "" {
		return "", fmt.Errorf("process %d: no %s cgroup in /proc/%d/cgroup", pid, controller, pid)
	}
	return unified, nil
}

// specOf reads the OCI spec a running polyvisor container was started
// with, from the bundle its monitor runs (the monitor's --bundle
// argument): what a raw runc run of the same container is given.
func specOf(g api.Guest) (*specs.Spec, error) {
	if g.State != api.StateRunning || g.MonitorPID == 0 {
		return nil, fmt.Errorf("guest %s: want a running container with a monitor, got %s (monitor %d)", g.Name, g.State, g.MonitorPID)
	}
	argv, err := peer.Cmdline(g.MonitorPID)
	if err != nil {
		return nil, fmt.Errorf("guest %s: monitor's command line: %w", g.Name, err)
	}
	i := slices.Index(argv, "--bundle")
	if i < 0 || i+1 == len(argv) {
		return nil, fmt.Errorf("guest %s: its monitor %d has no --bundle in %q", g.Name, g.MonitorPID, argv)
	}
	spec, err := peer.ReadSpec(filepath.Join(argv[i+1], "config.json"))
	if err != nil {
		return nil, fmt.Errorf("guest %s: %w", g.Name, err)
	}
	return spec, nil
}

// templateRootfs is a container template's root tree, as the API says.
func (f *fixture) templateRootfs(ctx context.Context, name string) (string, error) {
	t, err := f.client.Template(ctx, name)
	if err != nil {
		return "", err
	}
	if t.Rootfs == "" {
		return "", fmt.Errorf("template %s (%s) has no root tree", name, t.Type)
	}
	return t.Rootfs, nil
}

// diskPath is the host file of a guest's disk, as the API says.
func (f *fixture) diskPath(ctx context.Context, guestName, disk string) (string, error) {
	g, err := f.client.Guest(ctx, guestName)
	if err != nil {
		return "", err
	}
	for _, d := range g.Disks {
		if d.Name == disk && d.Path != "" {
			return d.Path, nil
		}
	}
	return "", fmt.Errorf("guest %s: no disk %s with a path in %+v", guestName, disk, g.Disks)
}
