package network

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/polyvisor/polyvisor/internal/guest"
	"github.com/polyvisor/polyvisor/internal/layout"
	"github.com/polyvisor/polyvisor/internal/overlay"
	"github.com/polyvisor/polyvisor/internal/procutil"
	"github.com/polyvisor/polyvisor/internal/runcmd"
	"github.com/polyvisor/polyvisor/pkg/api"
)

// restartDelay spaces the restarts of a dnsmasq that keeps dying.
const restartDelay = time.Second

// Manager runs the networks of one daemon.
type Manager struct {
	layout layout.Layout
	log    *slog.Logger
	store  store

	// ops serializes creating and deleting networks.
	ops        sync.Mutex
	mu         sync.Mutex
	nets       map[string]*running
	leaseCache map[string]leaseCache
	forwards   map[string][]boundForward // published ports, by guest
	// watchers are the goroutines restarting dnsmasq; Close waits for them.
	watchers sync.WaitGroup
	// Fault, when set, is the daemon's fault injector (tests only): it
	// may kill the daemon at the named points (crashPoint).
	Fault func(point string) error
}

// crashPoint names a point where tests may kill the daemon.
func (m *Manager) crashPoint(point string) {
	if m.Fault != nil {
		m.Fault(point)
	}
}

// running is a network the manager serves.
type running struct {
	def     *Definition
	dnsmasq dnsmasq
	stop    context.CancelFunc // ends its watcher
	mu      sync.Mutex
	pid     procutil.Identity
}

// NewManager returns the manager of the networks kept under l.
func NewManager(l layout.Layout, log *slog.Logger) *Manager {
	return &Manager{layout: l, log: log.With("component", "network"), store: store{dir: l.NetworksDir()}, nets: map[string]*running{}, leaseCache: map[string]leaseCache{}, forwards: map[string][]boundForward{}}
}

// Restore brings every stored network up: its bridge, and its dnsmasq,
// adopted when it still runs with the same configuration. A network that
// cannot be brought up is logged and left on disk; the others go on.
func (m *Manager) Restore(ctx context.Context) {
	names, err := m.store.names()
	if err != nil {
		m.log.Error("restore networks", "err", err)
		return
	}
	for _, name := range names {
		def, err := m.store.load(name)
		if err == nil && def.Intent != "" {
			// Created for a client that saw it fail, or being deleted.
			err = errors.Join(m.down(ctx, def), m.store.remove(name))
			m.log.Info("removed a network whose "+def.Intent+" was interrupted", "network", name, "err", err)
			continue
		}
		if err == nil {
			err = m.up(ctx, def)
		}
		if err != nil {
			m.log.Error("restore network", "network", name, "err", err)
			continue
		}
		// Without its overlay the network still serves this host's guests.
		if def.Cluster != nil {
			if err := overlay.Ensure(ctx, def.overlayConfig()); err != nil {
				m.log.Error("restore network's overlay", "network", name, "err", err)
			}
		}
	}
	if err := m.syncNAT(); err != nil {
		m.log.Error("restore networks' NAT", "err", err)
	}
}

// syncNAT rewrites the nftables table from the networks that are up and
// the ports guests publish.
func (m *Manager) syncNAT() error {
	m.mu.Lock()
	defs := make([]*Definition, 0, len(m.nets))
	for _, r := range m.nets {
		defs = append(defs, r.def)
	}
	var forwards []boundForward
	for _, fwds := range m.forwards {
		forwards = append(forwards, fwds...)
	}
	m.mu.Unlock()
	sort.Slice(defs, func(i, j int) bool { return defs[i].Name < defs[j].Name })
	sort.Slice(forwards, func(i, j int) bool {
		return forwards[i].String()+forwards[i].Guest < forwards[j].String()+forwards[j].Guest
	})
	return syncNAT(defs, forwards)
}

// Close stops watching dnsmasq processes; they and the bridges stay, for
// the next daemon to adopt.
func (m *Manager) Close() {
	m.mu.Lock()
	for _, r := range m.nets {
		r.stop()
	}
	m.mu.Unlock()
	m.watchers.Wait()
}

// used lists what the host and the other networks hold.
func (m *Manager) used() ([]inUse, error) {
	m.mu.Lock()
	ours := map[string]bool{}
	var used []inUse
	for _, r := range m.nets {
		ours[r.def.Bridge] = true
		used = append(used, inUse{Prefix: r.def.Subnet, Owner: "network " + r.def.Name})
	}
	m.mu.Unlock()
	host, err := hostPrefixes(ours)
	if err != nil {
		return nil, err
	}
	return append(used, host...), nil
}

// Create makes a network and brings it up; on failure nothing of it is left.
func (m *Manager) Create(ctx context.Context, req api.NetworkCreate) (api.Network, error) {
	m.ops.Lock()
	defer m.ops.Unlock()
	return m.create(ctx, req)
}

func (m *Manager) create(ctx context.Context, req api.NetworkCreate) (api.Network, error) {
	if err := validateName(req.Name); err != nil {
		return api.Network{}, err
	}
	m.mu.Lock()
	_, exists := m.nets[req.Name]
	m.mu.Unlock()
	// Even a definition that does not load is kept, never overwritten.
	if _, err := os.Stat(m.store.path(req.Name)); exists || err == nil {
		return api.Network{}, fmt.Errorf("network %s: %w", req.Name, api.ErrExists)
	}
	if interfaceExists(req.Name) {
		return api.Network{}, fmt.Errorf("%w: network name %s: the host already has an interface of that name; choose another", api.ErrConflict, req.Name)
	}
	used, err := m.used()
	if err != nil {
		return api.Network{}, err
	}
	def := &Definition{SchemaVersion: SchemaVersion, Name: req.Name, Bridge: req.Name, Isolated: req.Isolated, CreatedAt: time.Now().UTC(), Intent: intentCreate}
	if req.Subnet == "" {
		def.Subnet, err = chooseSubnet(used)
	} else {
		def.Subnet, err = parseSubnet(req.Subnet, used)
	}
	if err != nil {
		return api.Network{}, err
	}
	if err := m.store.save(def); err != nil {
		return api.Network{}, err
	}
	err = m.up(ctx, def)
	if err == nil {
		err = m.syncNAT()
	}
	if err == nil {
		m.crashPoint("network-create-after-up")
		def.Intent = ""
		err = m.store.save(def)
	}
	if err != nil {
		m.down(context.WithoutCancel(ctx), def)
		m.store.remove(def.Name)
		m.syncNAT()
		return api.Network{}, fmt.Errorf("create network %s: %w", def.Name, err)
	}
	m.log.Info("network created", "network", def.Name, "subnet", def.Subnet)
	return m.Get(def.Name)
}

// EnsureDefault makes the default network unless it exists.
func (m *Manager) EnsureDefault(ctx context.Context) error {
	m.ops.Lock()
	defer m.ops.Unlock()
	m.mu.Lock()
	_, ok := m.nets[DefaultName]
	m.mu.Unlock()
	if ok {
		return nil
	}
	_, err := m.create(ctx, api.NetworkCreate{Name: DefaultName})
	if errors.Is(err, api.ErrExists) {
		return nil
	}
	return err
}

// Prepare makes sure the networks a guest joins are up, making the default
// one on first use, and that the guest has its address reserved on each.
func (m *Manager) Prepare(ctx context.Context, def *guest.Definition, names []string) error {
	for _, name := range names {
		if name == DefaultName {
			if err := m.EnsureDefault(ctx); err != nil {
				return fmt.Errorf("default network %s: %w", DefaultName, err)
			}
		} else if _, err := m.Get(name); err != nil {
			if errors.Is(err, api.ErrNotFound) {
				return fmt.Errorf("network %s: %w: create it with 'polyvisor network create %s'", name, api.ErrNotFound, name)
			}
			return err
		}
		if _, err := m.Reserve(name, def.Name, GuestNIC(def, name)); err != nil {
			return err
		}
	}
	return nil
}

// Lease returns the address leased to mac on network, if any. A list of
// many guests asks once per guest: the lease file is read again only when
// dnsmasq has rewritten it.
func (m *Manager) Lease(network string, mac string) (string, bool) {
	for _, l := range m.leases(network) {
		if l.MAC == mac {
			return l.IPv4, true
		}
	}
	return "", false
}

// leaseCache is a network's lease file as last read.
type leaseCache struct {
	modified time.Time
	size     int64
	leases   []api.Lease
}

// leases returns network's leases, from the cache while the file is
// unchanged (its modification time and size).
func (m *Manager) leases(network string) []api.Lease {
	path := filepath.Join(m.store.path(network), leasesFile)
	info, err := os.Stat(path)
	if err != nil {
		return nil
	}
	m.mu.Lock()
	cached, ok := m.leaseCache[network]
	m.mu.Unlock()
	if ok && cached.modified.Equal(info.ModTime()) && cached.size == info.Size() {
		return cached.leases
	}
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	fresh := leaseCache{modified: info.ModTime(), size: info.Size(), leases: parseLeases(f)}
	m.mu.Lock()
	m.leaseCache[network] = fresh
	m.mu.Unlock()
	return fresh.leases
}

// Release ends the lease of mac on network, as a deleted guest's should:
// dhcp_release (dnsmasq's own tool) sends dnsmasq the DHCPRELEASE the guest
// no longer can, and dnsmasq forgets the lease and the name with it.
func (m *Manager) Release(ctx context.Context, network, mac string) error {
	if err := m.Unreserve(network, mac); err != nil {
		return err
	}
	ip, ok := m.Lease(network, mac)
	if !ok {
		return nil
	}
	def, err := m.store.load(network)
	if err != nil {
		return err
	}
	if err := runcmd.Run(ctx, runcmd.Cmd{Name: "dhcp_release", Args: []string{def.Bridge, ip, mac}}); err != nil {
		return fmt.Errorf("release %s's lease on %s: %w", mac, network, err)
	}
	// dnsmasq rewrites its lease file once it has the packet.
	for range 50 {
		if _, ok := m.Lease(network, mac); !ok {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("release %s's lease on %s: dnsmasq still lists it", mac, network)
}

// ResolveNetworks turns what a user asked for into the networks a guest
// joins: nothing asked is byDefault (a network's name, or "none"); "none"
// alone is none.
func ResolveNetworks(asked []string, byDefault string) ([]string, error) {
	if len(asked) == 0 {
		asked = []string{byDefault}
	}
	if slices.Contains(asked, "none") {
		if len(asked) > 1 {
			return nil, fmt.Errorf("%w: network none: it cannot go with other networks", api.ErrInvalid)
		}
		return []string{}, nil
	}
	seen := map[string]bool{}
	for _, name := range asked {
		if err := validateName(name); err != nil {
			return nil, err
		}
		if seen[name] {
			return nil, fmt.Errorf("%w: network %s is named twice", api.ErrInvalid, name)
		}
		seen[name] = true
	}
	if len(asked) > 1 {
		return nil, fmt.Errorf("%w: networks %v: a guest joins one network for now", api.ErrInvalid, asked)
	}
	return asked, nil
}

// up brings a network's bridge and dnsmasq up and watches dnsmasq.
func (m *Manager) up(ctx context.Context, def *Definition) error {
	if err := ensureBridge(def); err != nil {
		return err
	}
	dir, runDir := m.store.path(def.Name), m.layout.NetworkRunDir(def.Name)
	// dnsmasq wants its hosts file to exist.
	if f, err := os.OpenFile(filepath.Join(dir, hostsFile), os.O_WRONLY|os.O_CREATE, 0o644); err == nil {
		f.Close()
	} else {
		return fmt.Errorf("network %s: reservations: %w", def.Name, err)
	}
	dm := newDnsmasq(dir, runDir)
	config := dnsmasqConfig(def, dir, runDir)
	id, ok := dm.running()
	if ok && !dm.configCurrent(config) {
		if err := dm.stop(ctx); err != nil {
			return err
		}
		ok = false
	}
	if !ok {
		var err error
		if id, err = dm.start(ctx, config); err != nil {
			return err
		}
	}
	watchCtx, stop := context.WithCancel(context.WithoutCancel(ctx))
	r := &running{def: def, dnsmasq: dm, stop: stop, pid: id}
	m.mu.Lock()
	m.nets[def.Name] = r
	m.mu.Unlock()
	m.watchers.Add(1)
	go m.watch(watchCtx, r, config)
	return nil
}

// watch restarts the network's dnsmasq whenever it ends, until ctx ends.
func (m *Manager) watch(ctx context.Context, r *running, config string) {
	defer m.watchers.Done()
	for {
		r.mu.Lock()
		id := r.pid
		r.mu.Unlock()
		if id.PID > 0 {
			if err := id.Wait(ctx); err != nil {
				return
			}
		}
		m.log.Warn("dnsmasq ended; starting it again", "network", r.def.Name, "pid", id.PID)
		select {
		case <-ctx.Done():
			return
		case <-time.After(restartDelay):
		}
		next, err := r.dnsmasq.start(ctx, config)
		if err != nil {
			m.log.Error("restart dnsmasq", "network", r.def.Name, "err", err)
		}
		r.mu.Lock()
		r.pid = next
		r.mu.Unlock()
	}
}

// down takes a network's dnsmasq and bridge away.
func (m *Manager) down(ctx context.Context, def *Definition) error {
	m.mu.Lock()
	r := m.nets[def.Name]
	delete(m.nets, def.Name)
	m.mu.Unlock()
	if r != nil {
		r.stop()
	}
	dm := newDnsmasq(m.store.path(def.Name), m.layout.NetworkRunDir(def.Name))
	var err error
	if def.Cluster != nil {
		err = overlay.Remove(def.Bridge)
	}
	err = errors.Join(err, dm.stop(ctx), deleteBridge(def.Bridge), os.RemoveAll(m.layout.NetworkRunDir(def.Name)))
	os.Remove(filepath.Dir(m.layout.NetworkRunDir(def.Name))) // once the last network is gone
	return err
}

// Delete takes a network down and removes it. inUse names the guests on
// it: a network in use is refused.
func (m *Manager) Delete(ctx context.Context, name string, inUse []string) error {
	m.ops.Lock()
	defer m.ops.Unlock()
	def, err := m.store.load(name)
	if err != nil {
		return err
	}
	if len(inUse) > 0 {
		return fmt.Errorf("%w: network %s is used by %v: delete them or move them to another network first", api.ErrConflict, name, inUse)
	}
	def.Intent = intentDelete
	if err := m.store.save(def); err != nil {
		return fmt.Errorf("delete network %s: record the intent: %w", name, err)
	}
	m.crashPoint("network-delete-recorded")
	if err := errors.Join(m.down(ctx, def), m.syncNAT()); err != nil {
		return fmt.Errorf("delete network %s: %w", name, err)
	}
	if err := m.store.remove(name); err != nil {
		return fmt.Errorf("delete network %s: %w", name, err)
	}
	m.log.Info("network deleted", "network", name)
	return nil
}

// Get describes one network.
func (m *Manager) Get(name string) (api.Network, error) {
	m.mu.Lock()
	r, ok := m.nets[name]
	m.mu.Unlock()
	if !ok {
		if _, err := m.store.load(name); err != nil {
			return api.Network{}, err
		}
		return api.Network{}, fmt.Errorf("%w: network %s is not up; see the daemon's log", api.ErrNotAvailable, name)
	}
	return m.view(r), nil
}

// List describes every network that is up, by name.
func (m *Manager) List() []api.Network {
	m.mu.Lock()
	var rs []*running
	for _, r := range m.nets {
		rs = append(rs, r)
	}
	m.mu.Unlock()
	list := make([]api.Network, 0, len(rs))
	for _, r := range rs {
		list = append(list, m.view(r))
	}
	sort.Slice(list, func(i, j int) bool { return list[i].Name < list[j].Name })
	return list
}

func (m *Manager) view(r *running) api.Network {
	r.mu.Lock()
	pid := r.pid
	r.mu.Unlock()
	n := api.Network{
		Name: r.def.Name, Bridge: r.def.Bridge, Subnet: r.def.Subnet.String(), Gateway: r.def.Gateway().String(),
		Domain: Domain, Isolated: r.def.Isolated, CreatedAt: r.def.CreatedAt, Leases: []api.Lease{},
	}
	if pid.Alive() {
		n.DNSMasqPID = pid.PID
	}
	if leases := m.leases(r.def.Name); leases != nil {
		n.Leases = leases
	}
	return n
}

// Names lists the networks on disk.
func (m *Manager) Names() ([]string, error) {
	names, err := m.store.names()
	slices.Sort(names)
	return names, err
}
