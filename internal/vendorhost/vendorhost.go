// Package vendorhost is polyvisor's side of the hypervisors other products
// manage: a VMware vSphere/ESXi host and any libvirt host (KVM, Xen, LXC).
// Each kind is a driver package (vendorhost/vsphere, vendorhost/libvirt)
// behind Host; the daemon keeps the hosts a user added (Store) and shows
// their guests beside its own, addressed as HOST:NAME.
package vendorhost

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"time"

	"github.com/polyvisor/polyvisor/pkg/api"
)

// Power states a Guest reports, in polyvisor's words.
const (
	StateRunning   = "running"
	StateStopped   = "stopped"
	StateSuspended = "suspended" // paused or suspended to disk
	StateUnknown   = "unknown"
)

// Guest is one guest of a vendor host, as polyvisor shows it.
type Guest struct {
	Name      string `json:"name"`
	State     string `json:"state"`
	CPUs      int    `json:"cpus"`
	MemoryMiB int64  `json:"memoryMiB"`
	// Firmware is bios or uefi.
	Firmware string `json:"firmware,omitempty"`
	// OS is the host's guest OS hint (vSphere's guestId, libvirt's
	// os type/metadata), "" when none.
	OS    string `json:"os,omitempty"`
	Disks []Disk `json:"disks,omitempty"`
	NICs  []NIC  `json:"nics,omitempty"`
	// IPs are the guest's addresses as the host knows them (VMware Tools,
	// libvirt's lease or agent source); none when it does not.
	IPs []string `json:"ips,omitempty"`
	// Detail is what the host's own kind calls the guest (vSphere: the
	// managed object reference; libvirt: the domain type kvm/qemu/xen/lxc).
	Detail string `json:"detail,omitempty"`
}

// Disk is one disk of a Guest.
type Disk struct {
	// Path is where the host keeps it: "[datastore] dir/disk.vmdk", a
	// file or volume path, a device.
	Path     string `json:"path"`
	Capacity int64  `json:"capacity,omitempty"` // bytes
	Format   string `json:"format,omitempty"`
}

// NIC is one network interface of a Guest.
type NIC struct {
	MAC     string `json:"mac"`
	Network string `json:"network,omitempty"`
	Model   string `json:"model,omitempty"`
}

// Snapshot is one snapshot of a Guest.
type Snapshot struct {
	Name      string    `json:"name"`
	CreatedAt time.Time `json:"createdAt,omitzero"`
	Parent    string    `json:"parent,omitempty"`
	Current   bool      `json:"current,omitempty"`
}

// Exported is what Export wrote: a file polyvisor's importer reads (an
// OVA, or a definition with its disks beside it), and the guest it holds.
type Exported struct {
	Path  string
	Guest Guest
}

// Progress reports how far a long step (an export's download) got: done
// of total bytes, total 0 when not known.
type Progress func(phase string, done, total int64)

// Host is one connected vendor host. Its methods take a guest's name on
// that host. Every error names the host's object and says what to do.
type Host interface {
	// List returns every guest of the host.
	List(ctx context.Context) ([]Guest, error)
	// Get returns one guest, ErrNotFound when the host has none of that name.
	Get(ctx context.Context, name string) (Guest, error)
	// Start powers a guest on.
	Start(ctx context.Context, name string) error
	// Stop asks the guest's OS to shut down, waits until timeout for it to
	// power off, then powers it off; force powers off at once.
	Stop(ctx context.Context, name string, timeout time.Duration, force bool) error
	// Restart is Stop then Start (a guest reboot where the host has one).
	Restart(ctx context.Context, name string) error
	Snapshots(ctx context.Context, name string) ([]Snapshot, error)
	CreateSnapshot(ctx context.Context, name, snapshot string) error
	RevertSnapshot(ctx context.Context, name, snapshot string) error
	DeleteSnapshot(ctx context.Context, name, snapshot string) error
	// SetResources changes a guest's CPUs and memory; 0 leaves one as is.
	// A host that cannot while the guest runs refuses, saying to stop it.
	SetResources(ctx context.Context, name string, cpus int, memoryMiB int64) error
	// Delete removes a stopped guest and the disks the host made for it.
	Delete(ctx context.Context, name string) error
	// Export writes a stopped guest into dir (an empty directory of the
	// caller's) as a file polyvisor's importer reads, keeping its CPUs,
	// memory, firmware, disks, and NICs with their MACs.
	Export(ctx context.Context, name, dir string, progress Progress) (Exported, error)
	// Console attaches to the guest's serial console; ErrNotSupported
	// where the host has none polyvisor can reach.
	Console(ctx context.Context, name string) (io.ReadWriteCloser, error)
	// Close ends the connection.
	Close() error
}

// Importer is a Host that can take an appliance: vSphere imports an OVA.
type Importer interface {
	// ImportOVA deploys the OVA at path as a new guest named name.
	ImportOVA(ctx context.Context, path, name string, progress Progress) error
}

// Errors a Host wraps. Those the API has are the API's, so that the
// daemon answers them with their status as they come.
var (
	ErrNotFound     = api.ErrNotFound
	ErrNotSupported = api.ErrNotAvailable
	ErrInvalid      = api.ErrInvalid
	ErrConflict     = api.ErrConflict // wrong power state, exists...
	ErrUnreachable  = errors.New("unreachable")
	ErrAuth         = fmt.Errorf("%w: authentication failed", api.ErrInvalid)
)

// Credentials is what opens a host: its URL (no password in it) and the
// secrets kept for it.
type Credentials struct {
	// URL is the host's address as the user gave it, password removed:
	// vsphere://USER@HOST[:PORT][/DATACENTER], or a libvirt URI.
	URL *url.URL
	// Password is the vSphere user's password, or a libvirt SASL one.
	Password string
	// Fingerprint is the SHA-256 of the host's TLS certificate the user
	// accepted (hex, colons optional); "" trusts the system's CAs.
	Fingerprint string
}

// Opener connects to a host of one kind.
type Opener func(ctx context.Context, c Credentials) (Host, error)
