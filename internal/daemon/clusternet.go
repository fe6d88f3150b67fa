package daemon

import (
	"context"
	"hash/fnv"
	"net/netip"
	"time"

	"github.com/polyvisor/polyvisor/internal/cluster"
	"github.com/polyvisor/polyvisor/internal/network"
	"github.com/polyvisor/polyvisor/internal/overlay"
)

// The cluster's network: the default network spans the members through a
// VXLAN overlay (internal/overlay), on one subnet the first member chose;
// each member's dnsmasq leases from a slice of its own and answers every
// member's guests by name (internal/network's cluster slot).

// maxSlots is how many members the default network spans: the low
// addresses of its subnet are their bridges'.
const maxSlots = 8

// syncNetwork keeps the default network's cluster slot current: peers,
// and the names of every member's guests.
func (d *Daemon) syncNetwork(ctx context.Context, c *clusterState) {
	if d.cfg.DefaultNetwork != network.DefaultName {
		return // guests join no network by default here
	}
	for {
		if err := d.syncNetworkOnce(ctx, c); err != nil && ctx.Err() == nil {
			d.log.Debug("the cluster's network is not in sync yet", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(2 * time.Second):
		}
	}
}

func (d *Daemon) syncNetworkOnce(ctx context.Context, c *clusterState) error {
	self, ok := c.member(c.local.Member)
	if !ok || self.Slot < 1 || self.Slot > maxSlots {
		return nil
	}
	if err := d.networks.EnsureDefault(ctx); err != nil {
		return err
	}
	own, err := d.networks.Get(network.DefaultName)
	if err != nil {
		return err
	}
	net, err := c.reg.PutNetwork(ctx, cluster.Network{Subnet: own.Subnet, VNI: vniOf(c.local.Cluster)})
	if err != nil {
		return err
	}
	subnet, err := netip.ParsePrefix(net.Subnet)
	if err != nil {
		return err
	}
	local, err := netip.ParseAddr(c.local.Address)
	if err != nil {
		return err
	}
	var peers []netip.Addr
	for _, m := range c.memberList() {
		if a, err := netip.ParseAddr(m.Address); err == nil && m.Name != c.local.Member {
			peers = append(peers, a)
		}
	}
	hosts, err := d.publishAddresses(ctx, c)
	if err != nil {
		return err
	}
	return d.networks.SetCluster(ctx, network.DefaultName, network.ClusterSlot{
		Subnet: subnet, Slot: self.Slot, MaxSlots: maxSlots, Hosts: hosts,
		Overlay: overlay.Config{VNI: net.VNI, Local: local, Peers: peers},
	})
}

// publishAddresses records this member's guests' addresses on the
// default network in their placements, and answers every guest's.
func (d *Daemon) publishAddresses(ctx context.Context, c *clusterState) (map[string]netip.Addr, error) {
	placements, err := c.reg.Guests(ctx)
	if err != nil {
		return nil, err
	}
	hosts := map[string]netip.Addr{}
	for _, p := range placements {
		if p.Member == c.local.Member {
			addr := ""
			if e, err := d.guests.get(p.Name); err == nil {
				def := e.def.Load()
				if running(def) {
					addr, _ = d.networks.Lease(network.DefaultName, network.GuestNIC(def, network.DefaultName).MAC.String())
				}
			}
			if addr != p.Address {
				p.Address = addr
				c.reg.UpdateGuest(ctx, p, c.local.Member)
			}
		}
		if a, err := netip.ParseAddr(p.Address); err == nil {
			hosts[p.Name] = a
		}
	}
	return hosts, nil
}

// vniOf is the cluster's VXLAN id, from its name.
func vniOf(clusterName string) uint32 {
	h := fnv.New32a()
	h.Write([]byte(clusterName))
	return h.Sum32()%(1<<24-2) + 1
}
