package bench

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"slices"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/polyvisor/polyvisor/internal/evaluation/peer"
	"github.com/polyvisor/polyvisor/internal/layout"
	"github.com/polyvisor/polyvisor/internal/template"
	"github.com/polyvisor/polyvisor/pkg/api"
)

// The benchmarks learn what they need of a guest from the daemon's API
// (client.Guest: its processes, disks, confinement) and, where the API
// has nothing to say, from the host's own objects reached through the
// processes the API names (a process's cgroup, its mount table, its
// command line), as VMEnvOf reads a QEMU's command line. The one thing
// neither gives is a container's OCI bundle: no process carries it since
// one supervisor runs all of a daemon's containers, so specOf reads it in
// the guest's directory as internal/layout names it, through
// peer.ContainerSpecOf, as polyvisor bench does. No other path in the
// daemon's state directory is computed here.

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

// specOf reads the OCI spec the running polyvisor container g was
// started with, from its bundle in the guest's directory of the fixture's
// daemon: what a raw runc run of the same container is given.
func (f *fixture) specOf(g api.Guest) (*specs.Spec, error) {
	if g.State != api.StateRunning || g.Type != template.TypeContainer {
		return nil, fmt.Errorf("guest %s: want a running container, got a %s %s", g.Name, g.State, g.Type)
	}
	dir := layout.New(f.daemon.StateDir).GuestDir(g.Name)
	spec, err := peer.ContainerSpecOf(dir)
	if err != nil {
		return nil, fmt.Errorf("guest %s (%s): %w", g.Name, dir, err)
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
