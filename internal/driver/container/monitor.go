package container

import (
	"context"
	"fmt"
	"path/filepath"

	"golang.org/x/sys/unix"

	"github.com/polyvisor/polyvisor/internal/guest"
	"github.com/polyvisor/polyvisor/internal/monitor"
	"github.com/polyvisor/polyvisor/internal/monitor/monitored"
	"github.com/polyvisor/polyvisor/internal/network"
	"github.com/polyvisor/polyvisor/internal/procutil"
	"github.com/polyvisor/polyvisor/pkg/api"
)

const (
	sigTERM = unix.SIGTERM
	sigKILL = unix.SIGKILL
	// sigPowerOffSystemd is systemd's "power off": SIGRTMIN+4, as glibc
	// numbers real-time signals (its SIGRTMIN is 34; the kernel's 32 and
	// 33 are the threading library's).
	sigPowerOffSystemd = unix.Signal(34 + 4)
)

// initIdentity is the container's init, as the monitor reported it.
func initIdentity(def *guest.Definition) procutil.Identity { return monitored.Process(def) }

// ConsoleLog implements driver.Consoler.
func (d *Driver) ConsoleLog(def *guest.Definition) string {
	return filepath.Join(d.guestDir(def), "console.log")
}

// beginMonitor starts polyvisor-monitor, which will run the container
// with runc and keep its console, once runMonitored lets it.
func (d *Driver) beginMonitor(def *guest.Definition) (*monitored.Pending, error) {
	runtime, err := d.runtimePath()
	if err != nil {
		return nil, fmt.Errorf("%w: start %s: %w", api.ErrNotAvailable, def.Name, err)
	}
	p, err := d.monitors.Begin(monitor.Config{
		ID: def.Name, Bundle: filepath.Join(d.guestDir(def), bundleDir), Runc: runtime,
		RuncRoot: d.opts.Layout.RuncRoot(), Dir: d.runDir(def), Log: d.ConsoleLog(def), LogMax: monitor.DefaultLogMax,
	})
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", def.Name, err)
	}
	return p, nil
}

// runMonitored lets the monitor run the container, once its bundle and
// root tree are ready, and plugs its network.
func (d *Driver) runMonitored(ctx context.Context, def *guest.Definition, p *monitored.Pending) (guest.Status, error) {
	status, err := p.Go(ctx)
	if err != nil {
		return status, fmt.Errorf("start %s: %w", def.Name, err)
	}
	status.HandleVersion, status.Handle = handleVersion, d.newHandle(def).encode()
	// The guest's eth0, in the network namespace runc made; its init's
	// DHCP client waits for it.
	for _, n := range def.Networks {
		if err := network.PlugVeth(network.GuestNIC(def, n), status.InitPID); err != nil {
			started := def.Clone()
			started.Status = status
			ctx := context.WithoutCancel(ctx)
			d.Stop(ctx, started, 0)
			d.Cleanup(ctx, started)
			return guest.Status{}, fmt.Errorf("start %s: %w", def.Name, err)
		}
	}
	return status, nil
}
