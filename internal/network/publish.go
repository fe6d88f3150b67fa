package network

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/polyvisor/polyvisor/pkg/api"
)

// Forward is a published port: connections to the host's HostPort (on
// HostIP, or on every address of the host when HostIP is unset, loopback
// included) go to the guest's GuestPort.
type Forward struct {
	HostIP    netip.Addr
	HostPort  uint16
	GuestPort uint16
	Proto     string // tcp or udp
}

// String writes the forward as --publish takes it.
func (f Forward) String() string {
	s := fmt.Sprintf("%d:%d/%s", f.HostPort, f.GuestPort, f.Proto)
	if f.HostIP.IsValid() {
		s = f.HostIP.String() + ":" + s
	}
	return s
}

// ParsePublish reads [HOSTIP:]HOSTPORT:GUESTPORT[/tcp|udp].
func ParsePublish(text string) (Forward, error) {
	bad := func(why string) (Forward, error) {
		return Forward{}, fmt.Errorf("%w: publish %q: %s; write [HOSTIP:]HOSTPORT:GUESTPORT[/tcp|udp], like 8080:80 or 127.0.0.1:5353:53/udp", api.ErrInvalid, text, why)
	}
	f := Forward{Proto: "tcp"}
	spec, proto, hasProto := strings.Cut(text, "/")
	if hasProto {
		if proto != "tcp" && proto != "udp" {
			return bad("the protocol is tcp or udp")
		}
		f.Proto = proto
	}
	parts := strings.Split(spec, ":")
	switch len(parts) {
	case 2:
	case 3:
		ip, err := netip.ParseAddr(parts[0])
		if err != nil || !ip.Is4() {
			return bad("the host address is an IPv4 address")
		}
		f.HostIP = ip
		parts = parts[1:]
	default:
		return bad("two ports are needed")
	}
	for i, p := range []*uint16{&f.HostPort, &f.GuestPort} {
		n, err := strconv.ParseUint(parts[i], 10, 16)
		if err != nil || n == 0 {
			return bad("ports are numbers from 1 to 65535")
		}
		*p = uint16(n)
	}
	return f, nil
}

// overlaps reports whether two forwards claim the same host port.
func (f Forward) overlaps(g Forward) bool {
	return f.Proto == g.Proto && f.HostPort == g.HostPort &&
		(!f.HostIP.IsValid() || !g.HostIP.IsValid() || f.HostIP == g.HostIP)
}

// boundForward is a forward to a guest's address on a network.
type boundForward struct {
	Forward
	Guest   string
	Bridge  string
	GuestIP netip.Addr
}

// checkPortFree fails when a process of the host holds the port: the
// forward would take its connections.
func checkPortFree(f Forward) error {
	addr := net.JoinHostPort("", strconv.Itoa(int(f.HostPort)))
	if f.HostIP.IsValid() {
		addr = net.JoinHostPort(f.HostIP.String(), strconv.Itoa(int(f.HostPort)))
	}
	var err error
	if f.Proto == "udp" {
		var c net.PacketConn
		if c, err = net.ListenPacket("udp4", addr); err == nil {
			c.Close()
		}
	} else {
		var l net.Listener
		if l, err = net.Listen("tcp4", addr); err == nil {
			l.Close()
		}
	}
	if err != nil {
		return fmt.Errorf("%w: publish %s: the host's port %d/%s is in use (%v): choose another host port", api.ErrConflict, f, f.HostPort, f.Proto, errors.Unwrap(err))
	}
	return nil
}

// SetForwards publishes forwards of guest, which has nic on its network:
// they forward to its reserved address from then on, and replace what
// the guest published before. check makes a port another guest publishes,
// or a process of the host holds, an error; a daemon restoring what it
// had published skips it.
func (m *Manager) SetForwards(guest string, nic NIC, forwards []Forward, check bool) error {
	ip, err := m.Reserve(nic.Network, guest, nic)
	if err != nil {
		return err
	}
	m.mu.Lock()
	if check {
		for other, fwds := range m.forwards {
			if other == guest {
				continue
			}
			for _, f := range forwards {
				for _, o := range fwds {
					if f.overlaps(o.Forward) {
						m.mu.Unlock()
						return fmt.Errorf("%w: publish %s: guest %s publishes %s already", api.ErrConflict, f, other, o.Forward)
					}
				}
			}
		}
	}
	m.mu.Unlock()
	for i, f := range forwards {
		if slices.ContainsFunc(forwards[:i], f.overlaps) {
			return fmt.Errorf("%w: publish %s: the same host port is published twice", api.ErrInvalid, f)
		}
		if check {
			if err := checkPortFree(f); err != nil {
				return err
			}
		}
	}
	bound := make([]boundForward, 0, len(forwards))
	for _, f := range forwards {
		bound = append(bound, boundForward{Forward: f, Guest: guest, Bridge: nic.Bridge, GuestIP: ip})
	}
	m.mu.Lock()
	if len(bound) == 0 {
		delete(m.forwards, guest)
	} else {
		m.forwards[guest] = bound
	}
	m.mu.Unlock()
	return m.syncNAT()
}

// ClearForwards unpublishes every port of guest.
func (m *Manager) ClearForwards(guest string) error {
	m.mu.Lock()
	_, had := m.forwards[guest]
	delete(m.forwards, guest)
	m.mu.Unlock()
	if !had {
		return nil
	}
	return m.syncNAT()
}
