package daemon

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/netip"
	"os"
	"time"

	"github.com/polyvisor/polyvisor/internal/cluster"
	"github.com/polyvisor/polyvisor/internal/driver"
	"github.com/polyvisor/polyvisor/internal/fsutil"
	"github.com/polyvisor/polyvisor/internal/guest"
	"github.com/polyvisor/polyvisor/pkg/api"
)

// Live moves between members. The source asks the target to prepare
// (its VMM paused, waiting, its disks served to be mirrored into), runs
// the migration, then tells the target to finish (resume) or abort;
// the placement changes only once the guest runs on the target.

// migrationOffer is what the source sends the target.
type migrationOffer struct {
	// Definition is the guest's guest.yaml.
	Definition string                 `json:"definition"`
	Source     driver.MigrationSource `json:"source"`
}

// liveMove migrates a running guest whose driver migrates live; moved is
// false (and err nil) when it does not, and the move goes cold.
func (d *Daemon) liveMove(ctx context.Context, c *clusterState, e *entry, m cluster.Member, rep *opReport) (moved bool, err error) {
	def := e.def.Load()
	drv, err := d.driverFor(def)
	if err != nil {
		return false, err
	}
	mig, ok := drv.(driver.Migrator)
	if !ok {
		return false, nil
	}
	if err := e.acquire(); err != nil {
		return true, err
	}
	defer e.release()
	def = e.def.Load()
	if !running(def) {
		return false, nil
	}
	began := time.Now()
	disks, err := mig.MigrationDisks(ctx, def)
	if err != nil {
		return true, fmt.Errorf("move %s: %w", def.Name, err)
	}
	yamlDef, err := def.Marshal()
	if err != nil {
		return true, err
	}
	var in driver.Incoming
	if err := d.memberCall(ctx, c, m, "/cluster/migrations/"+def.Name, migrationOffer{Definition: string(yamlDef), Source: driver.MigrationSource{Disks: disks}}, &in); err != nil {
		if errors.Is(err, api.ErrNotAvailable) {
			rep.warn("the target cannot take this guest live: " + err.Error())
			return false, nil
		}
		return true, fmt.Errorf("move %s: the target's preparation: %w", def.Name, err)
	}
	abort := func() {
		if err := d.memberCall(context.WithoutCancel(ctx), c, m, "/cluster/migrations/"+def.Name+"/abort", struct{}{}, nil); err != nil {
			d.log.Error("abort an incoming migration", "guest", def.Name, "member", m.Name, "err", err)
		}
	}
	stats, err := mig.MigrateOut(ctx, def, in)
	if err != nil {
		abort()
		return true, fmt.Errorf("move %s live: %w (it runs on here)", def.Name, err)
	}
	// From here the guest runs nowhere until the target resumes it.
	p, found, err := c.reg.Guest(ctx, def.Name)
	if err == nil && found {
		next := p
		next.Member, next.Lost = m.Name, ""
		if next.Replica == m.Name {
			next.Replica, next.ReplicatedAt = "", time.Time{}
		}
		err = c.reg.UpdateGuest(context.WithoutCancel(ctx), next, c.local.Member)
	}
	if err == nil {
		err = d.memberCall(context.WithoutCancel(ctx), c, m, "/cluster/migrations/"+def.Name+"/finish", struct{}{}, nil)
	}
	if err != nil {
		return true, fmt.Errorf("move %s live: its memory reached %s but it was not resumed there: %w; 'polyvisor info %s' shows where it is", def.Name, m.Name, err, def.Name)
	}
	// The source's VMM has ended: what is left here is its files.
	ctx = context.WithoutCancel(ctx)
	if _, err := drv.Cleanup(ctx, def); err != nil {
		d.log.Warn("clean up a migrated guest", "guest", def.Name, "err", err)
	}
	if err := drv.Delete(ctx, def); err != nil {
		d.log.Warn("delete a migrated guest's disks", "guest", def.Name, "err", err)
	}
	if err := fsutil.RemoveAllAtomic(d.layout.GuestDir(def.Name)); err != nil {
		d.log.Warn("remove a migrated guest's directory", "guest", def.Name, "err", err)
	}
	d.guests.remove(def.Name)
	d.unpublish(ctx, def)
	d.lifecycle(api.GuestDeleted, def.Name)
	rep.warn(fmt.Sprintf("moved live in %s, paused %s (QEMU's migration; disks mirrored over NBD)", time.Since(began).Round(time.Millisecond), stats.Downtime.Round(time.Millisecond)))
	rep.result(m.Name)
	d.log.Info("guest moved live", "guest", def.Name, "to", m.Name, "total", stats.Total, "downtime", stats.Downtime)
	return true, nil
}

// memberCall POSTs body to another member's API path (under /1.0) and
// decodes its answer into out.
func (d *Daemon) memberCall(ctx context.Context, c *clusterState, m cluster.Member, path string, body, out any) error {
	data, err := json.Marshal(body)
	if err != nil {
		return err
	}
	header := http.Header{"Content-Type": {"application/json"}}
	answer, err := d.memberDo(ctx, c, m, http.MethodPost, api.Version+path, bytes.NewReader(data), int64(len(data)), header)
	if err != nil || out == nil || len(answer) == 0 {
		return err
	}
	return json.Unmarshal(answer, out)
}

// memberDo sends one request to member m as this member (forwardedHeader)
// and returns the answer's body; an answer other than 2xx is an error in
// the member's words, its kind kept.
func (d *Daemon) memberDo(ctx context.Context, c *clusterState, m cluster.Member, method, path string, body io.Reader, size int64, header http.Header) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, method, "https://"+m.API+path, body)
	if err != nil {
		return nil, err
	}
	maps.Copy(req.Header, header)
	req.Header.Set(forwardedHeader, c.local.Member)
	if body != nil {
		req.ContentLength = size
	}
	resp, err := c.transport(d, m).RoundTrip(req)
	if err != nil {
		return nil, fmt.Errorf("member %s: %w", m.Name, err)
	}
	defer resp.Body.Close()
	answer, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("member %s: %w", m.Name, err)
	}
	if resp.StatusCode/100 != 2 {
		var e api.Error
		if json.Unmarshal(answer, &e) == nil && e.Error != "" {
			return nil, fmt.Errorf("member %s: %w", m.Name, &memberError{msg: e.Error, sentinel: api.Sentinel(e.Kind)})
		}
		return nil, fmt.Errorf("member %s answered %s: %s", m.Name, resp.Status, bytes.TrimSpace(answer))
	}
	return answer, nil
}

// memberError is an error another member answered, its kind kept.
type memberError struct {
	msg      string
	sentinel error
}

func (e *memberError) Error() string { return e.msg }
func (e *memberError) Unwrap() error { return e.sentinel }

// handleMigrationIn prepares an incoming migration: the guest's name
// held here, its VMM started paused, its disks served.
func (d *Daemon) handleMigrationIn(r *http.Request) (any, error) {
	c, err := d.memberOnly()
	if err != nil {
		return nil, err
	}
	from, ok := d.fromMember(r)
	if !ok {
		return nil, fmt.Errorf("%w: only a cluster member migrates guests here", api.ErrForbidden)
	}
	var offer migrationOffer
	if err := readJSON(r, &offer); err != nil {
		return nil, err
	}
	def, err := guest.Parse([]byte(offer.Definition))
	if err != nil {
		return nil, fmt.Errorf("%w: the migrating guest's definition: %v", api.ErrInvalid, err)
	}
	if def.Name != r.PathValue("name") {
		return nil, fmt.Errorf("%w: the definition names %s, the path %s", api.ErrInvalid, def.Name, r.PathValue("name"))
	}
	drv, err := d.driverFor(def)
	if err != nil {
		return nil, err
	}
	mig, ok := drv.(driver.Migrator)
	if !ok {
		return nil, fmt.Errorf("%w: class %s does not migrate live here", api.ErrNotAvailable, def.Class)
	}
	ctx := r.Context()
	// The kernel and the disk's template are read from this member's
	// template store.
	if _, err := d.templates.Load(templateKey(def)); err != nil {
		if !d.fetchTemplateFor(ctx, api.GuestCreate{Template: def.Template, Type: def.Type, Arch: def.Arch}) {
			return nil, fmt.Errorf("%w: template %s is on no member this one can fetch it from", api.ErrNotAvailable, templateKey(def))
		}
	}
	// The name is the source's in the cluster: held here in the table
	// alone until the guest runs here.
	if err := d.guests.reserve(def.Name, templateKey(def), def.Networks); err != nil {
		return nil, err
	}
	release := func() { d.guests.release(def.Name, nil) }
	dir := d.layout.GuestDir(def.Name)
	if err := os.Mkdir(dir, 0o700); err != nil {
		release()
		return nil, fmt.Errorf("migrate %s in: %w", def.Name, err)
	}
	if err := gateGuestDir(dir, rootGroup(def)); err != nil {
		os.RemoveAll(dir)
		release()
		return nil, err
	}
	def.Status = guest.Status{State: api.StateStopped}
	if err := d.networks.Prepare(ctx, def, def.Networks); err != nil {
		os.RemoveAll(dir)
		release()
		return nil, err
	}
	listen, err := netip.ParseAddr(c.local.Address)
	if err != nil {
		os.RemoveAll(dir)
		release()
		return nil, err
	}
	in, status, err := mig.PrepareIncoming(ctx, def, offer.Source, listen)
	if err != nil {
		os.RemoveAll(dir)
		release()
		return nil, fmt.Errorf("migrate %s in: %w", def.Name, err)
	}
	def.Status = status
	c.mu.Lock()
	if c.incoming == nil {
		c.incoming = map[string]*guest.Definition{}
	}
	c.incoming[def.Name] = def
	c.mu.Unlock()
	d.log.Info("waiting for a migrating guest", "guest", def.Name, "from", from, "migration", in.Migration, "nbd", in.NBD)
	return in, nil
}

// incomingOf takes the incoming migration of the request's guest.
func (d *Daemon) incomingOf(r *http.Request) (*clusterState, *guest.Definition, driver.Migrator, error) {
	c, err := d.memberOnly()
	if err != nil {
		return nil, nil, nil, err
	}
	if _, ok := d.fromMember(r); !ok {
		return nil, nil, nil, fmt.Errorf("%w: only a cluster member migrates guests here", api.ErrForbidden)
	}
	name := r.PathValue("name")
	c.mu.Lock()
	def := c.incoming[name]
	delete(c.incoming, name)
	c.mu.Unlock()
	if def == nil {
		return nil, nil, nil, fmt.Errorf("%w: no migration of %s is waiting here", api.ErrNotFound, name)
	}
	drv, err := d.driverFor(def)
	if err != nil {
		return nil, nil, nil, err
	}
	return c, def, drv.(driver.Migrator), nil
}

// handleMigrationFinish resumes a migrated guest here and makes it this
// member's own.
func (d *Daemon) handleMigrationFinish(r *http.Request) (any, error) {
	_, def, mig, err := d.incomingOf(r)
	if err != nil {
		return nil, err
	}
	ctx := context.WithoutCancel(r.Context())
	if err := mig.FinishIncoming(ctx, def); err != nil {
		d.abortIncoming(ctx, def, mig)
		return nil, fmt.Errorf("resume %s here: %w", def.Name, err)
	}
	def.Status.State = api.StateRunning
	if err := d.store.Save(d.layout.GuestDir(def.Name), def); err != nil {
		return nil, err
	}
	e := d.guests.releaseHeld(def.Name, def)
	d.watch(e, def)
	e.release()
	d.log.Info("a migrated guest runs here", "guest", def.Name, "pid", def.Status.InitPID)
	d.lifecycle(api.GuestStarted, def.Name)
	return nil, nil
}

// handleMigrationAbort ends an incoming migration that failed.
func (d *Daemon) handleMigrationAbort(r *http.Request) (any, error) {
	_, def, mig, err := d.incomingOf(r)
	if err != nil {
		return nil, err
	}
	d.abortIncoming(context.WithoutCancel(r.Context()), def, mig)
	return nil, nil
}

func (d *Daemon) abortIncoming(ctx context.Context, def *guest.Definition, mig driver.Migrator) {
	if err := mig.AbortIncoming(ctx, def); err != nil {
		d.log.Error("abort an incoming migration", "guest", def.Name, "err", err)
	}
	if err := os.RemoveAll(d.layout.GuestDir(def.Name)); err != nil {
		d.log.Error("remove an aborted migration's directory", "guest", def.Name, "err", err)
	}
	d.guests.release(def.Name, nil)
}
