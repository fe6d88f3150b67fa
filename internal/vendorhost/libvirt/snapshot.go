package libvirt

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	golibvirt "github.com/digitalocean/go-libvirt"
	"libvirt.org/go/libvirtxml"

	"github.com/polyvisor/polyvisor/internal/vendorhost"
)

// snapshotDomain looks a domain up for a snapshot operation; LXC has no
// snapshots.
func (h *Host) snapshotDomain(ctx context.Context, name string) (golibvirt.Domain, error) {
	if h.isLXC() {
		return golibvirt.Domain{}, fmt.Errorf("%w: snapshots of %s: libvirt's LXC driver has none (a container's tree is the host's directory; snapshot it on the host)", vendorhost.ErrNotSupported, name)
	}
	return h.lookup(ctx, name)
}

// Snapshots lists a domain's snapshots, oldest first.
func (h *Host) Snapshots(ctx context.Context, name string) ([]vendorhost.Snapshot, error) {
	d, err := h.snapshotDomain(ctx, name)
	if err != nil {
		return nil, err
	}
	var snaps []vendorhost.Snapshot
	err = h.c.call(ctx, "snapshots of "+name, callTimeout, func(l *golibvirt.Libvirt) error {
		list, _, err := l.DomainListAllSnapshots(d, 1, 0)
		if err != nil {
			return err
		}
		for _, s := range list {
			xml, err := l.DomainSnapshotGetXMLDesc(s, 0)
			if err != nil {
				return err
			}
			var sx libvirtxml.DomainSnapshot
			if err := sx.Unmarshal(xml); err != nil {
				return fmt.Errorf("%w: snapshot %s's XML: %w", vendorhost.ErrInvalid, s.Name, err)
			}
			snap := vendorhost.Snapshot{Name: s.Name}
			if secs, err := strconv.ParseInt(strings.TrimSpace(sx.CreationTime), 10, 64); err == nil {
				snap.CreatedAt = time.Unix(secs, 0).UTC()
			}
			if sx.Parent != nil {
				snap.Parent = sx.Parent.Name
			}
			current, err := l.DomainSnapshotIsCurrent(s, 0)
			if err != nil {
				return err
			}
			snap.Current = current == 1
			snaps = append(snaps, snap)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return orderSnapshots(snaps), nil
}

// orderSnapshots puts parents before their children, and siblings oldest
// first: creation times have a resolution of seconds, so a snapshot and
// its child often share one.
func orderSnapshots(snaps []vendorhost.Snapshot) []vendorhost.Snapshot {
	slices.SortStableFunc(snaps, func(a, b vendorhost.Snapshot) int {
		if c := a.CreatedAt.Compare(b.CreatedAt); c != 0 {
			return c
		}
		return strings.Compare(a.Name, b.Name)
	})
	names := map[string]bool{}
	for _, s := range snaps {
		names[s.Name] = true
	}
	children := map[string][]vendorhost.Snapshot{}
	var roots []vendorhost.Snapshot
	for _, s := range snaps {
		if s.Parent == "" || !names[s.Parent] {
			roots = append(roots, s)
		} else {
			children[s.Parent] = append(children[s.Parent], s)
		}
	}
	out := make([]vendorhost.Snapshot, 0, len(snaps))
	var visit func(s vendorhost.Snapshot)
	visit = func(s vendorhost.Snapshot) {
		out = append(out, s)
		for _, c := range children[s.Name] {
			visit(c)
		}
	}
	for _, r := range roots {
		visit(r)
	}
	return out
}

// CreateSnapshot takes a snapshot: with the guest's memory when it runs,
// of its disks alone when it is stopped. QEMU's internal snapshots need
// qcow2 disks; libvirt says so when they are not.
func (h *Host) CreateSnapshot(ctx context.Context, name, snapshot string) error {
	if err := checkSnapshotName(snapshot); err != nil {
		return err
	}
	d, err := h.snapshotDomain(ctx, name)
	if err != nil {
		return err
	}
	xml, err := (&libvirtxml.DomainSnapshot{Name: snapshot, Description: "taken by polyvisor"}).Marshal()
	if err != nil {
		return fmt.Errorf("snapshot %s of %s: %w", snapshot, name, err)
	}
	return h.c.call(ctx, "snapshot "+snapshot+" of "+name, slowCallTimeout, func(l *golibvirt.Libvirt) error {
		if _, err := l.DomainSnapshotLookupByName(d, snapshot, 0); err == nil {
			return fmt.Errorf("%w: %s already has a snapshot %s: pick another name or delete it", vendorhost.ErrConflict, name, snapshot)
		}
		_, err := l.DomainSnapshotCreateXML(d, xml, uint32(golibvirt.DomainSnapshotCreateAtomic))
		return err
	})
}

// RevertSnapshot returns the domain to a snapshot, running or not as it
// was then.
func (h *Host) RevertSnapshot(ctx context.Context, name, snapshot string) error {
	s, err := h.snapshotOf(ctx, name, snapshot)
	if err != nil {
		return err
	}
	return h.c.call(ctx, "revert "+name+" to "+snapshot, slowCallTimeout, func(l *golibvirt.Libvirt) error {
		return l.DomainRevertToSnapshot(s, 0)
	})
}

// DeleteSnapshot deletes one snapshot; its children stay (libvirt
// re-parents them), as do the domain's disks.
func (h *Host) DeleteSnapshot(ctx context.Context, name, snapshot string) error {
	s, err := h.snapshotOf(ctx, name, snapshot)
	if err != nil {
		return err
	}
	return h.c.call(ctx, "delete snapshot "+snapshot+" of "+name, slowCallTimeout, func(l *golibvirt.Libvirt) error {
		return l.DomainSnapshotDelete(s, 0)
	})
}

// snapshotOf looks a snapshot up; ErrNotFound names it.
func (h *Host) snapshotOf(ctx context.Context, name, snapshot string) (golibvirt.DomainSnapshot, error) {
	if err := checkSnapshotName(snapshot); err != nil {
		return golibvirt.DomainSnapshot{}, err
	}
	d, err := h.snapshotDomain(ctx, name)
	if err != nil {
		return golibvirt.DomainSnapshot{}, err
	}
	var s golibvirt.DomainSnapshot
	err = h.c.call(ctx, "snapshot "+snapshot+" of "+name, callTimeout, func(l *golibvirt.Libvirt) error {
		var err error
		s, err = l.DomainSnapshotLookupByName(d, snapshot, 0)
		return err
	})
	if err != nil {
		return s, fmt.Errorf("%w (see its snapshot list)", err)
	}
	return s, nil
}

func checkSnapshotName(s string) error {
	if s == "" || strings.ContainsAny(s, "/\x00") || strings.TrimSpace(s) != s {
		return fmt.Errorf("%w: snapshot name %q: give a name without '/' or surrounding spaces", vendorhost.ErrInvalid, s)
	}
	return nil
}
