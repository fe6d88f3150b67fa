// Package vsphere is polyvisor's driver for VMware vSphere: a vCenter
// Server or a standalone ESXi host, reached through its SOAP API with
// govmomi. It lists, powers, snapshots, resizes, deletes, exports (to an
// OVA polyvisor's importer reads) and imports (an OVA) the host's VMs.
// Long operations are vSphere tasks, polled by short calls that each
// have a deadline, so a host that goes away ends an operation with an
// error instead of a hang.
package vsphere

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"time"

	"github.com/vmware/govmomi/find"
	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/session"
	"github.com/vmware/govmomi/vim25"
	"github.com/vmware/govmomi/vim25/soap"

	"github.com/polyvisor/polyvisor/internal/vendorhost"
)

// Scheme is the URL scheme of a vSphere host:
// vsphere://USER@HOST[:PORT][/DATACENTER].
const Scheme = "vsphere"

// dialTimeout bounds a TCP connect and a TLS handshake to the host.
const dialTimeout = 15 * time.Second

// host is one connected vSphere endpoint, and the datacenter its guests
// are looked up in.
type host struct {
	name string // HOST[:PORT], for error lines
	user string
	vc   *vim25.Client
	dc   *object.Datacenter
	find *find.Finder
}

var _ vendorhost.Opener = Open
var _ vendorhost.Importer = (*host)(nil)

// Open connects and logs in to the vSphere host c.URL names, and picks
// its datacenter: the URL's path, else the only one. A pinned
// c.Fingerprint accepts that certificate and no other; without one the
// system's CAs decide, and an unknown certificate is refused with a line
// that prints its fingerprint.
func Open(ctx context.Context, c vendorhost.Credentials) (vendorhost.Host, error) {
	return open(ctx, c, callTimeout)
}

func open(ctx context.Context, c vendorhost.Credentials, timeout time.Duration) (_ vendorhost.Host, err error) {
	u := c.URL
	if u == nil || u.Scheme != Scheme || u.Host == "" || u.User == nil || u.User.Username() == "" {
		return nil, fmt.Errorf("%w: vsphere URL %v: use vsphere://USER@HOST[:PORT][/DATACENTER]", vendorhost.ErrInvalid, u)
	}
	if _, hasPass := u.User.Password(); hasPass {
		return nil, fmt.Errorf("%w: vsphere URL: the password belongs in the credentials, not the URL", vendorhost.ErrInvalid)
	}
	h := &host{name: u.Host, user: u.User.Username()}
	addr := u.Host
	if u.Port() == "" {
		addr = net.JoinHostPort(u.Hostname(), "443")
	}
	d := &tlsDialer{addr: addr, net: &net.Dialer{Timeout: dialTimeout, KeepAlive: 30 * time.Second}}
	if c.Fingerprint != "" {
		if d.pin, err = parseFingerprint(c.Fingerprint); err != nil {
			return nil, fmt.Errorf("%w: vsphere %s: %v", vendorhost.ErrInvalid, h.name, err)
		}
	}

	sc := soap.NewClient(&url.URL{Scheme: "https", Host: u.Host, Path: vim25.Path}, false)
	d.thumbs = sc
	t := sc.DefaultTransport()
	t.DialContext = d.net.DialContext
	t.DialTLSContext = d.dial
	t.TLSHandshakeTimeout = dialTimeout
	t.Proxy = nil // a vSphere host is reached directly

	cctx, cancel := context.WithTimeoutCause(ctx, timeout, errCallTimeout)
	vc, err := vim25.NewClient(cctx, sc)
	cancel()
	if err != nil {
		return nil, h.wrap(ctx, "connect", err)
	}
	rt := &sessionRT{soap: sc, timeout: timeout, sm: *vc.ServiceContent.SessionManager}
	vc.RoundTripper = rt
	h.vc = vc
	userinfo := url.UserPassword(h.user, c.Password)
	if err := session.NewManager(vc).Login(ctx, userinfo); err != nil {
		return nil, h.wrap(ctx, "", err)
	}
	rt.user = userinfo
	defer func() {
		if err != nil {
			h.Close()
		}
	}()

	h.find = find.NewFinder(vc, false)
	dc := strings.Trim(u.Path, "/")
	if dc == "" {
		h.dc, err = h.find.DefaultDatacenter(ctx)
	} else {
		h.dc, err = h.find.Datacenter(ctx, dc)
	}
	if err != nil {
		var notFound *find.NotFoundError
		var several *find.DefaultMultipleFoundError
		var none *find.DefaultNotFoundError
		switch {
		case errors.As(err, &notFound):
			return nil, fmt.Errorf("vsphere %s: datacenter %q: %w: give one the host has in the URL's path", h.name, dc, vendorhost.ErrNotFound)
		case errors.As(err, &none):
			return nil, fmt.Errorf("vsphere %s: %w: it has no datacenter: create one in the vSphere client", h.name, vendorhost.ErrNotFound)
		case errors.As(err, &several):
			return nil, fmt.Errorf("vsphere %s: %w: it has several datacenters: name one in the URL, vsphere://%s@%s/DATACENTER", h.name, vendorhost.ErrInvalid, h.user, h.name)
		}
		return nil, h.wrap(ctx, "datacenter", err)
	}
	h.find.SetDatacenter(h.dc)
	return h, nil
}

// Close logs out and drops the connection.
func (h *host) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), dialTimeout)
	defer cancel()
	err := session.NewManager(h.vc).Logout(ctx)
	h.vc.CloseIdleConnections()
	if err != nil && !unreachable(err) {
		return h.wrap(ctx, "log out", err)
	}
	return nil
}
