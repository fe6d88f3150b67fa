package libvirt

import (
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"github.com/polyvisor/polyvisor/internal/vendorhost"
)

// Drivers are the libvirt hypervisor drivers a URI may name, as the
// scheme's part before '+': qemu (KVM and TCG), lxc and xen (libxl).
var drivers = []string{"qemu", "lxc", "xen"}

// Recognises reports whether u is a libvirt URI this package opens (the
// daemon's host registry picks the driver package by it): a scheme
// qemu, lxc or xen, alone or with +unix, +tcp, +tls, +ssh, +libssh or
// +libssh2.
func Recognises(u *url.URL) bool {
	if u == nil {
		return false
	}
	driver, _, _ := strings.Cut(strings.ToLower(u.Scheme), "+")
	for _, d := range drivers {
		if d == driver {
			return true
		}
	}
	return false
}

// target is where a URI leads: how to reach the daemon (transport, address
// or socket) and the URI to ask it for once connected.
type target struct {
	driver    string // qemu, lxc, xen
	transport string // unix, tcp, tls, ssh
	// socket is the unix socket: the local one (unix), or the remote
	// host's (ssh).
	socket string
	host   string // host name or address (tcp, tls, ssh)
	port   string
	user   string // ssh user
	// open is what the connection asks the daemon for: driver:///path,
	// or the URI's name= parameter.
	open string
	// display names the host in errors: the socket or host:port.
	display string
	query   url.Values
}

// libvirtd's default ports.
const (
	tcpPort = "16509"
	tlsPort = "16514"
	sshPort = "22"
)

// parseTarget reads a libvirt URI. Every refusal is ErrInvalid or
// ErrNotSupported with the fix.
func parseTarget(u *url.URL) (target, error) {
	if u == nil {
		return target{}, fmt.Errorf("%w: libvirt host: no URI: give one such as qemu:///system", vendorhost.ErrInvalid)
	}
	scheme := strings.ToLower(u.Scheme)
	driver, transport, _ := strings.Cut(scheme, "+")
	t := target{driver: driver, transport: transport, host: u.Hostname(), port: u.Port(), query: u.Query()}
	if !Recognises(u) {
		return t, fmt.Errorf("%w: libvirt URI %q: scheme %q: use qemu, lxc or xen (optionally +unix, +tcp, +tls or +ssh)", vendorhost.ErrInvalid, u.Redacted(), u.Scheme)
	}
	if u.User != nil {
		t.user = u.User.Username()
		if _, ok := u.User.Password(); ok {
			return t, fmt.Errorf("%w: libvirt URI %s holds a password: remove it; polyvisor keeps secrets in its host credentials", vendorhost.ErrInvalid, u.Redacted())
		}
	}
	if t.transport == "" {
		// libvirt's rule: a URI with a host name and no transport is TLS.
		t.transport = "unix"
		if t.host != "" {
			t.transport = "tls"
		}
	}
	path := u.Path
	switch path {
	case "", "/":
		path = "/"
		if driver == "qemu" {
			return t, fmt.Errorf("%w: libvirt URI %s names no qemu instance: end it with /system or /session", vendorhost.ErrInvalid, u.Redacted())
		}
	case "/system", "/session", "/embed":
	default:
		return t, fmt.Errorf("%w: libvirt URI %s: path %q: use /system or /session", vendorhost.ErrInvalid, u.Redacted(), path)
	}
	if path == "/embed" {
		return t, fmt.Errorf("%w: libvirt URI %s: embedded drivers run inside the client's process; polyvisor talks to a libvirt daemon: use /system", vendorhost.ErrNotSupported, u.Redacted())
	}
	t.open = driver + "://" + path
	if name := t.query.Get("name"); name != "" {
		t.open = name
	}
	switch t.transport {
	case "unix":
		if t.host != "" {
			return t, fmt.Errorf("%w: libvirt URI %s: the unix transport is local and takes no host: drop the host or use +ssh, +tcp or +tls", vendorhost.ErrInvalid, u.Redacted())
		}
		t.socket = t.query.Get("socket")
		if t.socket == "" {
			t.socket = defaultLocalSocket(driver, path == "/session")
		}
		if !filepath.IsAbs(t.socket) {
			return t, fmt.Errorf("%w: libvirt URI %s: socket %q is not an absolute path", vendorhost.ErrInvalid, u.Redacted(), t.socket)
		}
		t.display = t.socket
	case "tcp", "tls", "ssh", "libssh", "libssh2":
		if t.host == "" {
			return t, fmt.Errorf("%w: libvirt URI %s: the %s transport needs a host: %s+%s://HOST/system", vendorhost.ErrInvalid, u.Redacted(), t.transport, driver, t.transport)
		}
		if strings.HasPrefix(t.transport, "libssh") {
			t.transport = "ssh" // the same SSH protocol, through Go's client
		}
		if t.port == "" {
			t.port = map[string]string{"tcp": tcpPort, "tls": tlsPort, "ssh": sshPort}[t.transport]
		}
		t.display = net.JoinHostPort(t.host, t.port)
		if t.transport == "ssh" {
			// The remote daemon's socket, reached through the SSH server.
			t.socket = t.query.Get("socket")
			if t.socket == "" {
				t.socket = "/run/libvirt/libvirt-sock"
			}
			if t.user != "" {
				t.display = t.user + "@" + t.display
			}
		}
	case "ext":
		return t, fmt.Errorf("%w: libvirt URI %s: the ext transport runs an arbitrary command; use +ssh, +tcp or +tls", vendorhost.ErrNotSupported, u.Redacted())
	default:
		return t, fmt.Errorf("%w: libvirt URI %s: transport %q: use unix, tcp, tls or ssh", vendorhost.ErrInvalid, u.Redacted(), t.transport)
	}
	return t, nil
}

// defaultLocalSocket is the socket libvirt's client uses for a local URI
// without socket=: the monolithic libvirtd's, or the driver's modular
// daemon's (virtqemud, virtlxcd, virtxend) when only that one listens.
func defaultLocalSocket(driver string, session bool) string {
	dir := "/run/libvirt"
	if session {
		if rt := os.Getenv("XDG_RUNTIME_DIR"); rt != "" {
			dir = filepath.Join(rt, "libvirt")
		} else if home, err := os.UserHomeDir(); err == nil {
			dir = filepath.Join(home, ".cache", "libvirt")
		}
	}
	monolithic := filepath.Join(dir, "libvirt-sock")
	if _, err := os.Stat(monolithic); err == nil {
		return monolithic
	}
	modular := filepath.Join(dir, "virt"+driver+"d-sock")
	if _, err := os.Stat(modular); err == nil {
		return modular
	}
	return monolithic
}
