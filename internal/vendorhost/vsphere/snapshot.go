package vsphere

import (
	"context"
	"fmt"
	"strings"

	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/vim25/methods"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/types"

	"github.com/polyvisor/polyvisor/internal/vendorhost"
)

// snapshotRef is a snapshot as the tree names it.
type snapshotRef struct {
	vendorhost.Snapshot
	ref types.ManagedObjectReference
}

// snapshotsOf flattens a VM's snapshot tree, parents before children.
func snapshotsOf(vm mo.VirtualMachine) []snapshotRef {
	if vm.Snapshot == nil {
		return nil
	}
	var out []snapshotRef
	var walk func(parent string, trees []types.VirtualMachineSnapshotTree)
	walk = func(parent string, trees []types.VirtualMachineSnapshotTree) {
		for _, t := range trees {
			s := snapshotRef{ref: t.Snapshot, Snapshot: vendorhost.Snapshot{
				Name: t.Name, CreatedAt: t.CreateTime, Parent: parent,
				Current: vm.Snapshot.CurrentSnapshot != nil && *vm.Snapshot.CurrentSnapshot == t.Snapshot,
			}}
			out = append(out, s)
			walk(t.Name, t.ChildSnapshotList)
		}
	}
	walk("", vm.Snapshot.RootSnapshotList)
	return out
}

// snapshot finds a VM's one snapshot named snap.
func (h *host) snapshot(ctx context.Context, name, snap string) (*object.VirtualMachine, types.ManagedObjectReference, error) {
	vm, obj, err := h.vm(ctx, name)
	if err != nil {
		return nil, types.ManagedObjectReference{}, err
	}
	var found []snapshotRef
	for _, s := range snapshotsOf(vm) {
		if s.Name == snap {
			found = append(found, s)
		}
	}
	switch len(found) {
	case 0:
		return nil, types.ManagedObjectReference{}, fmt.Errorf("vsphere %s: guest %s: snapshot %q: %w", h.name, name, snap, vendorhost.ErrNotFound)
	case 1:
		return obj, found[0].ref, nil
	}
	return nil, types.ManagedObjectReference{}, fmt.Errorf("vsphere %s: guest %s: snapshot %q: %w: %d snapshots have that name: rename all but one in the vSphere client", h.name, name, snap, vendorhost.ErrConflict, len(found))
}

// Snapshots lists a VM's snapshots, each naming its parent.
func (h *host) Snapshots(ctx context.Context, name string) ([]vendorhost.Snapshot, error) {
	vm, _, err := h.vm(ctx, name)
	if err != nil {
		return nil, err
	}
	var out []vendorhost.Snapshot
	for _, s := range snapshotsOf(vm) {
		out = append(out, s.Snapshot)
	}
	return out, nil
}

// CreateSnapshot takes a disk snapshot (without memory) of a VM. A name
// already taken is refused: snapshots are addressed by name.
func (h *host) CreateSnapshot(ctx context.Context, name, snap string) error {
	if strings.TrimSpace(snap) == "" {
		return fmt.Errorf("vsphere %s: guest %s: %w: the snapshot name is empty", h.name, name, vendorhost.ErrInvalid)
	}
	vm, obj, err := h.vm(ctx, name)
	if err != nil {
		return err
	}
	for _, s := range snapshotsOf(vm) {
		if s.Name == snap {
			return fmt.Errorf("vsphere %s: guest %s: snapshot %q: %w: it exists already", h.name, name, snap, vendorhost.ErrConflict)
		}
	}
	return h.run(ctx, "guest "+name+": snapshot "+snap, func() (*object.Task, error) {
		return obj.CreateSnapshot(ctx, snap, "made by polyvisor", false, false)
	})
}

// RevertSnapshot returns a VM to a snapshot.
func (h *host) RevertSnapshot(ctx context.Context, name, snap string) error {
	_, ref, err := h.snapshot(ctx, name, snap)
	if err != nil {
		return err
	}
	return h.run(ctx, "guest "+name+": revert to snapshot "+snap, func() (*object.Task, error) {
		res, err := methods.RevertToSnapshot_Task(ctx, h.vc, &types.RevertToSnapshot_Task{This: ref})
		if err != nil {
			return nil, err
		}
		return object.NewTask(h.vc, res.Returnval), nil
	})
}

// DeleteSnapshot removes one snapshot; its children stay, merged down.
func (h *host) DeleteSnapshot(ctx context.Context, name, snap string) error {
	_, ref, err := h.snapshot(ctx, name, snap)
	if err != nil {
		return err
	}
	return h.wrap(ctx, "guest "+name+": delete snapshot "+snap, h.removeSnapshotRef(ctx, ref))
}
