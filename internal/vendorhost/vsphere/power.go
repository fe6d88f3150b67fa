package vsphere

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/property"
	"github.com/vmware/govmomi/task"
	"github.com/vmware/govmomi/vim25/methods"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/types"

	"github.com/polyvisor/polyvisor/internal/vendorhost"
)

// waitTask polls a vSphere task until it ends; each poll is one short
// call, so a host that goes away is noticed within callTimeout.
func (h *host) waitTask(ctx context.Context, t *object.Task) error {
	delay := 100 * time.Millisecond
	for {
		var mt mo.Task
		if err := property.DefaultCollector(h.vc).RetrieveOne(ctx, t.Reference(), []string{"info.state", "info.error"}, &mt); err != nil {
			return err
		}
		switch mt.Info.State {
		case types.TaskInfoStateSuccess:
			return nil
		case types.TaskInfoStateError:
			if mt.Info.Error == nil {
				return fmt.Errorf("task %s failed", t.Reference().Value)
			}
			return task.Error{LocalizedMethodFault: mt.Info.Error}
		}
		if err := sleep(ctx, delay); err != nil {
			return err
		}
		delay = min(2*delay, 2*time.Second)
	}
}

// sleep waits d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// run starts a task with start and waits for it.
func (h *host) run(ctx context.Context, what string, start func() (*object.Task, error)) error {
	t, err := start()
	if err == nil {
		err = h.waitTask(ctx, t)
	}
	return h.wrap(ctx, what, err)
}

// Start powers a VM on.
func (h *host) Start(ctx context.Context, name string) error {
	vm, obj, err := h.vm(ctx, name)
	if err != nil {
		return err
	}
	if vm.Runtime.PowerState == types.VirtualMachinePowerStatePoweredOn {
		return fmt.Errorf("vsphere %s: guest %s: %w: it is already running", h.name, name, vendorhost.ErrConflict)
	}
	return h.run(ctx, "guest "+name+": power on", func() (*object.Task, error) { return obj.PowerOn(ctx) })
}

// Stop asks the guest OS to shut down through VMware Tools, waits until
// timeout for the VM to power off, then powers it off; force, or a guest
// without Tools running, powers off at once.
func (h *host) Stop(ctx context.Context, name string, timeout time.Duration, force bool) error {
	vm, obj, err := h.vm(ctx, name)
	if err != nil {
		return err
	}
	switch vm.Runtime.PowerState {
	case types.VirtualMachinePowerStatePoweredOff:
		return fmt.Errorf("vsphere %s: guest %s: %w: it is not running", h.name, name, vendorhost.ErrConflict)
	case types.VirtualMachinePowerStatePoweredOn:
		if !force {
			done, err := h.shutdownGuest(ctx, name, obj, timeout)
			if done || err != nil {
				return err
			}
		}
	}
	t, err := obj.PowerOff(ctx)
	if err == nil {
		err = h.waitTask(ctx, t)
	}
	if isFault(err, &types.InvalidPowerState{}) {
		return nil // it went off by itself meanwhile
	}
	return h.wrap(ctx, "guest "+name+": power off", err)
}

// shutdownGuest asks the guest OS to shut down and waits until timeout
// for the VM to be off; done is false when it is still on, or could not
// be asked (no VMware Tools in it).
func (h *host) shutdownGuest(ctx context.Context, name string, obj *object.VirtualMachine, timeout time.Duration) (done bool, _ error) {
	err := obj.ShutdownGuest(ctx)
	switch {
	case isFault(err, &types.ToolsUnavailable{}), isFault(err, &types.NotSupported{}):
		slog.Warn("vsphere: the guest cannot be asked to shut down: no VMware Tools running in it; powering it off", "host", h.name, "guest", name)
		return false, nil
	case isFault(err, &types.InvalidPowerState{}):
		return true, nil
	case err != nil:
		return false, h.wrap(ctx, "guest "+name+": shut down", err)
	}
	wctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	off, err := h.waitPower(wctx, obj, types.VirtualMachinePowerStatePoweredOff)
	if err != nil && ctx.Err() == nil && wctx.Err() != nil {
		slog.Info("vsphere: the guest did not shut down in time; powering it off", "host", h.name, "guest", name, "timeout", timeout)
		return false, nil
	}
	if err != nil {
		return false, h.wrap(ctx, "guest "+name+": shut down", err)
	}
	return off, nil
}

// waitPower polls a VM's power state until it is want.
func (h *host) waitPower(ctx context.Context, obj *object.VirtualMachine, want types.VirtualMachinePowerState) (bool, error) {
	for {
		var vm mo.VirtualMachine
		if err := obj.Properties(ctx, obj.Reference(), []string{"runtime.powerState"}, &vm); err != nil {
			return false, err
		}
		if vm.Runtime.PowerState == want {
			return true, nil
		}
		if err := sleep(ctx, 500*time.Millisecond); err != nil {
			return false, err
		}
	}
}

// Restart reboots the guest OS through VMware Tools, or resets the VM
// when Tools do not run in it; a stopped VM is powered on.
func (h *host) Restart(ctx context.Context, name string) error {
	vm, obj, err := h.vm(ctx, name)
	if err != nil {
		return err
	}
	if vm.Runtime.PowerState != types.VirtualMachinePowerStatePoweredOn {
		return h.run(ctx, "guest "+name+": power on", func() (*object.Task, error) { return obj.PowerOn(ctx) })
	}
	err = obj.RebootGuest(ctx)
	if isFault(err, &types.ToolsUnavailable{}) || isFault(err, &types.NotSupported{}) {
		return h.run(ctx, "guest "+name+": reset", func() (*object.Task, error) { return obj.Reset(ctx) })
	}
	return h.wrap(ctx, "guest "+name+": reboot", err)
}

// SetResources changes a VM's CPUs and memory. A running VM is changed
// only where its hot-add allows (vSphere has no memory hot-remove).
func (h *host) SetResources(ctx context.Context, name string, cpus int, memoryMiB int64) error {
	vm, obj, err := h.vm(ctx, name)
	if err != nil {
		return err
	}
	if vm.Config == nil {
		return fmt.Errorf("vsphere %s: guest %s: %w: its configuration is not readable (the VM is inaccessible)", h.name, name, vendorhost.ErrConflict)
	}
	hw := vm.Config.Hardware
	switch {
	case cpus < 0 || memoryMiB < 0:
		return fmt.Errorf("vsphere %s: guest %s: %w: cpus %d, memory %d MiB: give positive numbers", h.name, name, vendorhost.ErrInvalid, cpus, memoryMiB)
	case memoryMiB%4 != 0:
		return fmt.Errorf("vsphere %s: guest %s: %w: memory %d MiB: vSphere takes a multiple of 4 MiB", h.name, name, vendorhost.ErrInvalid, memoryMiB)
	case cpus > 0 && hw.NumCoresPerSocket > 1 && int32(cpus)%hw.NumCoresPerSocket != 0:
		return fmt.Errorf("vsphere %s: guest %s: %w: cpus %d: it has %d cores per socket; give a multiple of that", h.name, name, vendorhost.ErrInvalid, cpus, hw.NumCoresPerSocket)
	}
	spec := types.VirtualMachineConfigSpec{}
	if cpus > 0 && int32(cpus) != hw.NumCPU {
		spec.NumCPUs = int32(cpus)
	}
	if memoryMiB > 0 && memoryMiB != int64(hw.MemoryMB) {
		spec.MemoryMB = memoryMiB
	}
	if spec.NumCPUs == 0 && spec.MemoryMB == 0 {
		return nil
	}
	if vm.Runtime.PowerState != types.VirtualMachinePowerStatePoweredOff {
		if why := hotChangeRefused(vm.Config, spec); why != "" {
			return fmt.Errorf("vsphere %s: guest %s: %w: it is running and %s: stop it first (polyvisor stop), or enable hot-add in the vSphere client", h.name, name, vendorhost.ErrConflict, why)
		}
	}
	return h.run(ctx, "guest "+name+": reconfigure", func() (*object.Task, error) { return obj.Reconfigure(ctx, spec) })
}

// hotChangeRefused says why a running VM cannot take spec, "" if it can.
func hotChangeRefused(c *types.VirtualMachineConfigInfo, spec types.VirtualMachineConfigSpec) string {
	on := func(b *bool) bool { return b != nil && *b }
	switch {
	case spec.NumCPUs > c.Hardware.NumCPU && !on(c.CpuHotAddEnabled):
		return "its CPU hot-add is off"
	case spec.NumCPUs != 0 && spec.NumCPUs < c.Hardware.NumCPU && !on(c.CpuHotRemoveEnabled):
		return "its CPU hot-remove is off"
	case spec.MemoryMB != 0 && spec.MemoryMB < int64(c.Hardware.MemoryMB):
		return "vSphere cannot remove memory from a running VM"
	case spec.MemoryMB > int64(c.Hardware.MemoryMB) && !on(c.MemoryHotAddEnabled):
		return "its memory hot-add is off"
	}
	return ""
}

// Delete destroys a powered-off VM and its disks.
func (h *host) Delete(ctx context.Context, name string) error {
	vm, obj, err := h.vm(ctx, name)
	if err != nil {
		return err
	}
	if vm.Runtime.PowerState != types.VirtualMachinePowerStatePoweredOff {
		return fmt.Errorf("vsphere %s: guest %s: %w: it is %s: stop it first", h.name, name, vendorhost.ErrConflict, stateOf(vm.Runtime.PowerState))
	}
	return h.run(ctx, "guest "+name+": delete", func() (*object.Task, error) { return obj.Destroy(ctx) })
}

// Console is refused: a vSphere VM's console is its MKS (a VNC-like
// protocol behind a ticket), which polyvisor does not speak.
func (h *host) Console(ctx context.Context, name string) (io.ReadWriteCloser, error) {
	if _, _, err := h.vm(ctx, name); err != nil {
		return nil, err
	}
	return nil, fmt.Errorf("vsphere %s: guest %s: console: %w: vSphere consoles are MKS sessions; open the VM's web console in the vSphere Client (https://%s/ui)", h.name, name, vendorhost.ErrNotSupported, h.name)
}

// removeSnapshotRef removes one snapshot (not its children) and waits.
func (h *host) removeSnapshotRef(ctx context.Context, ref types.ManagedObjectReference) error {
	consolidate := true
	res, err := methods.RemoveSnapshot_Task(ctx, h.vc, &types.RemoveSnapshot_Task{This: ref, RemoveChildren: false, Consolidate: &consolidate})
	if err != nil {
		return err
	}
	return h.waitTask(ctx, object.NewTask(h.vc, res.Returnval))
}
