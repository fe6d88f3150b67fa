package network

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sort"

	"golang.org/x/sys/unix"

	"github.com/polyvisor/polyvisor/internal/fsutil"
	"github.com/polyvisor/polyvisor/internal/guest"
	"github.com/polyvisor/polyvisor/internal/overlay"
	"github.com/polyvisor/polyvisor/pkg/api"
)

// clusterHostsFile is the network's dnsmasq addn-hosts file: the cluster's
// guests, "IP NAME.polyvisor NAME" a line, read again on SIGHUP.
const clusterHostsFile = "cluster-hosts"

// maxSlots bounds ClusterSlot.MaxSlots: each slot holds one bridge address
// below the DHCP range.
const maxSlots = 64

// ClusterSlot is this member's part in a network that spans a cluster:
// every member's bridge is on one subnet, at its own address, and its
// dnsmasq leases from its own slice of the subnet, so members never hand
// out the same address; a VXLAN overlay joins the bridges.
type ClusterSlot struct {
	// Subnet is the cluster-wide subnet.
	Subnet netip.Prefix
	// Slot is this member's number, 1 to MaxSlots: its bridge holds the
	// subnet's address number Slot (slot 1 the usual gateway, .1).
	Slot int
	// MaxSlots is how many members the subnet is divided among; the same
	// on every member.
	MaxSlots int
	// Overlay joins the members' bridges; its Bridge is filled in.
	Overlay overlay.Config
	// Hosts are the cluster's guests by name, answered by this member's
	// dnsmasq as NAME and NAME.polyvisor.
	Hosts map[string]netip.Addr
}

// Cluster is a network's ClusterSlot as network.yaml keeps it, so that a
// restarted daemon brings the same slot and overlay back; the hosts are
// kept in the cluster-hosts file.
type Cluster struct {
	Slot     int          `yaml:"slot"`
	MaxSlots int          `yaml:"maxSlots"`
	VNI      uint32       `yaml:"vni"`
	Local    netip.Addr   `yaml:"local"`
	Peers    []netip.Addr `yaml:"peers,omitempty"`
	Port     int          `yaml:"port,omitempty"`
	// MTU is what guests are told to use (DHCP option 26): the overlay's,
	// measured when the slot was set.
	MTU int `yaml:"mtu,omitempty"`
}

// validate checks a slot on subnet, naming the field at fault.
func (c *Cluster) validate(subnet netip.Prefix) error {
	if c.MaxSlots < 1 || c.MaxSlots > maxSlots {
		return fmt.Errorf("%w: cluster maxSlots %d: use 1 to %d", api.ErrInvalid, c.MaxSlots, maxSlots)
	}
	if c.Slot < 1 || c.Slot > c.MaxSlots {
		return fmt.Errorf("%w: cluster slot %d: use 1 to maxSlots (%d)", api.ErrInvalid, c.Slot, c.MaxSlots)
	}
	if first, last := slotRange(subnet, c.Slot, c.MaxSlots); !first.IsValid() || first.Compare(last) > 0 {
		return fmt.Errorf("%w: cluster subnet %s is too small for %d slots: give a larger subnet or fewer slots", api.ErrInvalid, subnet, c.MaxSlots)
	}
	if !c.Local.IsValid() || c.VNI == 0 || c.VNI >= 1<<24 {
		return fmt.Errorf("%w: cluster overlay: give a VNI (1 to %d) and this member's underlay address", api.ErrInvalid, 1<<24-1)
	}
	return nil
}

// overlayConfig is the overlay of the network's bridge.
func (d *Definition) overlayConfig() overlay.Config {
	c := d.Cluster
	return overlay.Config{Bridge: d.Bridge, VNI: c.VNI, Local: c.Local, Peers: c.Peers, Port: c.Port}
}

// addrAt is the subnet's address number n (0 is the network's).
func addrAt(p netip.Prefix, n uint32) netip.Addr {
	a := p.Addr().As4()
	v := uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8 | uint32(a[3]) + n
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

// slotRange is slot's share of the DHCP range: the addresses above the
// maxSlots bridges' divided evenly among the slots (what does not divide
// is left unused). An invalid first means the subnet is too small.
func slotRange(p netip.Prefix, slot, maxSlots int) (first, last netip.Addr) {
	_, end := dhcpRange(p)
	start := addrAt(p, uint32(maxSlots)+1)
	if !p.Contains(start) || start.Compare(end) > 0 {
		return netip.Addr{}, netip.Addr{}
	}
	count := addrOffset(p, end) - addrOffset(p, start) + 1
	per := count / uint32(maxSlots)
	if per == 0 {
		return netip.Addr{}, netip.Addr{}
	}
	first = addrAt(p, addrOffset(p, start)+uint32(slot-1)*per)
	return first, addrAt(p, addrOffset(p, first)+per-1)
}

// addrOffset is a's number in p.
func addrOffset(p netip.Prefix, a netip.Addr) uint32 {
	x, y := p.Addr().As4(), a.As4()
	from := uint32(x[0])<<24 | uint32(x[1])<<16 | uint32(x[2])<<8 | uint32(x[3])
	return uint32(y[0])<<24 | uint32(y[1])<<16 | uint32(y[2])<<8 | uint32(y[3]) - from
}

// SetCluster makes network name this member's part of a cluster-wide
// network, as c says, and keeps it so across daemon restarts. It is
// called again whenever something changes (peers join or leave, guests
// come and go): only what changed is done; dnsmasq restarts only when its
// configuration does (never for peers or hosts). A network on another
// subnet is made again on c.Subnet if no guest uses it; the default
// network is made if it does not exist yet.
func (m *Manager) SetCluster(ctx context.Context, name string, c ClusterSlot) error {
	m.ops.Lock()
	defer m.ops.Unlock()
	if !c.Subnet.IsValid() || !c.Subnet.Addr().Is4() || c.Subnet.Masked() != c.Subnet || c.Subnet.Bits() < minBits || c.Subnet.Bits() > maxBits {
		return fmt.Errorf("%w: cluster subnet %s: give an IPv4 network from /%d to /%d", api.ErrInvalid, c.Subnet, minBits, maxBits)
	}
	want := &Cluster{Slot: c.Slot, MaxSlots: c.MaxSlots, VNI: c.Overlay.VNI, Local: c.Overlay.Local,
		Peers: slices.Clone(c.Overlay.Peers), Port: c.Overlay.Port}
	// In order, so that the same peers are the same definition.
	slices.SortFunc(want.Peers, netip.Addr.Compare)
	if err := want.validate(c.Subnet); err != nil {
		return fmt.Errorf("network %s: %w", name, err)
	}
	mtu, err := overlay.MTU(want.Local)
	if err != nil {
		return fmt.Errorf("network %s: %w", name, err)
	}
	want.MTU = mtu
	hosts, err := hostsFileText(c.Hosts)
	if err != nil {
		return fmt.Errorf("network %s: %w", name, err)
	}
	old, err := m.store.load(name)
	if errors.Is(err, api.ErrNotFound) && name == DefaultName {
		if _, err = m.create(ctx, api.NetworkCreate{Name: name, Subnet: c.Subnet.String()}); err != nil {
			return err
		}
		old, err = m.store.load(name)
	}
	if err != nil {
		return err
	}
	def := *old
	def.Subnet, def.Cluster = c.Subnet, want
	if err := fsutil.WriteFileAtomic(filepath.Join(m.store.path(name), clusterHostsFile), hosts, 0o644); err != nil {
		return fmt.Errorf("network %s: save the cluster's hosts: %w", name, err)
	}
	if old.Subnet != def.Subnet {
		err = m.moveSubnet(ctx, old, &def)
	} else {
		err = m.apply(ctx, old, &def)
	}
	if err != nil {
		return err
	}
	m.hangup(name)
	level := slog.LevelDebug
	if !reflect.DeepEqual(old, &def) {
		level = slog.LevelInfo
	}
	m.log.Log(ctx, level, "network set in the cluster", "network", name, "subnet", def.Subnet, "slot", want.Slot, "gateway", def.Gateway(), "peers", want.Peers)
	return nil
}

// apply changes a network in place from old to def: the definition, then
// the bridge's address and dnsmasq (restarted only if its configuration
// changed), then the overlay. On failure old is put back.
func (m *Manager) apply(ctx context.Context, old, def *Definition) (err error) {
	if reflect.DeepEqual(old, def) {
		// Only the hosts, or nothing, changed: the overlay is made sure of.
		return overlay.Ensure(ctx, def.overlayConfig())
	}
	if def.Cluster != nil {
		if err := m.checkReservations(def); err != nil {
			return err
		}
	}
	if err := m.store.save(def); err != nil {
		return err
	}
	defer func() {
		if err != nil {
			rollback := context.WithoutCancel(ctx)
			if old.Cluster == nil {
				overlay.Remove(old.Bridge)
			}
			m.store.save(old)
			if m.reup(rollback, old) == nil && old.Cluster != nil {
				overlay.Ensure(rollback, old.overlayConfig())
			}
			err = fmt.Errorf("network %s: %w", def.Name, err)
		}
	}()
	// dnsmasq is adopted, not restarted, when its configuration is the same.
	if err := m.reup(ctx, def); err != nil {
		return err
	}
	if def.Cluster == nil {
		return overlay.Remove(def.Bridge)
	}
	return overlay.Ensure(ctx, def.overlayConfig())
}

// moveSubnet makes a network that no guest uses again on def's subnet.
func (m *Manager) moveSubnet(ctx context.Context, old, def *Definition) error {
	var users []string
	list, err := m.reservations(old.Name)
	if err != nil {
		return fmt.Errorf("network %s: %w", old.Name, err)
	}
	for _, r := range list {
		users = append(users, r.Name)
	}
	for _, l := range m.leases(old.Name) {
		users = append(users, l.MAC)
	}
	if len(users) > 0 {
		return fmt.Errorf("%w: network %s is on %s, the cluster's on %s, and %v use it: delete those guests or move them to another network, then join again", api.ErrConflict, old.Name, old.Subnet, def.Subnet, users)
	}
	used, err := m.used()
	if err != nil {
		return err
	}
	used = slices.DeleteFunc(used, func(u inUse) bool { return u.Owner == "network "+old.Name })
	if u, clash := overlap(def.Subnet, used); clash {
		return fmt.Errorf("%w: network %s: the cluster's subnet %s overlaps %s (%s) on this host", api.ErrConflict, old.Name, def.Subnet, u.Prefix, u.Owner)
	}
	if err := m.store.save(def); err != nil {
		return err
	}
	if err := m.down(ctx, old); err != nil {
		return fmt.Errorf("network %s: take it down to move it: %w", old.Name, err)
	}
	os.Remove(filepath.Join(m.store.path(old.Name), leasesFile))
	err = m.up(ctx, def)
	if err == nil {
		err = overlay.Ensure(ctx, def.overlayConfig())
	}
	if err == nil {
		err = m.syncNAT()
	}
	if err != nil {
		// Back where it was, without the cluster.
		rollback := context.WithoutCancel(ctx)
		m.down(rollback, def)
		m.store.save(old)
		m.up(rollback, old)
		m.syncNAT()
		return fmt.Errorf("network %s: move to %s: %w", old.Name, def.Subnet, err)
	}
	m.log.Info("network moved to the cluster's subnet", "network", old.Name, "from", old.Subnet, "to", def.Subnet)
	return nil
}

// checkReservations refuses a slot that leaves a guest's reserved address
// outside it: another member would lease that address too, or hold it on
// its bridge.
func (m *Manager) checkReservations(def *Definition) error {
	list, err := m.reservations(def.Name)
	if err != nil {
		return fmt.Errorf("network %s: %w", def.Name, err)
	}
	first, last := def.dhcpRange()
	for _, r := range list {
		if r.IP.Compare(first) < 0 || r.IP.Compare(last) > 0 {
			return fmt.Errorf("%w: network %s: guest %s holds %s, outside this member's range %s-%s (slot %d): delete the guest or move it to another network, then join again", api.ErrConflict, def.Name, r.Name, r.IP, first, last, def.Cluster.Slot)
		}
	}
	return nil
}

// ClearCluster takes network name out of the cluster: no overlay, no
// other members' names, the whole subnet's range and the usual gateway
// again. The subnet stays.
func (m *Manager) ClearCluster(ctx context.Context, name string) error {
	m.ops.Lock()
	defer m.ops.Unlock()
	old, err := m.store.load(name)
	if err != nil {
		return err
	}
	if old.Cluster == nil {
		return nil
	}
	def := *old
	def.Cluster = nil
	if err := m.apply(ctx, old, &def); err != nil {
		return err
	}
	if err := os.Remove(filepath.Join(m.store.path(name), clusterHostsFile)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("network %s: remove the cluster's hosts: %w", name, err)
	}
	m.log.Info("network left the cluster", "network", name)
	return nil
}

// Leases lists the leases of this member's dnsmasq on network: what a
// cluster publishes as this member's guests' addresses.
func (m *Manager) Leases(network string) []api.Lease {
	return slices.Clone(m.leases(network))
}

// reup serves a network from def again: its watcher is stopped, the bridge
// given def's address, and dnsmasq restarted only if its configuration
// changed; guests stay plugged in.
func (m *Manager) reup(ctx context.Context, def *Definition) error {
	m.mu.Lock()
	r := m.nets[def.Name]
	delete(m.nets, def.Name)
	m.mu.Unlock()
	if r != nil {
		r.stop()
	}
	return m.up(ctx, def)
}

// hangup has the network's dnsmasq read its hosts files again.
func (m *Manager) hangup(network string) {
	m.mu.Lock()
	r := m.nets[network]
	m.mu.Unlock()
	if r != nil {
		r.mu.Lock()
		id := r.pid
		r.mu.Unlock()
		id.Signal(unix.SIGHUP)
	}
}

// hostsFileText writes hosts as dnsmasq's addn-hosts file, in name order.
func hostsFileText(hosts map[string]netip.Addr) ([]byte, error) {
	names := make([]string, 0, len(hosts))
	for name, addr := range hosts {
		if err := guest.ValidateName(name); err != nil {
			return nil, fmt.Errorf("%w: cluster host %q: not a guest name", api.ErrInvalid, name)
		}
		if !addr.IsValid() {
			return nil, fmt.Errorf("%w: cluster host %s: no address", api.ErrInvalid, name)
		}
		names = append(names, name)
	}
	sort.Strings(names)
	var buf bytes.Buffer
	buf.WriteString("# Written by polyvisor: the cluster's guests.\n")
	for _, name := range names {
		fmt.Fprintf(&buf, "%s %s.%s %s\n", hosts[name], name, Domain, name)
	}
	return buf.Bytes(), nil
}
