package daemon

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/polyvisor/polyvisor/internal/guest"
	"github.com/polyvisor/polyvisor/internal/vendorhost"
	"github.com/polyvisor/polyvisor/pkg/api"
)

// The vendor hosts a user added (`host add`): their guests are HOST:NAME
// on the guest routes, which hand such a name to the host's driver
// instead of this daemon's own guests.

// hostCallTimeout bounds one call to a vendor host that answers at once
// (a listing, a power change, a snapshot); exports and moves run as
// operations, bounded by the daemon's life.
const hostCallTimeout = 2 * time.Minute

// splitHostGuest splits HOST:NAME; ok is false for a local guest's name.
func splitHostGuest(name string) (host, guestName string, ok bool) {
	host, guestName, ok = strings.Cut(name, ":")
	return host, guestName, ok
}

// orHost routes a request that names a vendor host's guest (HOST:NAME) to
// vendor, and any other to local.
func orHost(local, vendor func(*http.Request) (any, error)) func(*http.Request) (any, error) {
	return func(r *http.Request) (any, error) {
		if _, _, ok := splitHostGuest(r.PathValue("name")); ok {
			return vendor(r)
		}
		return local(r)
	}
}

// localOnly refuses, for a route with no vendor counterpart (exec, copy),
// a HOST:NAME guest in one line.
func localOnly(what string, local func(*http.Request) (any, error)) func(*http.Request) (any, error) {
	return orHost(local, func(r *http.Request) (any, error) {
		return nil, fmt.Errorf("guest %s: %w: %s works on polyvisor's own guests; move it here first with 'polyvisor move %s'", r.PathValue("name"), api.ErrNotAvailable, what, r.PathValue("name"))
	})
}

// orHostStream is orHost for a handler that writes its own answer (a
// stream).
func orHostStream(local, vendor http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, _, ok := splitHostGuest(r.PathValue("name")); ok {
			vendor(w, r)
			return
		}
		local(w, r)
	})
}

// localOnlyStream is localOnly for a handler that writes its own answer.
func localOnlyStream(what string, local http.HandlerFunc) http.Handler {
	refuse := localOnly(what, nil)
	return orHostStream(local, func(w http.ResponseWriter, r *http.Request) {
		_, err := refuse(r)
		writeError(w, err)
	})
}

// useHost runs fn on the vendor host's guest the request names, under
// hostCallTimeout.
func (d *Daemon) useHost(r *http.Request, fn func(ctx context.Context, h vendorhost.Host, name string) error) error {
	host, name, _ := splitHostGuest(r.PathValue("name"))
	if name == "" {
		return fmt.Errorf("%w: guest %q: write HOST:NAME", api.ErrInvalid, r.PathValue("name"))
	}
	ctx, cancel := context.WithTimeout(r.Context(), hostCallTimeout)
	defer cancel()
	return d.hosts.Use(ctx, host, func(h vendorhost.Host) error { return fn(ctx, h, name) })
}

// hostOperation runs fn on the request's HOST:NAME guest as an operation
// of kind, answering at once.
func (d *Daemon) hostOperation(r *http.Request, kind string, fn func(ctx context.Context, h vendorhost.Host, name string, rep *opReport) error) (any, error) {
	full := r.PathValue("name")
	host, name, _ := splitHostGuest(full)
	if name == "" {
		return nil, fmt.Errorf("%w: guest %q: write HOST:NAME", api.ErrInvalid, full)
	}
	if _, err := d.hosts.Store().Get(host); err != nil {
		return nil, err
	}
	return d.ops.startReporting(d.ctx, kind, full, func(ctx context.Context, rep *opReport) error {
		return d.hosts.Use(ctx, host, func(h vendorhost.Host) error { return fn(ctx, h, name, rep) })
	}), nil
}

func (d *Daemon) handleHosts(r *http.Request) (any, error) {
	entries, err := d.hosts.Store().List()
	if err != nil {
		return nil, err
	}
	out := make([]api.VendorHost, len(entries))
	var wg sync.WaitGroup
	for i, e := range entries {
		out[i] = apiHost(e)
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(r.Context(), hostListTimeout)
			defer cancel()
			err := d.hosts.Use(ctx, e.Name, func(h vendorhost.Host) error {
				guests, err := h.List(ctx)
				n := len(guests)
				out[i].Guests = &n
				return err
			})
			if err != nil {
				out[i].Guests, out[i].Error = nil, err.Error()
			}
		})
	}
	wg.Wait()
	return out, nil
}

// hostListTimeout bounds one host's part of a listing, so that a host
// gone away delays `list` and `host list` by that much at most.
const hostListTimeout = 20 * time.Second

func apiHost(e vendorhost.Entry) api.VendorHost {
	return api.VendorHost{Name: e.Name, Kind: e.Kind, URL: e.URL, Fingerprint: e.Fingerprint, AddedAt: e.AddedAt}
}

// handleHostAdd connects to a host and keeps it only once it answered.
func (d *Daemon) handleHostAdd(r *http.Request) (any, error) {
	var req api.VendorHostAdd
	if err := readJSON(r, &req); err != nil {
		return nil, err
	}
	if err := vendorhost.CheckName(req.Name); err != nil {
		return nil, err
	}
	if _, err := d.hosts.Store().Get(req.Name); err == nil {
		return nil, fmt.Errorf("host %s: %w: remove it first or pick another name", req.Name, api.ErrExists)
	}
	kind, u, password, err := vendorhost.ParseURL(req.URL)
	if err != nil {
		return nil, err
	}
	if req.Password != "" {
		password = req.Password
	}
	e := vendorhost.Entry{Name: req.Name, Kind: kind, URL: u.String(), Password: password, Fingerprint: req.Fingerprint, AddedAt: time.Now().UTC()}
	ctx, cancel := context.WithTimeout(r.Context(), hostCallTimeout)
	defer cancel()
	h, err := d.hosts.Connect(ctx, e)
	if err != nil {
		return nil, err
	}
	guests, err := h.List(ctx)
	if err != nil {
		h.Close()
		return nil, fmt.Errorf("host %s: %w", e.Name, err)
	}
	if err := d.hosts.Store().Add(e); err != nil {
		h.Close()
		return nil, err
	}
	d.hosts.Adopt(e.Name, h)
	d.log.Info("vendor host added", "host", e.Name, "kind", kind, "url", e.URL, "guests", len(guests))
	out := apiHost(e)
	n := len(guests)
	out.Guests = &n
	return out, nil
}

func (d *Daemon) handleHostRemove(r *http.Request) (any, error) {
	name := r.PathValue("host")
	if err := d.hosts.Store().Remove(name); err != nil {
		return nil, err
	}
	d.hosts.Forget(name)
	d.log.Info("vendor host removed", "host", name)
	return nil, nil
}

// handleHostGuests lists every vendor host's guests, a host at a time in
// parallel; a host that does not answer is a line of Errors.
func (d *Daemon) handleHostGuests(r *http.Request) (any, error) {
	entries, err := d.hosts.Store().List()
	if err != nil {
		return nil, err
	}
	lists := make([][]api.Guest, len(entries))
	failed := make([]error, len(entries))
	var wg sync.WaitGroup
	for i, e := range entries {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(r.Context(), hostListTimeout)
			defer cancel()
			failed[i] = d.hosts.Use(ctx, e.Name, func(h vendorhost.Host) error {
				guests, err := h.List(ctx)
				for _, g := range guests {
					lists[i] = append(lists[i], hostGuest(e, g))
				}
				return err
			})
		})
	}
	wg.Wait()
	out := api.HostGuests{Guests: []api.Guest{}}
	for i, e := range entries {
		out.Guests = append(out.Guests, lists[i]...)
		if failed[i] != nil {
			out.Errors = append(out.Errors, api.HostFailed{Host: e.Name, Error: failed[i].Error()})
		}
	}
	return out, nil
}

// hostGuest is a vendor host's guest as the API shows guests.
func hostGuest(e vendorhost.Entry, g vendorhost.Guest) api.Guest {
	out := api.Guest{
		Name: e.Name + ":" + g.Name, Host: e.Name, Type: "vm", Class: "hypervisor", Driver: e.Kind,
		State: g.State, CPUs: g.CPUs, Memory: g.MemoryMiB << 20, Firmware: g.Firmware,
		IPv4: []string{}, Networks: []string{},
	}
	if e.Kind == vendorhost.KindLibvirt {
		// libvirt's domain type says how the guest runs.
		out.Accel = g.Detail
		switch g.Detail {
		case "lxc":
			out.Type, out.Class = "container", "container"
		case "qemu":
			out.Class = "emulation"
		}
	}
	for _, ip := range g.IPs {
		if a := net.ParseIP(ip); a != nil && a.To4() != nil {
			out.IPv4 = append(out.IPv4, ip)
		}
	}
	for i, disk := range g.Disks {
		out.Disks = append(out.Disks, api.Disk{Name: "disk" + strconv.Itoa(i+1), Kind: disk.Format, Size: disk.Capacity, Path: disk.Path})
	}
	for _, nic := range g.NICs {
		out.NICs = append(out.NICs, api.NIC(nic))
		out.Networks = append(out.Networks, nic.Network)
	}
	return out
}

func (d *Daemon) hostGuestGet(r *http.Request) (any, error) {
	host, _, _ := splitHostGuest(r.PathValue("name"))
	var out api.Guest
	err := d.useHost(r, func(ctx context.Context, h vendorhost.Host, name string) error {
		e, err := d.hosts.Store().Get(host)
		if err != nil {
			return err
		}
		g, err := h.Get(ctx, name)
		out = hostGuest(e, g)
		return err
	})
	return out, err
}

func (d *Daemon) hostGuestState(r *http.Request) (any, error) {
	var req api.StateChange
	if err := readJSON(r, &req); err != nil {
		return nil, err
	}
	timeout, err := stopTimeout(req)
	if err != nil {
		return nil, err
	}
	var fn func(ctx context.Context, h vendorhost.Host, name string) error
	switch req.Action {
	case "start":
		fn = func(ctx context.Context, h vendorhost.Host, name string) error { return h.Start(ctx, name) }
	case "stop":
		fn = func(ctx context.Context, h vendorhost.Host, name string) error {
			return h.Stop(ctx, name, timeout, req.Force)
		}
	case "restart":
		fn = func(ctx context.Context, h vendorhost.Host, name string) error { return h.Restart(ctx, name) }
	default:
		return nil, fmt.Errorf("%w: action %q: use start, stop or restart", api.ErrInvalid, req.Action)
	}
	return d.hostOperation(r, req.Action, func(ctx context.Context, h vendorhost.Host, name string, _ *opReport) error {
		return fn(ctx, h, name)
	})
}

func (d *Daemon) hostGuestDelete(r *http.Request) (any, error) {
	return d.hostOperation(r, "delete", func(ctx context.Context, h vendorhost.Host, name string, _ *opReport) error {
		return h.Delete(ctx, name)
	})
}

// hostGuestConfigSet changes what a vendor host lets polyvisor change:
// CPUs and memory.
func (d *Daemon) hostGuestConfigSet(r *http.Request) (any, error) {
	var req api.ConfigChange
	if err := readJSON(r, &req); err != nil {
		return nil, err
	}
	var cpus int
	var memory int64
	for key, value := range req.Set {
		switch key {
		case "cpus":
			n, err := strconv.Atoi(value)
			if err != nil || n < 1 {
				return nil, fmt.Errorf("%w: cpus %q: give a whole number of 1 or more", api.ErrInvalid, value)
			}
			cpus = n
		case "memory":
			size, err := guest.ParseSize(value)
			if err != nil || size < 1<<20 {
				return nil, fmt.Errorf("%w: memory %q: give a size like 512MiB or 2GiB", api.ErrInvalid, value)
			}
			memory = int64(size) >> 20
		default:
			return nil, fmt.Errorf("%w: key %q: a vendor host's guest takes cpus and memory", api.ErrInvalid, key)
		}
	}
	err := d.useHost(r, func(ctx context.Context, h vendorhost.Host, name string) error {
		return h.SetResources(ctx, name, cpus, memory)
	})
	if err != nil {
		return nil, err
	}
	return api.ConfigResult{Applied: req.Set}, nil
}

func (d *Daemon) hostGuestSnapshots(r *http.Request) (any, error) {
	var out []api.Snapshot
	err := d.useHost(r, func(ctx context.Context, h vendorhost.Host, name string) error {
		snaps, err := h.Snapshots(ctx, name)
		for _, s := range snaps {
			out = append(out, api.Snapshot{Name: s.Name, CreatedAt: s.CreatedAt, Kind: "vendor"})
		}
		return err
	})
	if out == nil {
		out = []api.Snapshot{}
	}
	return out, err
}

func (d *Daemon) hostGuestSnapshotCreate(r *http.Request) (any, error) {
	var req api.SnapshotCreate
	if err := readJSON(r, &req); err != nil {
		return nil, err
	}
	if req.Name == "" || strings.ContainsAny(req.Name, "/\x00") {
		return nil, fmt.Errorf("%w: snapshot name %q: give a name without '/'", api.ErrInvalid, req.Name)
	}
	return d.hostOperation(r, "snapshot", func(ctx context.Context, h vendorhost.Host, name string, _ *opReport) error {
		return h.CreateSnapshot(ctx, name, req.Name)
	})
}

func (d *Daemon) hostGuestSnapshotRestore(r *http.Request) (any, error) {
	snap := r.PathValue("snap")
	return d.hostOperation(r, "restore", func(ctx context.Context, h vendorhost.Host, name string, _ *opReport) error {
		return h.RevertSnapshot(ctx, name, snap)
	})
}

func (d *Daemon) hostGuestSnapshotDelete(r *http.Request) (any, error) {
	snap := r.PathValue("snap")
	return d.hostOperation(r, "snapshot-delete", func(ctx context.Context, h vendorhost.Host, name string, _ *opReport) error {
		return h.DeleteSnapshot(ctx, name, snap)
	})
}

// hostExportFormat is what a vendor host's Export writes: vSphere an OVA,
// libvirt a domain XML with its disks in a directory.
var hostExportFormat = map[string]string{vendorhost.KindVSphere: "ova", vendorhost.KindLibvirt: "libvirt"}

// hostGuestExport writes a vendor host's stopped guest to req.Path: the
// OVA file itself, or a new directory with the domain XML and its disks.
func (d *Daemon) hostGuestExport(r *http.Request) (any, error) {
	var req api.Export
	if err := readJSON(r, &req); err != nil {
		return nil, err
	}
	host, _, _ := splitHostGuest(r.PathValue("name"))
	e, err := d.hosts.Store().Get(host)
	if err != nil {
		return nil, err
	}
	if want := hostExportFormat[e.Kind]; req.Format != want {
		return nil, fmt.Errorf("%w: format %q: a %s host's guest exports as %s", api.ErrInvalid, req.Format, e.Kind, want)
	}
	if !filepath.IsAbs(req.Path) {
		return nil, fmt.Errorf("%w: path %q: give an absolute path", api.ErrInvalid, req.Path)
	}
	if _, err := os.Lstat(req.Path); err == nil {
		return nil, fmt.Errorf("%w: %s exists: remove it or name another", api.ErrExists, req.Path)
	}
	return d.hostOperation(r, "export", func(ctx context.Context, h vendorhost.Host, name string, rep *opReport) error {
		work, err := os.MkdirTemp(filepath.Dir(req.Path), ".polyvisor-export-")
		if err != nil {
			return fmt.Errorf("export %s: %w", name, err)
		}
		defer os.RemoveAll(work)
		out, err := h.Export(ctx, name, work, hostProgress(rep))
		if err != nil {
			return err
		}
		from := work
		if e.Kind == vendorhost.KindVSphere {
			from = out.Path
		}
		if err := os.Rename(from, req.Path); err != nil {
			return fmt.Errorf("export %s: %w", name, err)
		}
		rep.result(req.Path)
		return nil
	})
}

func hostProgress(rep *opReport) vendorhost.Progress {
	return func(phase string, done, total int64) {
		rep.progress(api.Progress{Phase: phase, Done: done, Total: total})
	}
}

// handleMove makes a vendor host's stopped guest a local one: the host
// exports it, the importer makes a template and a guest of the export
// with the source's CPUs, memory, firmware, disks and MACs, and the source
// is deleted only when asked and only once the local guest exists.
func (d *Daemon) handleMove(r *http.Request) (any, error) {
	var req api.GuestMove
	if err := readJSON(r, &req); err != nil {
		return nil, err
	}
	full := r.PathValue("name")
	if req.Target != "" {
		return d.clusterMove(r, full, req.Target)
	}
	if _, _, ok := splitHostGuest(full); !ok {
		return nil, fmt.Errorf("%w: guest %s is this daemon's own: move takes a vendor host's guest, HOST:NAME", api.ErrInvalid, full)
	}
	// Without a name the importer makes one of the source's, as it does
	// of any definition's ("Web 01" is web-01).
	imp := api.Import{Name: req.Name, Networks: req.Networks, Start: req.Start, As: api.ImportAsGuest}
	if err := d.checkImport(&imp); err != nil {
		return nil, err
	}
	return d.hostOperation(r, "move", func(ctx context.Context, h vendorhost.Host, name string, rep *opReport) error {
		g, err := h.Get(ctx, name)
		if err != nil {
			return err
		}
		if g.State != vendorhost.StateStopped {
			return fmt.Errorf("guest %s: %w: it is %s; stop it first with 'polyvisor stop %s'", full, api.ErrConflict, g.State, full)
		}
		if err := os.MkdirAll(d.layout.UploadsDir(), 0o700); err != nil {
			return err
		}
		// Under the uploads dir, which the next daemon sweeps after a crash.
		work, err := os.MkdirTemp(d.layout.UploadsDir(), "move-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(work)
		out, err := h.Export(ctx, name, work, hostProgress(rep))
		if err != nil {
			return err
		}
		imp.Path = out.Path
		if err := d.importGuest(ctx, imp, rep); err != nil {
			return fmt.Errorf("move %s: %w", full, err)
		}
		if req.DeleteSource {
			if err := h.Delete(ctx, name); err != nil {
				rep.warn(fmt.Sprintf("the local guest is made, but %s was not deleted: %v", full, err))
			}
		}
		return nil
	})
}

// hostConsole attaches to a vendor host's guest's console.
func (d *Daemon) hostConsole(w http.ResponseWriter, r *http.Request) {
	host, name, _ := splitHostGuest(r.PathValue("name"))
	var console io.ReadWriteCloser
	err := d.hosts.Use(r.Context(), host, func(h vendorhost.Host) (err error) {
		console, err = h.Console(r.Context(), name)
		return err
	})
	if err != nil {
		writeError(w, err)
		return
	}
	defer console.Close()
	d.relayConsole(w, console)
}

// hostImport deploys an appliance to a vendor host that takes one.
func (d *Daemon) hostImport(r *http.Request) (any, error) {
	var req api.Import
	if err := readJSON(r, &req); err != nil {
		return nil, err
	}
	host := r.PathValue("host")
	if req.Name == "" || !filepath.IsAbs(req.Path) {
		return nil, fmt.Errorf("%w: import to host %s: give the OVA's absolute path and the new guest's name", api.ErrInvalid, host)
	}
	if _, err := d.hosts.Store().Get(host); err != nil {
		return nil, err
	}
	return d.ops.startReporting(d.ctx, "import", host+":"+req.Name, func(ctx context.Context, rep *opReport) error {
		return d.hosts.Use(ctx, host, func(h vendorhost.Host) error {
			im, ok := h.(vendorhost.Importer)
			if !ok {
				return fmt.Errorf("%w: this host takes no appliance; define the guest with the host's own tools", api.ErrNotAvailable)
			}
			if err := im.ImportOVA(ctx, req.Path, req.Name, hostProgress(rep)); err != nil {
				return err
			}
			rep.result(host + ":" + req.Name)
			return nil
		})
	}), nil
}
