// Package libvirt is polyvisor's driver for libvirt hosts: KVM/QEMU, Xen
// (libxl) and LXC, local or remote, spoken to over libvirt's RPC protocol
// with github.com/digitalocean/go-libvirt (pure Go, no libvirt library).
// It implements vendorhost.Host; docs/libvirt-hosts.md says which libvirt
// features map and which are refused.
package libvirt

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	golibvirt "github.com/digitalocean/go-libvirt"

	"github.com/polyvisor/polyvisor/internal/vendorhost"
)

// Host is one libvirt connection, of one driver (qemu, lxc or xen).
type Host struct {
	c *conns
	// hostType is the daemon's driver as it names itself (QEMU, LXC, Xen).
	hostType string
}

var _ vendorhost.Host = (*Host)(nil)

// Open connects to the libvirt daemon a URI names; it is a
// vendorhost.Opener. c.URL is a libvirt URI (qemu:///system,
// qemu+ssh://USER@HOST/system, lxc:///, xen:///system...); c.Password is
// the SSH password when the host has no key (libvirt's SASL is not
// supported); c.Fingerprint, for +tls, is the server certificate's
// SHA-256 to trust instead of a CA.
func Open(ctx context.Context, c vendorhost.Credentials) (vendorhost.Host, error) {
	t, err := parseTarget(c.URL)
	if err != nil {
		return nil, err
	}
	if c.Fingerprint != "" && t.transport != "tls" {
		return nil, fmt.Errorf("%w: libvirt host %s: a certificate fingerprint applies to +tls URIs only", vendorhost.ErrInvalid, c.URL.Redacted())
	}
	if c.Password != "" && t.transport != "ssh" {
		return nil, fmt.Errorf("%w: libvirt host %s: a password is used for +ssh only (libvirt's SASL is not supported): use ssh, TLS client certificates or the local socket", vendorhost.ErrNotSupported, c.URL.Redacted())
	}
	h := &Host{c: &conns{t: t, creds: c}}
	err = h.c.call(ctx, "open libvirt host", callTimeout, func(l *golibvirt.Libvirt) error {
		var err error
		h.hostType, err = l.ConnectGetType()
		return err
	})
	if err != nil {
		h.c.close()
		return nil, err
	}
	return h, nil
}

// Close ends the connection.
func (h *Host) Close() error { return h.c.close() }

// isLXC: containers have no snapshots, firmware or disks to export.
func (h *Host) isLXC() bool { return strings.EqualFold(h.hostType, "lxc") }

// List returns every domain, running or not, sorted by name.
func (h *Host) List(ctx context.Context) ([]vendorhost.Guest, error) {
	var doms []golibvirt.Domain
	err := h.c.call(ctx, "list domains", callTimeout, func(l *golibvirt.Libvirt) error {
		var err error
		doms, _, err = l.ConnectListAllDomains(1, golibvirt.ConnectListDomainsActive|golibvirt.ConnectListDomainsInactive)
		return err
	})
	if err != nil {
		return nil, err
	}
	guests := make([]vendorhost.Guest, 0, len(doms))
	for _, d := range doms {
		g, err := h.describe(ctx, d)
		if errors.Is(err, vendorhost.ErrNotFound) {
			continue // undefined since the list
		}
		if err != nil {
			return nil, err
		}
		guests = append(guests, g)
	}
	slices.SortFunc(guests, func(a, b vendorhost.Guest) int { return strings.Compare(a.Name, b.Name) })
	return guests, nil
}

// Get returns one domain.
func (h *Host) Get(ctx context.Context, name string) (vendorhost.Guest, error) {
	d, err := h.lookup(ctx, name)
	if err != nil {
		return vendorhost.Guest{}, err
	}
	return h.describe(ctx, d)
}

// lookup finds a domain by name; ErrNotFound names the host.
func (h *Host) lookup(ctx context.Context, name string) (golibvirt.Domain, error) {
	if name == "" {
		return golibvirt.Domain{}, fmt.Errorf("%w: guest name is empty", vendorhost.ErrInvalid)
	}
	var d golibvirt.Domain
	err := h.c.call(ctx, "guest "+name, callTimeout, func(l *golibvirt.Libvirt) error {
		var err error
		d, err = l.DomainLookupByName(name)
		return err
	})
	if errors.Is(err, vendorhost.ErrNotFound) {
		return d, fmt.Errorf("%w: libvirt host %s has no domain %q: see its list", vendorhost.ErrNotFound, h.c.t.display, name)
	}
	return d, err
}

// describe reads a domain's state, XML and (when running) addresses.
func (h *Host) describe(ctx context.Context, d golibvirt.Domain) (vendorhost.Guest, error) {
	var state int32
	var xml string
	err := h.c.call(ctx, "guest "+d.Name, callTimeout, func(l *golibvirt.Libvirt) error {
		var err error
		if state, _, err = l.DomainGetState(d, 0); err != nil {
			return err
		}
		xml, err = l.DomainGetXMLDesc(d, 0)
		return err
	})
	if err != nil {
		return vendorhost.Guest{}, err
	}
	g, err := guestOf(xml)
	if err != nil {
		return vendorhost.Guest{}, fmt.Errorf("guest %s: %w", d.Name, err)
	}
	g.State = stateName(golibvirt.DomainState(state))
	if g.State == vendorhost.StateRunning && !h.isLXC() {
		g.IPs = h.addresses(ctx, d)
	}
	return g, nil
}

// addresses are the domain's IPs from the DHCP leases of libvirt's
// networks; a domain on a bridge libvirt does not serve has none, and an
// error here is not the caller's (the guest is still described).
func (h *Host) addresses(ctx context.Context, d golibvirt.Domain) []string {
	var ifaces []golibvirt.DomainInterface
	err := h.c.call(ctx, "addresses of "+d.Name, callTimeout, func(l *golibvirt.Libvirt) error {
		var err error
		ifaces, err = l.DomainInterfaceAddresses(d, uint32(golibvirt.DomainInterfaceAddressesSrcLease), 0)
		return err
	})
	if err != nil {
		return nil
	}
	var ips []string
	for _, i := range ifaces {
		for _, a := range i.Addrs {
			ips = append(ips, a.Addr)
		}
	}
	return ips
}

// stateName maps libvirt's domain state to polyvisor's.
func stateName(s golibvirt.DomainState) string {
	switch s {
	case golibvirt.DomainRunning, golibvirt.DomainBlocked, golibvirt.DomainShutdown:
		return vendorhost.StateRunning
	case golibvirt.DomainShutoff, golibvirt.DomainCrashed:
		return vendorhost.StateStopped
	case golibvirt.DomainPaused, golibvirt.DomainPmsuspended:
		return vendorhost.StateSuspended
	}
	return vendorhost.StateUnknown
}

// state is a domain's current state.
// lookupState finds the domain of name and its state.
func (h *Host) lookupState(ctx context.Context, name string) (golibvirt.Domain, golibvirt.DomainState, error) {
	d, err := h.lookup(ctx, name)
	if err != nil {
		return d, 0, err
	}
	s, err := h.state(ctx, d)
	return d, s, err
}

func (h *Host) state(ctx context.Context, d golibvirt.Domain) (golibvirt.DomainState, error) {
	var s int32
	err := h.c.call(ctx, "state of "+d.Name, callTimeout, func(l *golibvirt.Libvirt) error {
		var err error
		s, _, err = l.DomainGetState(d, 0)
		return err
	})
	return golibvirt.DomainState(s), err
}

// requireStopped refuses an operation on a domain that runs.
func (h *Host) requireStopped(ctx context.Context, d golibvirt.Domain, op string) error {
	s, err := h.state(ctx, d)
	if err != nil {
		return err
	}
	if s != golibvirt.DomainShutoff && s != golibvirt.DomainCrashed {
		return fmt.Errorf("%w: %s %s: it is %s on %s: stop it first", vendorhost.ErrConflict, op, d.Name, stateName(s), h.c.t.display)
	}
	return nil
}
