package network

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"strings"

	"github.com/polyvisor/polyvisor/internal/fsutil"
	"github.com/polyvisor/polyvisor/pkg/api"
)

// hostsFile is dnsmasq's dhcp-hostsfile: one reservation a line,
// "MAC,IP,NAME". A guest's address is reserved when it joins the network,
// so that it is known before the guest asks (published ports forward to
// it) and stays the same for the guest's whole life.
const hostsFile = "hosts"

// reservation is one line of the hosts file.
type reservation struct {
	MAC  string
	IP   netip.Addr
	Name string
}

func (m *Manager) reservations(network string) ([]reservation, error) {
	data, err := os.ReadFile(filepath.Join(m.store.path(network), hostsFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var list []reservation
	s := bufio.NewScanner(bytes.NewReader(data))
	for s.Scan() {
		f := strings.Split(strings.TrimSpace(s.Text()), ",")
		if len(f) != 3 {
			continue
		}
		ip, err := netip.ParseAddr(f[1])
		if err != nil {
			continue
		}
		list = append(list, reservation{MAC: f[0], IP: ip, Name: f[2]})
	}
	return list, nil
}

// writeReservations saves the hosts file and has dnsmasq read it again
// (SIGHUP), if it runs.
func (m *Manager) writeReservations(network string, list []reservation) error {
	var buf bytes.Buffer
	for _, r := range list {
		fmt.Fprintf(&buf, "%s,%s,%s\n", r.MAC, r.IP, r.Name)
	}
	if err := fsutil.WriteFileAtomic(filepath.Join(m.store.path(network), hostsFile), buf.Bytes(), 0o644); err != nil {
		return fmt.Errorf("network %s: save reservations: %w", network, err)
	}
	m.hangup(network)
	return nil
}

// Reserve gives guest (its NIC's MAC) an address on network, or returns
// the one it has. Addresses are taken lowest first among those no
// reservation and no other MAC's lease hold.
func (m *Manager) Reserve(network, guest string, nic NIC) (netip.Addr, error) {
	m.ops.Lock()
	defer m.ops.Unlock()
	def, err := m.store.load(network)
	if err != nil {
		return netip.Addr{}, err
	}
	list, err := m.reservations(network)
	if err != nil {
		return netip.Addr{}, err
	}
	mac := nic.MAC.String()
	taken := map[netip.Addr]bool{}
	for _, r := range list {
		if r.MAC == mac {
			return r.IP, nil
		}
		taken[r.IP] = true
	}
	for _, l := range m.leases(network) {
		if ip, err := netip.ParseAddr(l.IPv4); err == nil && l.MAC != mac {
			taken[ip] = true
		}
	}
	first, last := def.dhcpRange()
	for ip := first; ip.Compare(last) <= 0; ip = ip.Next() {
		if !taken[ip] {
			list = append(list, reservation{MAC: mac, IP: ip, Name: guest})
			return ip, m.writeReservations(network, list)
		}
	}
	return netip.Addr{}, fmt.Errorf("%w: network %s (%s) has no free address left", api.ErrConflict, network, def.Subnet)
}

// Unreserve drops the reservation of mac on network.
func (m *Manager) Unreserve(network, mac string) error {
	m.ops.Lock()
	defer m.ops.Unlock()
	list, err := m.reservations(network)
	if err != nil {
		return err
	}
	kept := list[:0]
	for _, r := range list {
		if r.MAC != mac {
			kept = append(kept, r)
		}
	}
	if len(kept) == len(list) {
		return nil
	}
	return m.writeReservations(network, kept)
}

// SweepReservations drops, on every network, the reservations keep
// refuses: those an interrupted operation left for a guest that was never
// made, was deleted, or moved to another network. It returns what it
// dropped, as "NETWORK/GUEST".
func (m *Manager) SweepReservations(keep func(network, guest, mac string) bool) ([]string, error) {
	names, err := m.store.names()
	if err != nil {
		return nil, err
	}
	m.ops.Lock()
	defer m.ops.Unlock()
	var dropped []string
	var errs []error
	for _, network := range names {
		list, err := m.reservations(network)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		kept := make([]reservation, 0, len(list))
		for _, r := range list {
			if keep(network, r.Name, r.MAC) {
				kept = append(kept, r)
			} else {
				dropped = append(dropped, network+"/"+r.Name)
			}
		}
		if len(kept) < len(list) {
			errs = append(errs, m.writeReservations(network, kept))
		}
	}
	return dropped, errors.Join(errs...)
}
