package container

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/polyvisor/polyvisor/internal/arch"
	"github.com/polyvisor/polyvisor/internal/driver"
	"github.com/polyvisor/polyvisor/internal/exporter"
	"github.com/polyvisor/polyvisor/internal/guest"
	"github.com/polyvisor/polyvisor/internal/idmap"
	"github.com/polyvisor/polyvisor/internal/template"
	"github.com/polyvisor/polyvisor/pkg/api"
)

// The optional abilities the container driver has, as Capabilities says.
var (
	_ driver.Execer            = (*Driver)(nil)
	_ driver.Consoler          = (*Driver)(nil)
	_ driver.LimitUpdater      = (*Driver)(nil)
	_ driver.DiskResizer       = (*Driver)(nil)
	_ driver.DiskUsageReporter = (*Driver)(nil)
	_ driver.UsageReporter     = (*Driver)(nil)
	_ driver.Snapshotter       = (*Driver)(nil)
	_ driver.Copier            = (*Driver)(nil)
	_ driver.Exporter          = (*Driver)(nil)
	_ driver.LiveExporter      = (*Driver)(nil)
	_ driver.TreeReader        = (*Driver)(nil)
	_ driver.Sweeper           = (*Driver)(nil)
)

// Name implements driver.Driver.
func (d *Driver) Name() string { return Class }

// Type implements driver.Driver.
func (d *Driver) Type() string { return guest.TypeContainer }

// Capabilities implements driver.Driver: a container shares the host's
// kernel, so it runs the host's arch only, and it is frozen while copied.
func (d *Driver) Capabilities() api.Capabilities {
	return api.Capabilities{
		Exec: true, Console: true, LiveLimits: true, DiskResize: true, DiskUsage: true, Usage: true,
		Snapshots: true, Copy: true, CopyRunning: true, Export: true, TreeRead: true,
		Networks: true, Privileged: true, CopyRootfs: true,
		ExportFormats: exporter.ContainerFormats,
		Arches:        []string{template.HostArch()},
	}
}

// Define implements driver.Driver: the rootfs (an overlay over the
// template, or a private copy for --copy and --privileged), the arch
// (the host's), the root disk's quota, the confinement and the id map.
func (d *Driver) Define(def *guest.Definition, req api.GuestCreate) error {
	def.Rootfs = guest.RootfsOverlay
	// A template is stored shifted to the shared id map, so a privileged
	// guest (no user namespace) needs its own copy shifted back.
	if req.Copy || req.Privileged {
		def.Rootfs = guest.RootfsCopy
	}
	if err := rootDiskSize(def, req.Disk); err != nil {
		return err
	}
	if def.Arch != "" && def.Arch != template.HostArch() && def.Arch != arch.Host().QEMU {
		return fmt.Errorf("%w: arch %s: a container shares the host's %s kernel; use --type vm for foreign architectures", api.ErrInvalid, def.Arch, template.HostArch())
	}
	if err := setConfinement(def, req); err != nil {
		return err
	}
	if err := setIDMap(def, req.IDMap); err != nil {
		return err
	}
	return setIsolation(def, req)
}

// setIsolation records a chroot jail. It joins no network of polyvisor's
// (it has no network namespace to plug one into): the daemon's default
// network is dropped, and a network the user named is refused.
func setIsolation(def *guest.Definition, req api.GuestCreate) error {
	switch req.Isolation {
	case "", guest.IsolationNamespaces:
		return nil
	case guest.IsolationChroot:
	default:
		return fmt.Errorf("%w: isolation %q: use %s (the default) or %s", api.ErrInvalid, req.Isolation, guest.IsolationNamespaces, guest.IsolationChroot)
	}
	switch {
	case def.Privileged:
		return fmt.Errorf("%w: isolation chroot: a jail runs as a non-root user; drop --privileged", api.ErrInvalid)
	case def.Security.IDMap != idmap.Isolated:
		return fmt.Errorf("%w: isolation chroot: a jail shares the host's pid namespace, so it needs host ids of its own; drop --idmap %s", api.ErrInvalid, def.Security.IDMap)
	case def.Security.Nesting || def.Security.Capabilities != nil:
		return fmt.Errorf("%w: isolation chroot: a jail runs as a non-root user with no capabilities; drop --nesting and --capabilities", api.ErrInvalid)
	case len(req.Publish) > 0:
		return fmt.Errorf("%w: publish: a chroot jail shares the host's network stack, where its services listen already; drop --publish", api.ErrInvalid)
	}
	for _, n := range req.Networks {
		if n != "none" {
			return fmt.Errorf("%w: network %s: a chroot jail shares the host's network stack and joins no network; drop --network", api.ErrInvalid, n)
		}
	}
	def.Networks = nil
	def.Security.Isolation = guest.IsolationChroot
	return nil
}

// rootDiskSize gives Create the root disk size asked for (def.Disks'
// "root", none for no quota): an overlay guest's disk quota,
// guest.DefaultDiskQuota unless the request says. A copy's private tree
// is a plain directory, which no quota bounds.
func rootDiskSize(def *guest.Definition, value string) error {
	size := guest.Size(0)
	if value != "" {
		var err error
		if size, err = guest.ParseDiskQuota("disk", value); err != nil {
			return err
		}
	}
	switch {
	case def.Rootfs == guest.RootfsCopy && size > 0:
		return fmt.Errorf("%w: disk: a --copy or --privileged container's tree is a plain directory that no quota bounds; drop --disk, or drop --copy", api.ErrInvalid)
	case def.Rootfs == guest.RootfsOverlay && value == "":
		size = guest.DefaultDiskQuota
	}
	if size > 0 {
		def.Disks = []guest.Disk{{Name: "root", Size: size}}
	}
	return nil
}

// setIDMap records which id map an unprivileged container gets: isolated
// unless the request says shared. Its range is given when the daemon
// reserves the guest.
func setIDMap(def *guest.Definition, kind string) error {
	if def.Privileged {
		if kind != "" {
			return fmt.Errorf("%w: idmap: only unprivileged containers have an id map; drop --idmap", api.ErrInvalid)
		}
		return nil
	}
	switch kind {
	case "", idmap.Isolated:
		def.Security.IDMap = idmap.Isolated
	case idmap.Shared:
		def.Security.IDMap = idmap.Shared
	default:
		return fmt.Errorf("%w: idmap %q: use %s (a host id range of the guest's own, the default) or %s", api.ErrInvalid, kind, idmap.Isolated, idmap.Shared)
	}
	return nil
}

// setConfinement records what the request asks beyond the default
// confinement: nesting, and an explicit list of capabilities.
func setConfinement(def *guest.Definition, req api.GuestCreate) error {
	if !req.Nesting && req.Capabilities == nil {
		return nil
	}
	if def.Privileged {
		return fmt.Errorf("%w: nesting and capabilities are for unprivileged containers (a privileged one holds every capability already); drop --nesting and --capabilities", api.ErrInvalid)
	}
	def.Security.Nesting = req.Nesting
	caps, err := guest.ParseCapabilities("capabilities", strings.Join(req.Capabilities, ","))
	def.Security.Capabilities = caps
	return err
}

// View implements driver.Driver: a container shows as its class, with
// its id map, its confinement and how much of its disk quota it uses.
func (d *Driver) View(def *guest.Definition, g *api.Guest) {
	g.Class = Class
	// A guest handed to a new supervisor after its own died: the one that
	// runs it now, not the pid its start recorded.
	if g.MonitorPID != 0 {
		if sup, ok := d.supervisor.Runs(def.Name); ok {
			g.MonitorPID = sup.PID
		}
	}
	if m, ok := def.IDMap(); ok {
		kind := idmap.Shared
		if def.Isolated() {
			kind = idmap.Isolated
		}
		g.IDMap = &api.IDMap{Kind: kind, HostUID: m.HostBase, HostGID: m.HostBase, Size: m.Size}
	}
	g.Confinement = d.Confinement(def)
	for i := range g.Disks {
		used, err := d.DiskUsed(def, g.Disks[i].Name)
		if err != nil {
			d.log.Warn("disk usage", "guest", def.Name, "disk", g.Disks[i].Name, "err", err)
		}
		g.Disks[i].Used = used
	}
}

// handle is what Start records for Recover (guest.Status.Handle), as
// JSON: where runc keeps the container's state, and its id there.
type handle struct {
	RuncRoot string `json:"runcRoot"`
	ID       string `json:"id"`
	// Supervised: the guest runs under the supervisor, which all
	// containers share, not under a monitor of its own.
	Supervised bool `json:"supervised,omitempty"`
}

// newHandle is the handle of def's container as this driver starts it.
func (d *Driver) newHandle(def *guest.Definition) handle {
	return handle{RuncRoot: d.opts.Layout.RuncRoot(), ID: def.Name, Supervised: true}
}

// encode writes h for guest.Status.Handle.
func (h handle) encode() string {
	data, _ := json.Marshal(h) // strings and a bool: it cannot fail
	return string(data)
}

// readHandle reads the handle Start wrote for def. A definition written
// before handles were (no handle) gets this driver's defaults, with a
// monitor of its own, as guests had then; a version this driver does not
// know is refused.
func (d *Driver) readHandle(def *guest.Definition) (handle, error) {
	s := def.Status
	if s.HandleVersion > handleVersion {
		return handle{}, fmt.Errorf("guest %s: handle version %d: this polyvisor knows version %d at most; leave the guest running and upgrade polyvisor", def.Name, s.HandleVersion, handleVersion)
	}
	if s.Handle == "" {
		h := d.newHandle(def)
		h.Supervised = false
		return h, nil
	}
	var h handle
	if err := json.Unmarshal([]byte(s.Handle), &h); err != nil {
		return handle{}, fmt.Errorf("guest %s: handle: %w", def.Name, err)
	}
	if h.RuncRoot != d.opts.Layout.RuncRoot() || h.ID != def.Name {
		return handle{}, fmt.Errorf("guest %s: started as runc container %s under %s, which this daemon (runc root %s) does not reach", def.Name, h.ID, h.RuncRoot, d.opts.Layout.RuncRoot())
	}
	return h, nil
}

// Export implements driver.Exporter: a container's root tree, as the
// guest sees it, written as a tar archive.
// ExportRunning implements driver.LiveExporter: the mounted tree a
// running guest sees, read from the host's side as it changes. A stopped
// guest is exported as Export does.
func (d *Driver) ExportRunning(ctx context.Context, def *guest.Definition, req api.Export, progress exporter.Progress) error {
	if !initIdentity(def).Alive() {
		return d.Export(ctx, def, req, progress, func(string) {})
	}
	var toGuest idmap.ShiftFunc
	if m, ok := def.IDMap(); ok {
		toGuest = idmap.ShiftDown(m)
	}
	return exporter.Tree(ctx, d.rootfs(def), req.Path, toGuest, progress)
}

func (d *Driver) Export(ctx context.Context, def *guest.Definition, req api.Export, progress exporter.Progress, warn func(string)) error {
	return d.ReadRootTree(ctx, def, func(root string, toGuest idmap.ShiftFunc) error {
		return exporter.Tree(ctx, root, req.Path, toGuest, progress)
	})
}
