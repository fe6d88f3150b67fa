// Package layout names every path polyvisor uses on a host, so that several
// isolated daemons (tests, users) can run side by side without colliding.
package layout

import (
	"crypto/sha256"
	"encoding/hex"
	"path/filepath"
)

// Defaults for the production daemon.
const (
	DefaultStateDir = "/var/lib/polyvisor"
	DefaultSocket   = "/run/polyvisor/polyvisor.sock"
)

// Layout derives all paths of one daemon from its state directory.
type Layout struct {
	StateDir string
	// Namespace is "polyvisor" for the default state directory and
	// "polyvisor-<hash>" for any other, naming run dirs and cgroups.
	Namespace string
}

// New returns the layout of the daemon whose state lives in stateDir.
func New(stateDir string) Layout {
	abs, err := filepath.Abs(stateDir)
	if err == nil {
		stateDir = abs
	}
	ns := "polyvisor"
	if stateDir != DefaultStateDir {
		sum := sha256.Sum256([]byte(stateDir))
		ns += "-" + hex.EncodeToString(sum[:4])
	}
	return Layout{StateDir: stateDir, Namespace: ns}
}

// GuestsDir holds one directory per guest.
func (l Layout) GuestsDir() string { return filepath.Join(l.StateDir, "guests") }

// GuestDir is the named guest's directory.
func (l Layout) GuestDir(name string) string { return filepath.Join(l.GuestsDir(), name) }

// TLSDir holds the daemon's HTTPS key pair (server.crt, server.key).
func (l Layout) TLSDir() string { return filepath.Join(l.StateDir, "tls") }

// TrustFile keeps the trusted client certificates and pending tokens.
func (l Layout) TrustFile() string { return filepath.Join(l.StateDir, "trust.json") }

// HostsFile keeps the vendor hosts a user added, with their credentials
// (root's alone, 0600).
func (l Layout) HostsFile() string { return filepath.Join(l.StateDir, "hosts.json") }

// ClusterDir holds this host's cluster membership: member.json, the
// cluster's authority, the member's key pair and its etcd data.
func (l Layout) ClusterDir() string { return filepath.Join(l.StateDir, "cluster") }

// ReplicasDir holds the copies of other members' HA guests kept here.
func (l Layout) ReplicasDir() string { return filepath.Join(l.StateDir, "replicas") }

// BenchDir holds bench's reports, one directory each, named by UTC time.
func (l Layout) BenchDir() string { return filepath.Join(l.StateDir, "bench") }

// UploadsDir holds files uploaded for import while they are imported.
func (l Layout) UploadsDir() string { return filepath.Join(l.StateDir, "uploads") }

// TemplatesDir holds one directory per template.
func (l Layout) TemplatesDir() string { return filepath.Join(l.StateDir, "templates") }

// RunDir holds sockets and pid files; it lives in /run because it means
// nothing after a reboot, and short because unix socket paths are limited
// to 107 bytes.
func (l Layout) RunDir() string { return filepath.Join("/run", l.Namespace) }

// GuestRunDir holds the named guest's monitor sockets and exit record.
func (l Layout) GuestRunDir(name string) string { return filepath.Join(l.RunDir(), name) }

// RuncRoot is the OCI runtime's state directory for this daemon's containers.
func (l Layout) RuncRoot() string { return filepath.Join(l.RunDir(), ".runc") }

// SupervisorDir holds the socket, lock and log of the supervisor that
// runs the containers.
func (l Layout) SupervisorDir() string { return filepath.Join(l.RunDir(), ".supervisor") }

// CgroupParent is the cgroup under which this daemon's guests live.
func (l Layout) CgroupParent() string { return "/" + l.Namespace }

// GuestCgroup is the named guest's cgroup path, under CgroupParent.
func (l Layout) GuestCgroup(name string) string { return l.CgroupParent() + "/" + name }

// NetworksDir holds one directory per managed network: its definition,
// dnsmasq's configuration and its leases.
func (l Layout) NetworksDir() string { return filepath.Join(l.StateDir, "networks") }

// NetworkDir is the named network's directory.
func (l Layout) NetworkDir(name string) string { return filepath.Join(l.NetworksDir(), name) }

// NetworkRunDir holds the named network's dnsmasq pid file.
func (l Layout) NetworkRunDir(name string) string {
	return filepath.Join(l.RunDir(), ".networks", name)
}
