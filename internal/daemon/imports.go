package daemon

import (
	"cmp"
	"context"
	"fmt"
	"net/http"
	"path/filepath"
	"slices"
	"strings"

	"github.com/polyvisor/polyvisor/internal/driver"
	"github.com/polyvisor/polyvisor/internal/exporter"
	"github.com/polyvisor/polyvisor/internal/guest"
	"github.com/polyvisor/polyvisor/internal/importer"
	"github.com/polyvisor/polyvisor/internal/network"
	"github.com/polyvisor/polyvisor/internal/vmdef"
	"github.com/polyvisor/polyvisor/pkg/api"
)

// handleImport makes a template of a file another product made, and with
// As "guest" (the default) a guest on it with the CPUs, memory and MACs
// its definition states. A failure leaves neither.
func (d *Daemon) handleImport(r *http.Request) (any, error) {
	var req api.Import
	if err := readJSON(r, &req); err != nil {
		return nil, err
	}
	if err := d.checkImport(&req); err != nil {
		return nil, err
	}
	return d.startImport(req, nil), nil
}

// checkImport refuses a request's options at once, before any file is
// read (or, for an upload, received); it fills the default of As.
func (d *Daemon) checkImport(req *api.Import) error {
	if req.As == "" {
		req.As = api.ImportAsGuest
	}
	if req.As != api.ImportAsGuest && req.As != api.ImportAsTemplate {
		return fmt.Errorf("%w: as %q: use guest or template", api.ErrInvalid, req.As)
	}
	if req.As == api.ImportAsTemplate && (req.Start || req.CPUs != 0 || req.Memory != "" || len(req.Networks) > 0) {
		return fmt.Errorf("%w: --start, --cpus, --memory and --network describe a guest; drop them or import --as guest", api.ErrInvalid)
	}
	if req.Name != "" && req.As == api.ImportAsGuest {
		if _, err := d.guests.get(req.Name); err == nil {
			return fmt.Errorf("guest %s: %w: delete it first or pass another name", req.Name, api.ErrExists)
		}
	}
	return nil
}

// startImport runs a checked import as an operation; done, if given, runs
// when it ends (an upload's file goes then).
func (d *Daemon) startImport(req api.Import, done func()) api.Operation {
	resource := req.Name
	if resource == "" {
		resource = filepath.Base(req.Path)
	}
	return d.ops.startReporting(d.ctx, "import", resource, func(ctx context.Context, r *opReport) error {
		if done != nil {
			defer done()
		}
		return d.importGuest(ctx, req, r)
	})
}

// importGuest runs an import operation.
func (d *Daemon) importGuest(ctx context.Context, req api.Import, r *opReport) (err error) {
	im := importer.Importer{Templates: d.templates}
	// A template made for a guest stays marked pending until the guest
	// is made: a daemon killed in between lets the next one remove both.
	pending := req.As == api.ImportAsGuest
	res, err := im.Import(ctx, importer.Request{Path: req.Path, Name: req.Name, Firmware: req.Firmware, Disk: req.Disk, Pending: pending}, func(phase string, done, total int64) {
		r.progress(api.Progress{Phase: phase, Done: done, Total: total})
	})
	if res != nil {
		// A failed import has warnings too, and they may say why.
		for _, w := range res.Machine.Warnings {
			r.warn(w)
		}
	}
	if err != nil {
		return err
	}
	t := res.Template
	d.log.Info("template imported", "template", t.ID, "format", res.Format, "from", req.Path)
	if req.As == api.ImportAsTemplate {
		r.result(t.ID)
		return nil
	}
	defer func() {
		if err != nil {
			if derr := d.templates.Delete(t.ID); derr != nil {
				d.log.Error("remove template of a failed import", "template", t.ID, "err", derr)
			}
		}
	}()
	m := res.Machine
	networks, nics, warnings, err := importNICs(m.NICs, req.Networks, d.cfg.DefaultNetwork)
	if err != nil {
		return fmt.Errorf("import %s: %w", filepath.Base(req.Path), err)
	}
	for _, w := range warnings {
		r.warn(w)
	}
	// The guest is made on its first network; the others, which a
	// create does not take, are set on its definition.
	create := api.GuestCreate{
		Name: t.Name, Template: t.Name, Type: t.Type, Arch: t.Arch, CPUs: req.CPUs, Memory: req.Memory,
		Networks: []string{cmp.Or(first(networks), "none")}, Start: req.Start,
	}
	if create.CPUs == 0 {
		create.CPUs = m.CPUs
	}
	if create.Memory == "" && m.Memory > 0 {
		create.Memory = guest.Size(m.Memory).String()
	}
	def, err := d.newDefinition(create)
	if err != nil {
		return fmt.Errorf("import %s as guest %s: %w", filepath.Base(req.Path), t.Name, err)
	}
	def.Networks, def.NICs = networks, nics
	if err := d.reserve(def); err != nil {
		return err
	}
	if err := d.create(ctx, create, def); err != nil {
		return err
	}
	d.crashPoint("import-after-guest")
	if err := d.templates.Settle(t.ID); err != nil {
		if derr := d.removeGuest(context.WithoutCancel(ctx), def.Name); derr != nil {
			d.log.Error("remove the guest of a failed import", "guest", def.Name, "err", derr)
		}
		return fmt.Errorf("import %s: %w", filepath.Base(req.Path), err)
	}
	r.result(def.Name)
	return nil
}

// importNICs maps an imported machine's NICs, in order, to the networks
// asked (each entry may list several, comma-separated): NIC i joins
// network i, and the NICs past the list join its last network (the
// default when none is asked), so that a VM with 10 NICs keeps 10, each
// with its MAC. It returns the networks joined, each once, and the
// guest's NICs: none when the machine has none and one network is asked
// (the guest then has one NIC, as a created guest has). With network
// none the NICs are dropped, each with a warning.
func importNICs(machine []vmdef.NIC, asked []string, byDefault string) (networks []string, nics []guest.NIC, warnings []string, err error) {
	var names []string
	for _, a := range asked {
		for _, n := range strings.Split(a, ",") {
			if n = strings.TrimSpace(n); n != "" {
				names = append(names, n)
			}
		}
	}
	if len(names) == 0 {
		names = []string{byDefault}
	}
	for _, n := range names {
		// One at a time: a guest's NICs may share a network, and
		// ResolveNetworks refuses more than one.
		if _, err := network.ResolveNetworks([]string{n}, ""); err != nil {
			return nil, nil, nil, err
		}
		if n == "none" && len(names) > 1 {
			return nil, nil, nil, fmt.Errorf("%w: network none: it cannot go with other networks", api.ErrInvalid)
		}
	}
	if names[0] == "none" {
		for i, nic := range machine {
			warnings = append(warnings, fmt.Sprintf("NIC %d (%s on %q) is not connected: the guest joins no network", i+1, cmp.Or(nic.MAC, "generated MAC"), nic.Network))
		}
		return nil, nil, warnings, nil
	}
	// Networks past the machine's NICs get NICs of their own.
	count := max(len(machine), len(names), 1)
	for i := range count {
		n := names[min(i, len(names)-1)]
		if !slices.Contains(networks, n) {
			networks = append(networks, n)
		}
		nic := guest.NIC{Network: n}
		if i < len(machine) {
			nic.MAC = machine[i].MAC
		}
		nics = append(nics, nic)
	}
	if len(machine) == 0 && len(networks) == 1 {
		nics = nil // one NIC, as any guest has
	}
	return networks, nics, warnings, nil
}

// first is the first of list, or "".
func first(list []string) string {
	if len(list) == 0 {
		return ""
	}
	return list[0]
}

// removeGuest force-deletes guest name, as the rollback of an operation
// that made it.
func (d *Daemon) removeGuest(ctx context.Context, name string) error {
	e, err := d.guests.get(name)
	if err != nil {
		return err
	}
	if _, err := d.lockGuest(e); err != nil {
		return err
	}
	defer e.release()
	return d.deleteLocked(ctx, e, true)
}

// finishInterruptedImports removes what imports a crash interrupted left:
// a template still marked pending, and the guest the import made of it.
// Their clients saw them fail.
func (d *Daemon) finishInterruptedImports(ctx context.Context) {
	ids, err := d.templates.Pending()
	if err != nil {
		d.log.Error("list the templates of interrupted imports", "err", err)
		return
	}
	for _, id := range ids {
		t, err := d.templates.Load(id)
		if err != nil {
			d.log.Error("template of an interrupted import", "template", id, "err", err)
			continue
		}
		if slices.Contains(d.guests.usersOf(id), t.Name) {
			if err := d.removeGuest(ctx, t.Name); err != nil {
				d.log.Error("remove the guest of an interrupted import", "guest", t.Name, "err", err)
				continue
			}
		}
		if users := d.guests.usersOf(id); len(users) > 0 {
			err = d.templates.Settle(id) // others use it since: it stays
		} else {
			err = d.templates.Delete(id)
		}
		d.log.Info("finished an interrupted import", "template", id, "err", err)
	}
}

// handleExport writes a stopped guest out in another product's format.
func (d *Daemon) handleExport(r *http.Request) (any, error) {
	var req api.Export
	e, err := d.guestRequest(r, &req)
	if err != nil {
		return nil, err
	}
	def := e.def.Load()
	drv, err := d.driverFor(def)
	if err != nil {
		return nil, err
	}
	formats := drv.Capabilities().ExportFormats
	if _, ok := drv.(driver.Exporter); !ok || len(formats) == 0 {
		return nil, fmt.Errorf("%w: class %s cannot export its guests", api.ErrNotAvailable, def.Class)
	}
	if !slices.Contains(formats, req.Format) {
		return nil, fmt.Errorf("%w: format %q: a %s exports as %s", api.ErrInvalid, req.Format, def.Type, strings.Join(formats, ", "))
	}
	if err := exporter.CheckDestination(req.Path); err != nil {
		return nil, err
	}
	if running(def) {
		return nil, fmt.Errorf("guest %s: %w: it is running; stop it first, so that its disk holds still", def.Name, api.ErrConflict)
	}
	// The guest cannot start meanwhile.
	return d.startLong(e, "export", def.Name, nil, func(ctx context.Context, r *opReport) error {
		def := e.def.Load()
		if running(def) {
			return fmt.Errorf("guest %s: %w: it was started; stop it first", def.Name, api.ErrConflict)
		}
		report := func(phase string, done, total int64) {
			r.progress(api.Progress{Phase: phase, Done: done, Total: total})
		}
		if err := d.export(ctx, def, req, report, r.warn); err != nil {
			return fmt.Errorf("export %s: %w", def.Name, err)
		}
		d.log.Info("guest exported", "guest", def.Name, "format", req.Format, "to", req.Path)
		return nil
	})
}

// export writes def out as req says, through its driver; the guest is
// stopped and held.
func (d *Daemon) export(ctx context.Context, def *guest.Definition, req api.Export, progress exporter.Progress, warn func(string)) error {
	drv, err := d.driverFor(def)
	if err != nil {
		return err
	}
	exp, ok := drv.(driver.Exporter)
	if !ok {
		return fmt.Errorf("%w: class %s cannot export its guests", api.ErrNotAvailable, def.Class)
	}
	return exp.Export(ctx, def, req, progress, warn)
}
