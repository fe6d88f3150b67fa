package qemu

import (
	"context"
	"fmt"

	"github.com/polyvisor/polyvisor/internal/guest"
	"github.com/polyvisor/polyvisor/internal/monitor/monitored"
	"github.com/polyvisor/polyvisor/internal/qmp"
)

// Recover implements driver.Driver: the VM's QMP socket is found again
// from its handle, and a VM whose CPUs QEMU reports paused was stopped
// over QMP by a snapshot whose daemon died before resuming it (polyvisor
// pauses VMs for nothing else), and is resumed.
func (d *Driver) Recover(ctx context.Context, def *guest.Definition) error {
	h, err := d.readHandle(def)
	if err != nil {
		return fmt.Errorf("adopt %s: %w", def.Name, err)
	}
	if !monitored.Process(def).Alive() {
		return nil
	}
	m, err := qmp.Dial(ctx, h.QMP)
	if err != nil {
		return fmt.Errorf("adopt %s: %w", def.Name, err)
	}
	defer m.Close()
	var status qmp.StatusInfo
	if err := m.Run(ctx, qmp.QueryStatus{}, &status); err != nil {
		return fmt.Errorf("adopt %s: %w", def.Name, err)
	}
	if status.Status != "paused" {
		return nil
	}
	if err := m.Run(ctx, qmp.Cont{}, nil); err != nil {
		return fmt.Errorf("adopt %s: resume the VM an interrupted snapshot paused: %w", def.Name, err)
	}
	d.log.Info("resumed a VM an interrupted snapshot had paused", "guest", def.Name)
	return nil
}
