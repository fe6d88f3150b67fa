package libvirt

import (
	"context"
	"fmt"
	"time"

	golibvirt "github.com/digitalocean/go-libvirt"

	"github.com/polyvisor/polyvisor/internal/vendorhost"
)

// defaultStopTimeout is Stop's wait when the caller gives none.
const defaultStopTimeout = 30 * time.Second

// Start starts a stopped domain (virDomainCreate); a running one is left
// as it is.
func (h *Host) Start(ctx context.Context, name string) error {
	d, s, err := h.lookupState(ctx, name)
	if err != nil {
		return err
	}
	switch s {
	case golibvirt.DomainRunning, golibvirt.DomainBlocked:
		return nil
	case golibvirt.DomainPaused:
		return h.c.call(ctx, "resume "+name, callTimeout, func(l *golibvirt.Libvirt) error { return l.DomainResume(d) })
	}
	return h.c.call(ctx, "start "+name, slowCallTimeout, func(l *golibvirt.Libvirt) error { return l.DomainCreate(d) })
}

// Stop asks the guest to shut down (ACPI for QEMU, the init signal for
// LXC), waits up to timeout for it to be shut off, then destroys it
// (libvirt's power off); force destroys at once. A stopped domain is
// left as it is.
func (h *Host) Stop(ctx context.Context, name string, timeout time.Duration, force bool) error {
	d, s, err := h.lookupState(ctx, name)
	if err != nil {
		return err
	}
	if s == golibvirt.DomainShutoff {
		return nil
	}
	if timeout <= 0 {
		timeout = defaultStopTimeout
	}
	if !force && s != golibvirt.DomainPaused {
		err := h.c.call(ctx, "shut down "+name, callTimeout, func(l *golibvirt.Libvirt) error { return l.DomainShutdown(d) })
		if err == nil {
			if h.waitShutoff(ctx, d, timeout) == nil {
				return nil
			}
		}
		if ctx.Err() != nil {
			return fmt.Errorf("stop %s: %w", name, ctx.Err())
		}
	}
	err = h.c.call(ctx, "power off "+name, slowCallTimeout, func(l *golibvirt.Libvirt) error { return l.DomainDestroy(d) })
	if err != nil {
		return err
	}
	return h.waitShutoff(ctx, d, 30*time.Second)
}

// waitShutoff polls the domain's state until it is shut off.
func (h *Host) waitShutoff(ctx context.Context, d golibvirt.Domain, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		s, err := h.state(ctx, d)
		if err != nil {
			return err
		}
		if s == golibvirt.DomainShutoff {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w: %s is still %s after %s", vendorhost.ErrConflict, d.Name, stateName(s), timeout)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// Restart reboots a running guest through libvirt (ACPI or the guest
// agent, as the driver does it); when the driver cannot, or the guest
// is stopped, it is Stop then Start.
func (h *Host) Restart(ctx context.Context, name string) error {
	d, s, err := h.lookupState(ctx, name)
	if err != nil {
		return err
	}
	if s == golibvirt.DomainRunning || s == golibvirt.DomainBlocked {
		err := h.c.call(ctx, "reboot "+name, callTimeout, func(l *golibvirt.Libvirt) error { return l.DomainReboot(d, golibvirt.DomainRebootDefault) })
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return err
		}
	}
	if err := h.Stop(ctx, name, defaultStopTimeout, false); err != nil {
		return err
	}
	return h.Start(ctx, name)
}
