// Package api holds the REST types shared by the daemon, the Go client and
// the CLI. The JSON field names here are the stable, documented contract
// that scripts rely on (docs/api.md).
package api

import (
	"time"

	"github.com/polyvisor/polyvisor/internal/hostreq"
)

// Version is the API path prefix.
const Version = "/1.0"

// Guest states.
const (
	StateRunning = "running"
	StateStopped = "stopped"
	// StateBroken marks a guest whose guest.yaml does not load; Error says
	// why. The daemon leaves its directory alone until the file is fixed.
	StateBroken = "broken"
)

// Guest is what `info --format json` prints and `list --format json` prints an array of.
type Guest struct {
	Name string `json:"name" yaml:"name"`
	// Host is the vendor host of a HOST:NAME guest; absent for this
	// daemon's own.
	Host string `json:"host,omitempty" yaml:"host,omitempty"`
	// Member is the cluster member the guest runs on; absent outside a
	// cluster.
	Member string `json:"member,omitempty" yaml:"member,omitempty"`
	Type   string `json:"type" yaml:"type"`
	// Class is the kind of virtualization: container (a shared kernel), hypervisor (a VM under
	// KVM) or emulation (a VM under TCG); Driver runs it.
	Class      string   `json:"class" yaml:"class"`
	Driver     string   `json:"driver" yaml:"driver"`
	Accel      string   `json:"accel,omitempty" yaml:"accel,omitempty"`
	State      string   `json:"state" yaml:"state"`
	Template   string   `json:"template" yaml:"template"`
	Arch       string   `json:"arch" yaml:"arch"`
	CPUs       int      `json:"cpus" yaml:"cpus"`
	Memory     int64    `json:"memory" yaml:"memory"`
	Processes  int      `json:"processes" yaml:"processes"`
	Privileged bool     `json:"privileged" yaml:"privileged"`
	Rootfs     string   `json:"rootfs" yaml:"rootfs"`
	PID        int      `json:"pid" yaml:"pid"`
	MonitorPID int      `json:"monitorPid,omitempty" yaml:"monitorPid,omitempty"`
	IPv4       []string `json:"ipv4" yaml:"ipv4"`
	Networks   []string `json:"networks" yaml:"networks"`
	Publish    []string `json:"publish,omitempty" yaml:"publish,omitempty"`
	Disks      []Disk   `json:"disks,omitempty" yaml:"disks,omitempty"`
	IDMap      *IDMap   `json:"idmap,omitempty" yaml:"idmap,omitempty"`
	// Confinement is what a container runs under; absent for VMs.
	Confinement *Confinement `json:"confinement,omitempty" yaml:"confinement,omitempty"`
	CreatedAt   time.Time    `json:"createdAt" yaml:"createdAt"`
	StartedAt   time.Time    `json:"startedAt,omitzero" yaml:"startedAt,omitempty"`
	LastExit    *Exit        `json:"lastExit,omitempty" yaml:"lastExit,omitempty"`
	Pending     []string     `json:"pending,omitempty" yaml:"pending,omitempty"`
	Error       string       `json:"error,omitempty" yaml:"error,omitempty"`
	// Usage is what a running guest uses, in GET /1.0/guests/NAME (info)
	// alone: a listing does not read it for every guest.
	Usage *GuestUsage `json:"usage,omitempty" yaml:"usage,omitempty"`
	// Firmware and NICs are a vendor host's guest's (bios or uefi; its
	// NICs with their MACs, in order).
	Firmware string `json:"firmware,omitempty" yaml:"firmware,omitempty"`
	NICs     []NIC  `json:"nics,omitempty" yaml:"nics,omitempty"`
}

// UsageSample is a guest's usage at a time: GET
// /1.0/guests/NAME/usage/history answers the last 15 minutes of them.
type UsageSample struct {
	Time  time.Time  `json:"time"`
	Usage GuestUsage `json:"usage"`
}

// GuestUsage is what a running guest has used since it started (counters)
// and holds now (memory). Disk bytes are a container's own disk (its disk
// quota's device; reads of its template are the host's) or what a VM read
// and wrote through its disks; network bytes are counted on the host's end of its NICs.
type GuestUsage struct {
	CPUSeconds           float64 `json:"cpuSeconds" yaml:"cpuSeconds"`
	MemoryBytes          int64   `json:"memoryBytes" yaml:"memoryBytes"`
	DiskReadBytes        int64   `json:"diskReadBytes" yaml:"diskReadBytes"`
	DiskWriteBytes       int64   `json:"diskWriteBytes" yaml:"diskWriteBytes"`
	NetworkReceiveBytes  int64   `json:"networkReceiveBytes" yaml:"networkReceiveBytes"`
	NetworkTransmitBytes int64   `json:"networkTransmitBytes" yaml:"networkTransmitBytes"`
}

// GuestSummary is a guest as `list` shows it: what `GET /1.0/guests?view=summary`
// answers an array of. It leaves out what a table has no column for (the
// confinement, the id map, the disks' paths), which is most of a guest's
// JSON: at 1,000 guests, sending and decoding that is most of a listing's
// time.
type GuestSummary struct {
	// Host is the vendor host of a HOST:NAME guest; absent for the daemon's own.
	Host   string   `json:"host,omitempty"`
	Member string   `json:"member,omitempty"`
	Name   string   `json:"name"`
	Type   string   `json:"type"`
	Class  string   `json:"class"`
	State  string   `json:"state"`
	Arch   string   `json:"arch"`
	CPUs   int      `json:"cpus"`
	Memory int64    `json:"memory"`
	IPv4   []string `json:"ipv4"`
	// RootDisk is the root disk's kind, size and use, as in Disks; absent
	// for a guest without one (a tree of the host's file system).
	RootDisk *DiskSummary `json:"rootDisk,omitempty"`
	Error    string       `json:"error,omitempty"`
	// CPUPercent (of one CPU) and MemoryUsed are a running guest's, from
	// its last usage samples (taken every 10 s); absent until there are
	// two samples (one, for memory).
	CPUPercent *float64 `json:"cpuPercent,omitempty"`
	MemoryUsed int64    `json:"memoryUsed,omitempty"`
}

// DiskSummary is a disk as `list` shows it.
type DiskSummary struct {
	Kind string `json:"kind"`
	Size int64  `json:"size"`
	Used int64  `json:"used,omitempty"`
}

// Summary is g as `list` shows it.
func (g *Guest) Summary() GuestSummary {
	s := GuestSummary{
		Host: g.Host, Member: g.Member, Name: g.Name, Type: g.Type, Class: g.Class, State: g.State, Arch: g.Arch,
		CPUs: g.CPUs, Memory: g.Memory, IPv4: g.IPv4, Error: g.Error,
	}
	for _, d := range g.Disks {
		if d.Name == RootDisk && d.Size > 0 {
			s.RootDisk = &DiskSummary{Kind: d.Kind, Size: d.Size, Used: d.Used}
		}
	}
	return s
}

// Guest list views: what `GET /1.0/guests?view=` names.
const (
	ViewFull    = "full"
	ViewSummary = "summary"
)

// Confinement says what a container guest runs under.
type Confinement struct {
	// Capabilities are the guest root's (namespaced unless privileged).
	Capabilities []string `json:"capabilities" yaml:"capabilities"`
	// Seccomp names the system call filter: moby-default, or unconfined.
	Seccomp         string   `json:"seccomp" yaml:"seccomp"`
	NoNewPrivileges bool     `json:"noNewPrivileges" yaml:"noNewPrivileges"`
	Namespaces      []string `json:"namespaces" yaml:"namespaces"`
	// Isolation is namespaces, or chroot for the plain jail.
	Isolation string `json:"isolation" yaml:"isolation"`
	// User is the host user the guest's init runs as, where it runs
	// without a user namespace as a non-root user (a chroot jail).
	User string `json:"user,omitempty" yaml:"user,omitempty"`
	// NotIsolated names what the guest shares with the host, said plainly.
	NotIsolated []string `json:"notIsolated,omitempty" yaml:"notIsolated,omitempty"`
}

// IDMap says which host ids a guest's root and users are.
type IDMap struct {
	// Kind is isolated (a host range of the guest's own) or shared.
	Kind    string `json:"kind" yaml:"kind"`
	HostUID uint32 `json:"hostUid" yaml:"hostUid"`
	HostGID uint32 `json:"hostGid" yaml:"hostGid"`
	Size    uint32 `json:"size" yaml:"size"`
}

// Exit records how a guest's init ended.
type Exit struct {
	Code     int       `json:"code" yaml:"code"`
	Signal   int       `json:"signal,omitempty" yaml:"signal,omitempty"`
	ExitedAt time.Time `json:"exitedAt" yaml:"exitedAt"`
}

// GuestCreate is the body of POST /1.0/guests.
type GuestCreate struct {
	Name       string `json:"name"`
	Template   string `json:"template"`
	Type       string `json:"type,omitempty"`
	Arch       string `json:"arch,omitempty"`
	CPUs       int    `json:"cpus,omitempty"`
	Memory     string `json:"memory,omitempty"`
	Processes  int    `json:"processes,omitempty"`
	Privileged bool   `json:"privileged,omitempty"`
	// IDMap is the id map of an unprivileged container: isolated (a host
	// id range of its own; the default) or shared (one range with every
	// shared guest).
	IDMap string `json:"idmap,omitempty"`
	// Isolation is how a container is kept apart from the host:
	// namespaces (the default) or chroot, the original jail: a chroot of
	// its tree as a non-root user, with no namespace but a mount one.
	Isolation string `json:"isolation,omitempty"`
	// Nesting lets an unprivileged container mount file systems and make
	// namespaces of its own (CAP_SYS_ADMIN in its user namespace).
	Nesting bool `json:"nesting,omitempty"`
	// Capabilities replace the default ones: names, "default" for the
	// default set, "-NAME" to drop one.
	Capabilities []string `json:"capabilities,omitempty"`
	Copy         bool     `json:"copy,omitempty"`
	// Disk is an overlay container's disk quota, like 10GiB (the default),
	// or "none" for none; a VM's root disk grows to it from the template's.
	Disk string `json:"disk,omitempty"`
	// Force accepts memory beyond the host's (overcommit).
	Force bool `json:"force,omitempty"`
	Start bool `json:"start,omitempty"`
	// Networks the guest joins; absent: the default network (polyvisor0),
	// ["none"]: none.
	Networks []string `json:"networks,omitempty"`
	// Publish forwards host ports to the guest: [HOSTIP:]HOSTPORT:GUESTPORT[/tcp|udp].
	Publish []string `json:"publish,omitempty"`
	// Engine names the driver that runs the guest among those serving
	// its type (GET /1.0/classes); empty for the type's default.
	Engine string `json:"engine,omitempty"`
	// In a cluster: Target names the member to run on (else the daemon
	// places it), Spread an anti-affinity group (its guests on distinct
	// members while there are enough), HA a guest restarted on another
	// member from its replica when its own is lost.
	Target string `json:"target,omitempty"`
	Spread string `json:"spread,omitempty"`
	HA     bool   `json:"ha,omitempty"`
}

// Import is the body of POST /1.0/imports.
type Import struct {
	// Path is the file (or OCI layout directory) to import, absolute, on
	// the daemon's host.
	Path string `json:"path"`
	// Name names the template and the guest; "" takes the definition's
	// name, or the file's.
	Name string `json:"name,omitempty"`
	// As is "guest" (the default: a template and a guest on it) or
	// "template" (the template alone).
	As string `json:"as,omitempty"`
	// Firmware says how the disk boots, bios or uefi, over what the
	// definition says; a bare disk image boots by BIOS unless it is set.
	Firmware string `json:"firmware,omitempty"`
	// Disk is the 1-based index, among the definition's disks, of the
	// disk to boot from; 0 takes the definition's boot disk.
	Disk int `json:"disk,omitempty"`
	// CPUs and Memory override what the definition states.
	CPUs   int    `json:"cpus,omitempty"`
	Memory string `json:"memory,omitempty"`
	// Networks, as for a create.
	Networks []string `json:"networks,omitempty"`
	Start    bool     `json:"start,omitempty"`
}

// Import targets.
const (
	ImportAsGuest    = "guest"
	ImportAsTemplate = "template"
)

// Export is the body of POST /1.0/guests/NAME/export.
type Export struct {
	// Path is the file to write, absolute, on the daemon's host; it must
	// not exist.
	Path string `json:"path"`
	// Format is ova, qcow2, vmdk or vhdx for a VM, tar for a container.
	Format string `json:"format"`
}

// StateChange is the body of PUT /1.0/guests/NAME/state.
type StateChange struct {
	Action  string `json:"action"` // start, stop, restart
	Force   bool   `json:"force,omitempty"`
	Timeout string `json:"timeout,omitempty"`
}

// ConfigChange is the body of PATCH /1.0/guests/NAME/config.
type ConfigChange struct {
	Set map[string]string `json:"set"`
	// Force accepts memory beyond the host's (overcommit).
	Force bool `json:"force,omitempty"`
}

// RootDisk is the name of the disk a guest boots from, or whose quota its
// root file system has.
const RootDisk = "root"

// Disk is one of a guest's disks.
type Disk struct {
	Name string `json:"name" yaml:"name"`
	Kind string `json:"kind" yaml:"kind"` // qcow2, overlay-upper, rootfs-copy
	// Size is what the guest sees, in bytes; 0 for a directory, which
	// takes what the host's file system has.
	Size int64 `json:"size,omitempty" yaml:"size,omitempty"`
	// Allocated is the space a disk image takes on the host, in bytes:
	// a qcow2 clone holds only what the guest wrote.
	Allocated int64 `json:"allocated,omitempty" yaml:"allocated,omitempty"`
	// Used is what the guest's files take of Size, in bytes, as df in
	// the guest counts it; given for a container's disk quota
	// (kind overlay-image).
	Used int64 `json:"used,omitempty" yaml:"used,omitempty"`
	// Path is the disk's file (or tree) on the host, for tools that read
	// a stopped guest's disk (qemu-img); not in the YAML views.
	Path string `json:"path,omitempty" yaml:"-"`
}

// ConfigResult says, per changed key, whether it took effect on the running
// guest ("live"), waits for the next start ("next-start"), or already had
// that value ("unchanged").
type ConfigResult struct {
	Applied map[string]string `json:"applied"`
}

// ExecRequest starts a command in a guest; the HTTP connection is then
// upgraded to a framed stream (internal/stream).
type ExecRequest struct {
	Command []string `json:"command"`
	Env     []string `json:"env,omitempty"`
	Cwd     string   `json:"cwd,omitempty"`
	TTY     bool     `json:"tty,omitempty"`
	Rows    uint16   `json:"rows,omitempty"`
	Cols    uint16   `json:"cols,omitempty"`
}

// Template describes a built template.
type Template struct {
	// ID names the template's directory: Name for a container template,
	// NAME.vm.ARCH for a VM one; show and delete take it.
	ID        string    `json:"id" yaml:"id"`
	Name      string    `json:"name" yaml:"name"`
	Type      string    `json:"type" yaml:"type"` // container or vm
	Source    string    `json:"source" yaml:"source"`
	Suite     string    `json:"suite,omitempty" yaml:"suite,omitempty"`
	Arch      string    `json:"arch" yaml:"arch"`
	Digest    string    `json:"digest" yaml:"digest"`
	Size      int64     `json:"size" yaml:"size"`
	CreatedAt time.Time `json:"createdAt" yaml:"createdAt"`
	UsedBy    []string  `json:"usedBy" yaml:"usedBy"`
	// Boot says how to boot a VM template's files; nil for containers.
	Boot *TemplateBoot `json:"boot,omitempty" yaml:"boot,omitempty"`
	// Process, for a container template imported from an OCI image, is
	// what its guests run instead of /sbin/init.
	Process *TemplateProcess `json:"process,omitempty" yaml:"process,omitempty"`
	// Origin says where an imported template came from: its format and
	// file.
	Origin string `json:"origin,omitempty" yaml:"origin,omitempty"`
	// Rootfs is a container template's root tree on the host, for tools
	// that read it (the benchmarks' raw runc runs over it); empty for a VM
	// template. Derived, never stored, and not in the YAML views.
	Rootfs string `json:"rootfs,omitempty" yaml:"-"`
}

// TemplateProcess is the command a container image runs, from its config.
type TemplateProcess struct {
	Args []string `json:"args" yaml:"args"`
	Env  []string `json:"env,omitempty" yaml:"env,omitempty"`
	Cwd  string   `json:"cwd,omitempty" yaml:"cwd,omitempty"`
}

// TemplateBoot is how a VM template boots: file names are relative to the
// template's directory.
type TemplateBoot struct {
	Kernel        string `json:"kernel" yaml:"kernel"`
	Initrd        string `json:"initrd" yaml:"initrd"`
	Disk          string `json:"disk" yaml:"disk"`
	Cmdline       string `json:"cmdline" yaml:"cmdline"`
	Machine       string `json:"machine" yaml:"machine"`
	Console       string `json:"console" yaml:"console"`
	QEMU          string `json:"qemu" yaml:"qemu"`
	KernelVersion string `json:"kernelVersion" yaml:"kernelVersion"`
	// Firmware is "" for direct kernel boot (Kernel, Initrd, Cmdline are
	// QEMU's), or "bios": the disk carries its own bootloader, which holds
	// the kernel command line; Kernel and Initrd are empty.
	Firmware string `json:"firmware,omitempty" yaml:"firmware,omitempty"`
	// MinMemory is the least memory, in bytes, a guest of this template
	// boots with; launch raises its default to it.
	MinMemory int64 `json:"minMemory,omitempty" yaml:"minMemory,omitempty"`
	// NoAgent says the disk may carry no polyvisor agent (an imported
	// disk): a start is done once the firmware runs, not when the agent
	// answers, and exec works only if the guest happens to run one.
	NoAgent bool `json:"noAgent,omitempty" yaml:"noAgent,omitempty"`
	// DataDisks are the qcow2 bases of the disks a guest has beside its
	// boot disk, in order (the second disk, the third...): an imported
	// definition's other disks. Each guest gets its own overlay of each,
	// attached after the boot disk as a virtio disk (vdb, vdc...).
	DataDisks []string `json:"dataDisks,omitempty" yaml:"dataDisks,omitempty"`
}

// TemplateBuild is the body of POST /1.0/templates.
type TemplateBuild struct {
	Source string `json:"source"` // busybox, debian, debian:SUITE
	Name   string `json:"name,omitempty"`
	Arch   string `json:"arch,omitempty"`
	Type   string `json:"type,omitempty"` // container (default) or vm
	// Firmware makes a VM template whose disk boots by itself: "bios" or "uefi".
	Firmware string `json:"firmware,omitempty"`
}

// Operation states.
const (
	OpRunning = "running"
	OpSuccess = "success"
	OpFailure = "failure"
)

// Operation is a long-running request, polled or waited on by id.
type Operation struct {
	ID        string   `json:"id"`
	Kind      string   `json:"kind"`
	Resource  string   `json:"resource"`
	Status    string   `json:"status"`
	Error     string   `json:"error,omitempty"`
	ErrorKind string   `json:"errorKind,omitempty"`
	Progress  Progress `json:"progress"`
	// Warnings name, a line each, what the operation could not carry
	// over (an import's unmapped devices, for one).
	Warnings []string `json:"warnings,omitempty"`
	// Result names what the operation made, when Resource could not say
	// it at the start (an import's template or guest).
	Result    string    `json:"result,omitempty"`
	CreatedAt time.Time `json:"createdAt"`
	UpdatedAt time.Time `json:"updatedAt"`
}

// Progress is an operation's current phase and how far it got.
type Progress struct {
	Phase string `json:"phase,omitempty"`
	Done  int64  `json:"done,omitempty"`
	Total int64  `json:"total,omitempty"`
}

// Error is the body of every non-2xx answer.
type Error struct {
	Error string `json:"error"`
	Kind  string `json:"kind,omitempty"`
}

// ClassVerdict is one line of `host check`.
type ClassVerdict struct {
	Class    string            `json:"class"`
	Works    bool              `json:"works"`
	Reason   string            `json:"reason"`
	Details  map[string]string `json:"details,omitempty"`
	Duration string            `json:"duration"`
	// Capabilities are what the class's driver declares it can do; the
	// daemon fills them in, the driver's Check leaves them nil.
	Capabilities *Capabilities `json:"capabilities,omitempty"`
}

// Capabilities are what a driver declares its guests can do, so that the
// daemon, the API and host check need not know drivers by name.
type Capabilities struct {
	Exec       bool `json:"exec"`       // run commands inside a running guest
	Console    bool `json:"console"`    // attach to its console
	LiveLimits bool `json:"liveLimits"` // apply changed limits while it runs
	DiskResize bool `json:"diskResize"` // grow its root disk
	DiskUsage  bool `json:"diskUsage"`  // say how much of its disk its files take
	Usage      bool `json:"usage"`      // say what a running guest uses: CPU, memory, disk and network bytes
	Snapshots  bool `json:"snapshots"`
	Copy       bool `json:"copy"`
	// CopyRunning: a running guest is copied consistently (frozen
	// meanwhile); without it, only a stopped guest is copied.
	CopyRunning bool `json:"copyRunning"`
	Export      bool `json:"export"`
	TreeRead    bool `json:"treeRead"` // lend its stopped root tree (file export)
	Networks    bool `json:"networks"`
	Privileged  bool `json:"privileged"` // --privileged: no user namespace
	CopyRootfs  bool `json:"copyRootfs"` // --copy: a private copy of the template
	// ExportFormats lists the formats Export writes.
	ExportFormats []string `json:"exportFormats,omitempty"`
	// Arches lists the guest architectures it runs here (Debian's names).
	Arches []string `json:"arches,omitempty"`
}

// Class is one registered driver, as GET /1.0/classes lists it.
type Class struct {
	// Name is the driver's (engine's) name, stored in guest.yaml's class.
	Name string `json:"name"`
	// Type is the guest type it serves: container or vm.
	Type string `json:"type"`
	// Default says it runs the guests of its type that name no engine.
	Default      bool         `json:"default"`
	Capabilities Capabilities `json:"capabilities"`
	Verdict      ClassVerdict `json:"verdict"`
}

// HostCheck is the answer of GET /1.0/host/check.
type HostCheck struct {
	Classes []ClassVerdict `json:"classes,omitempty"`
	// Requirements is every program, file and directory polyvisor needs
	// from the host (and the peers bench compares with), each with
	// its Debian package, the feature that needs it and whether it is here.
	Requirements []hostreq.Status `json:"requirements"`
	// InstallLine is the apt-get command that installs what make deps
	// would and the host lacks; empty when nothing is missing.
	InstallLine string `json:"installLine,omitempty"`
}

// NewHostRequirements returns a HostCheck that holds this host's
// requirements alone.
func NewHostRequirements() HostCheck {
	reqs := hostreq.Check()
	return HostCheck{Requirements: reqs, InstallLine: hostreq.InstallLine(hostreq.Missing(reqs))}
}

// ServerInfo is the answer of GET /1.0.
type ServerInfo struct {
	Version  string `json:"version"`
	StateDir string `json:"stateDir"`
	PID      int    `json:"pid"`
	// EventSubscribers is how many event streams are open.
	EventSubscribers int `json:"eventSubscribers"`
	// Listen is where the daemon serves HTTPS (daemon --listen), and
	// Fingerprint its certificate's SHA-256, which remotes pin.
	Listen      []string `json:"listen,omitempty"`
	Fingerprint string   `json:"fingerprint,omitempty"`
	// Client says who asked: "root (unix socket)" or the trusted
	// certificate's name.
	Client string `json:"client"`
}

// Network describes a managed network.
type Network struct {
	Name     string `json:"name" yaml:"name"`
	Bridge   string `json:"bridge" yaml:"bridge"`
	Subnet   string `json:"subnet" yaml:"subnet"`
	Gateway  string `json:"gateway" yaml:"gateway"`
	Domain   string `json:"domain" yaml:"domain"`
	Isolated bool   `json:"isolated" yaml:"isolated"`
	// DNSMasqPID is the pid of the network's dnsmasq (DHCP and DNS); 0 while
	// it is being restarted.
	DNSMasqPID int       `json:"dnsmasqPid" yaml:"dnsmasqPid"`
	Leases     []Lease   `json:"leases" yaml:"leases"`
	CreatedAt  time.Time `json:"createdAt" yaml:"createdAt"`
}

// Lease is an address dnsmasq gave out.
type Lease struct {
	MAC      string    `json:"mac" yaml:"mac"`
	IPv4     string    `json:"ipv4" yaml:"ipv4"`
	Hostname string    `json:"hostname,omitempty" yaml:"hostname,omitempty"`
	Expires  time.Time `json:"expires" yaml:"expires"`
}

// NetworkCreate is the body of POST /1.0/networks.
type NetworkCreate struct {
	Name     string `json:"name"`
	Subnet   string `json:"subnet,omitempty"` // empty: a free one is chosen
	Isolated bool   `json:"isolated,omitempty"`
}

// Event types, as GET /1.0/events?type= names them.
const (
	EventLifecycle = "lifecycle" // a guest was created, started, stopped or deleted
	EventOperation = "operation" // an operation began, made progress or ended
)

// EventTypes are the event types a subscription may name.
var EventTypes = []string{EventLifecycle, EventOperation}

// Lifecycle actions.
const (
	GuestCreated = "guest-created"
	GuestStarted = "guest-started"
	GuestStopped = "guest-stopped" // asked to, or ended on its own
	GuestDeleted = "guest-deleted"
)

// Event is one message of the event stream (GET /1.0/events, a
// websocket of JSON text messages).
type Event struct {
	Type string    `json:"type"`
	Time time.Time `json:"time"`
	// Action is a lifecycle event's (GuestCreated...); an operation
	// event's is its status (running, success, failure).
	Action string `json:"action"`
	// Guest names a lifecycle event's guest.
	Guest string `json:"guest,omitempty"`
	// Operation is an operation event's operation as it stands.
	Operation *Operation `json:"operation,omitempty"`
}
