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

// monitorConfig is how the supervisor runs def's container with runtime.
func (d *Driver) monitorConfig(def *guest.Definition, runtime string) monitor.Config {
	return monitor.Config{
		ID: def.Name, Bundle: filepath.Join(d.guestDir(def), bundleDir), Runc: runtime,
		RuncRoot: d.opts.Layout.RuncRoot(), Dir: d.runDir(def), Log: d.ConsoleLog(def), LogMax: monitor.DefaultLogMax,
	}
}

// runSupervised has the supervisor run the container, once its bundle and
// root tree are ready, and plugs its network.
func (d *Driver) runSupervised(ctx context.Context, def *guest.Definition) (guest.Status, error) {
	runtime, err := d.runtimePath()
	if err != nil {
		return guest.Status{}, fmt.Errorf("%w: start %s: %w", api.ErrNotAvailable, def.Name, err)
	}
	status, err := d.supervisor.Start(ctx, d.monitorConfig(def, runtime))
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
