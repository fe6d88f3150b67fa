// Package daemon wires the polyvisor daemon: the guest table, the drivers,
// the REST API on a unix socket, reconciliation on start, and the watchers
// that notice when a guest ends.
package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/polyvisor/polyvisor/internal/driver"
	"github.com/polyvisor/polyvisor/internal/events"
	"github.com/polyvisor/polyvisor/internal/guest"
	"github.com/polyvisor/polyvisor/internal/layout"
	"github.com/polyvisor/polyvisor/internal/network"
	"github.com/polyvisor/polyvisor/internal/template"
	"github.com/polyvisor/polyvisor/internal/trust"
	"github.com/polyvisor/polyvisor/internal/vendorhost"
	"github.com/polyvisor/polyvisor/pkg/api"
	"golang.org/x/sys/unix"
)

// Config configures a daemon.
type Config struct {
	StateDir string
	Socket   string
	// AgentDir holds the guest agent built per arch, for VM templates.
	AgentDir string
	Drivers  *driver.Registry
	Log      *slog.Logger
	// DefaultNetwork is what a guest that names no network joins:
	// network.DefaultName when empty, "none" for no network.
	DefaultNetwork string
	// Fault injects a failure at a named point (tests only).
	Fault func(point string) error
	// Store keeps the guests' definitions: nil for the files in the
	// state dir (tests wrap those to inject failures).
	Store guest.Store
	// Listen is where to serve the API over HTTPS (ADDR:PORT); empty for
	// the unix socket alone.
	Listen string
	// ForceNewCluster starts this member's etcd as a cluster of one that
	// keeps its data: the recovery of a cluster that lost its quorum.
	ForceNewCluster bool
	// HostKinds open the vendor hosts a user adds, by kind (vsphere,
	// libvirt); a kind without one is refused.
	HostKinds map[string]vendorhost.Opener
}

// Daemon is one running polyvisor daemon.
type Daemon struct {
	cfg       Config
	layout    layout.Layout
	log       *slog.Logger
	guests    *table
	store     guest.Store
	templates template.Store
	ops       *operations
	networks  *network.Manager
	// events carries lifecycle and operation events to the event stream.
	events *events.Bus
	// trust is who may reach the API over the network; remote is that
	// network side, nil without --listen.
	trust  *trust.Store
	remote *remote
	// metrics is what GET /metrics serves; history, the running guests'
	// recent usage.
	metrics *metrics
	history *usageHistory
	// hosts are the vendor hosts' connections.
	hosts *vendorhost.Pool
	// cluster is this daemon's membership of a cluster, nil outside one.
	clusterMu sync.Mutex
	cluster   *clusterState
	// templateFetches serializes fetches of one template (templatearchive.go).
	templateFetches nameLocks
	// watchers are the goroutines waiting for running guests to end.
	watchers sync.WaitGroup
	ctx      context.Context
}

// New prepares a daemon; Run serves it.
func New(cfg Config) (*Daemon, error) {
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	l := layout.New(cfg.StateDir)
	// Search-only for others down to guests/, then each guest's directory
	// for its own root alone (see perms.go).
	if err := repairModes(l.StateDir, l.GuestsDir(), l.TemplatesDir()); err != nil {
		return nil, err
	}
	if err := checkTraversable(l.StateDir); err != nil {
		return nil, err
	}
	if cfg.DefaultNetwork == "" {
		cfg.DefaultNetwork = network.DefaultName
	}
	if _, err := network.ResolveNetworks([]string{cfg.DefaultNetwork}, ""); err != nil {
		return nil, fmt.Errorf("--default-network: %w", err)
	}
	networks := network.NewManager(l, cfg.Log)
	networks.Fault = cfg.Fault
	store := cfg.Store
	if store == nil {
		store = guest.FileStore{Dir: l.GuestsDir()}
	}
	d := &Daemon{
		cfg: cfg, layout: l, log: cfg.Log,
		guests:    newTable(),
		store:     store,
		templates: template.Store{Dir: l.TemplatesDir(), AgentDir: cfg.AgentDir},
		networks:  networks,
		events:    &events.Bus{},
		hosts:     vendorhost.NewPool(vendorhost.OpenStore(l.HostsFile()), cfg.HostKinds),
	}
	d.ops = newOperations(d.operationEvent)
	d.metrics = d.newMetrics()
	d.history = &usageHistory{byGuest: map[string][]api.UsageSample{}}
	if err := d.openTrust(); err != nil {
		return nil, err
	}
	return d, nil
}

// Layout returns the daemon's paths.
func (d *Daemon) Layout() layout.Layout { return d.layout }

// Run reconciles the host with the definitions, then serves the API until
// ctx ends. Guests keep running after it returns.
func (d *Daemon) Run(ctx context.Context) error {
	d.ctx = ctx
	if err := d.reconcile(ctx); err != nil {
		return fmt.Errorf("reconcile: %w", err)
	}
	if err := d.sweepUploads(); err != nil {
		return err
	}
	d.networks.Restore(ctx)
	defer d.networks.Close()
	if dropped, err := d.networks.SweepReservations(d.joins); err != nil || len(dropped) > 0 {
		d.log.Info("dropped the addresses of guests no longer on their networks", "dropped", dropped, "err", err)
	}
	for _, def := range d.guests.all() {
		if err := d.publish(ctx, def, false); err != nil {
			d.log.Error("restore published ports", "guest", def.Name, "err", err)
		}
	}
	listener, err := listenUnix(d.cfg.Socket)
	if err != nil {
		return err
	}
	if d.cfg.Listen != "" {
		if d.remote, err = d.listenTLS(d.cfg.Listen); err != nil {
			listener.Close()
			return err
		}
	}
	if err := d.startCluster(ctx); err != nil {
		listener.Close()
		return err
	}
	defer d.stopCluster()
	d.watchers.Go(func() { d.sampleUsage(ctx) })
	handler := d.routes()
	srv := newServer(ctx, handler, readTimeout)
	served := make(chan error, 2)
	go func() { served <- srv.Serve(listener) }()
	servers := []*http.Server{srv}
	if d.remote != nil {
		remoteSrv, remoteServed := d.serveRemote(ctx, handler)
		servers = append(servers, remoteSrv)
		go func() {
			if err := <-remoteServed; err != nil {
				served <- err
			}
		}()
		d.log.Info("serving HTTPS", "listen", d.cfg.Listen, "addresses", advertise(d.remote.addr), "fingerprint", d.remote.fingerprint)
	}
	d.log.Info("polyvisor daemon ready", "socket", d.cfg.Socket, "state", d.layout.StateDir, "guests", d.guests.len())
	var serveErr error
	select {
	case err := <-served:
		serveErr = fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, s := range servers {
		s.Shutdown(shutdown)
	}
	if serveErr != nil {
		return serveErr
	}
	d.ops.wg.Wait()
	d.watchers.Wait()
	d.hosts.Close()
	d.log.Info("polyvisor daemon stopped; guests keep running")
	return nil
}

// listenUnix listens on a root-only socket (0660), replacing a stale one
// but refusing to steal it from a live daemon.
func listenUnix(path string) (net.Listener, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("socket dir: %w", err)
	}
	if conn, err := net.DialTimeout("unix", path, time.Second); err == nil {
		conn.Close()
		return nil, fmt.Errorf("another daemon already serves %s: stop it first or pass --socket", path)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("remove stale socket: %w", err)
	}
	l, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o660); err != nil {
		l.Close()
		return nil, fmt.Errorf("socket mode: %w", err)
	}
	return l, nil
}

func (d *Daemon) fault(point string) error {
	if d.cfg.Fault == nil {
		return nil
	}
	return d.cfg.Fault(point)
}

// joins reports whether guest joins network with mac, as its reservation
// there says; a broken guest keeps whatever it had.
func (d *Daemon) joins(netName, name, mac string) bool {
	if d.guests.brokenCause(name) != nil {
		return true
	}
	e, err := d.guests.get(name)
	if err != nil {
		return false
	}
	def := e.def.Load()
	return slices.Contains(def.Networks, netName) && network.GuestNIC(def, netName).MAC.String() == mac
}

// crashPoint names a point where tests may kill the daemon
// (--inject-fault crash:POINT) to check what the next one makes of the
// operation it interrupts; a plain fault there is not injected.
func (d *Daemon) crashPoint(point string) {
	if d.cfg.Fault != nil {
		d.cfg.Fault(point)
	}
}

// driverFor returns the driver of a guest's class.
func (d *Daemon) driverFor(def *guest.Definition) (driver.Driver, error) {
	return d.cfg.Drivers.Get(def.Class)
}

// view turns a definition into the API's guest, with live state.
func (d *Daemon) view(def *guest.Definition) api.Guest {
	g := api.Guest{
		Name: def.Name, Type: def.Type, Class: def.Class, Driver: def.Class, Accel: def.Status.Accel, Template: def.Template, Arch: def.Arch,
		CPUs: def.CPUs, Memory: int64(def.Memory), Processes: def.Processes, Privileged: def.Privileged,
		Rootfs: def.Rootfs, IPv4: []string{}, CreatedAt: def.CreatedAt, State: api.StateStopped,
		LastExit: def.Status.LastExit, Pending: def.Status.Pending,
	}
	if running(def) {
		g.State = api.StateRunning
		g.PID, g.MonitorPID, g.StartedAt = def.Status.InitPID, def.Status.MonitorPID, def.Status.StartedAt
	}
	if g.State == api.StateRunning {
		for _, n := range def.Networks {
			if ip, ok := d.networks.Lease(n, network.GuestNIC(def, n).MAC.String()); ok {
				g.IPv4 = append(g.IPv4, ip)
			}
		}
	}
	g.Networks = append([]string{}, def.Networks...)
	g.Publish = def.Publish
	for _, disk := range def.Disks {
		view := api.Disk{Name: disk.Name, Kind: disk.Kind, Size: int64(disk.Size), Path: filepath.Join(d.layout.GuestDir(def.Name), disk.Path)}
		if disk.Size > 0 {
			var st unix.Stat_t
			if unix.Stat(filepath.Join(d.layout.GuestDir(def.Name), disk.Path), &st) == nil {
				view.Allocated = st.Blocks * 512
			}
		}
		g.Disks = append(g.Disks, view)
	}
	// The class shown, the id map, the confinement and the disks' usage.
	if drv, err := d.driverFor(def); err == nil {
		drv.View(def, &g)
	}
	return g
}

// listView is e's view for a listing, whole or its summary, encoded. A
// stopped guest's view
// changes only with its definition (a new one is stored for every change)
// or through an operation on its disks (which holds the guest, and counts
// its release), so a listing reuses the view it made before unless one of
// them changed: 1,000 stopped guests' views cost three stats of a disk
// image each to make and ~900 KB to encode, which was most of a listing's
// time. A running guest's view is made anew: its disks' usage and
// addresses change by themselves.
func (d *Daemon) listView(e *entry, summary bool) []byte {
	def := e.def.Load()
	if running(def) {
		g := d.view(def)
		if !summary {
			return encodeListed(g, false)
		}
		s := g.Summary()
		s.CPUPercent, s.MemoryUsed = d.history.recent(def.Name)
		data, _ := json.Marshal(s) // as encodeListed: cannot fail
		return data
	}
	releases := e.releases.Load() // before the view: a release meanwhile voids it
	if l := e.listed.Load(); l != nil && l.def == def && l.releases == releases {
		return l.encoded.pick(summary)
	}
	encoded := encodeView(d.view(def))
	e.listed.Store(&listedView{def: def, releases: releases, encoded: encoded})
	return encoded.pick(summary)
}

// encodeListed is g, whole or its summary, in JSON.
func encodeListed(g api.Guest, summary bool) []byte {
	var v any = g
	if summary {
		v = g.Summary()
	}
	// Strings, numbers, slices and a time: encoding them cannot fail.
	data, _ := json.Marshal(v)
	return data
}

// encodedView is a guest's view and its summary, in JSON.
type encodedView struct{ full, summary []byte }

func encodeView(g api.Guest) encodedView {
	return encodedView{full: encodeListed(g, false), summary: encodeListed(g, true)}
}

// pick is the summary, or the whole view.
func (v encodedView) pick(summary bool) []byte {
	if summary {
		return v.summary
	}
	return v.full
}

// checkTraversable makes sure every directory above the state dir can be
// searched by others: a container's root is an unprivileged host uid, and
// runc, inside the container's user namespace, must reach the rootfs.
func checkTraversable(dir string) error {
	for d := filepath.Dir(dir); ; d = filepath.Dir(d) {
		st, err := os.Stat(d)
		if err != nil {
			return fmt.Errorf("state dir: %w", err)
		}
		if st.Mode().Perm()&0o001 == 0 {
			return fmt.Errorf("state dir %s: %s (mode %04o) is not searchable by others, so containers' unprivileged root cannot reach their rootfs: chmod o+x %s or pick another --state-dir", dir, d, st.Mode().Perm(), d)
		}
		if d == "/" {
			return nil
		}
	}
}
