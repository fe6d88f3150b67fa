// Package guest holds the guest definition (guest.yaml): its versioned
// schema, validation, and the store that keeps it on disk.
package guest

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/polyvisor/polyvisor/internal/capability"
	"github.com/polyvisor/polyvisor/internal/idmap"
	"github.com/polyvisor/polyvisor/pkg/api"
)

// SchemaVersion is the guest.yaml schema this build writes and reads.
const SchemaVersion = 1

// Guest types a user asks for; the class is the driver that runs them.
const (
	TypeContainer = "container"
	TypeVM        = "vm"
	// TypeUML is a User-Mode Linux guest: a Linux kernel run as a host
	// process, over a ubd disk of the container template's tree.
	TypeUML = "uml"
	// DefaultType is what a request that names no type gets.
	DefaultType = TypeContainer
)

// Rootfs modes of a container guest.
const (
	RootfsOverlay = "overlay" // clone of the template in O(1), overlayfs
	RootfsCopy    = "copy"    // full private copy, zone style
	RootfsQcow2   = "qcow2"   // a VM's qcow2 overlay on the template's base disk
	RootfsRaw     = "raw"     // a Bochs VM's own raw copy of the template's disk
	RootfsUBDCOW  = "ubd-cow" // a UML guest's COW file over the template's ext4 image
)

// Defaults a guest gets when the user does not say.
const (
	DefaultCPUs      = 1
	DefaultMemory    = Size(256 << 20)
	DefaultProcesses = 1024
	MinMemory        = Size(8 << 20)
	MaxCPUs          = 256
)

// Definition is one guest's guest.yaml: the source of truth for the host.
type Definition struct {
	SchemaVersion  int      `yaml:"schemaVersion"`
	Name           string   `yaml:"name"`
	Type           string   `yaml:"type"`
	Class          string   `yaml:"class"`
	Template       string   `yaml:"template"`
	TemplateDigest string   `yaml:"templateDigest,omitempty"`
	Arch           string   `yaml:"arch"`
	CPUs           int      `yaml:"cpus"`
	Memory         Size     `yaml:"memory"`
	Processes      int      `yaml:"processes"`
	Privileged     bool     `yaml:"privileged,omitempty"`
	Rootfs         string   `yaml:"rootfs"`
	Disks          []Disk   `yaml:"disks,omitempty"`
	Networks       []string `yaml:"networks,omitempty"`
	// Publish lists published ports, [HOSTIP:]HOSTPORT:GUESTPORT/PROTO,
	// forwarded to the guest's address on its first network.
	Publish []string `yaml:"publish,omitempty"`
	// MACs gives, by network, a MAC the guest keeps instead of the one
	// derived from its name: an imported guest's vendor-assigned MAC.
	MACs map[string]string `yaml:"macs,omitempty"`
	// NICs, when set, are a VM's network interfaces in order, each on one
	// of Networks (several may share one) with the MAC it keeps: an
	// imported guest keeps every NIC its vendor gave it. Unset, the guest
	// has one NIC per network, with MACs.
	NICs []NIC `yaml:"nics,omitempty"`
	// Security says how an unprivileged container is kept apart from
	// other guests; absent (older definitions) means the shared id map.
	Security  Security  `yaml:"security,omitempty"`
	CreatedAt time.Time `yaml:"createdAt"`
	Status    Status    `yaml:"status"`
}

// Security is the isolation settings of an unprivileged container.
type Security struct {
	// IDMap is isolated (a host id range of the guest's own) or shared
	// (the range the templates are stored in, with every shared guest).
	IDMap string `yaml:"idmap,omitempty"`
	// IDMapBase is the first host id of an isolated guest's range, given
	// from idmap.IsolatedPool at creation.
	IDMapBase uint32 `yaml:"idmapBase,omitempty"`
	// Nesting lets the guest's root mount file systems and make
	// namespaces (CAP_SYS_ADMIN, within its user namespace), for guests
	// that run containers or sandboxes of their own.
	Nesting bool `yaml:"nesting,omitempty"`
	// Capabilities, when set, replace the default capabilities of the
	// guest's root (capability.Default), in capability-number order.
	Capabilities []string `yaml:"capabilities,omitempty"`
	// Isolation is IsolationChroot for a plain jail; empty means
	// namespaces, every container's default.
	Isolation string `yaml:"isolation,omitempty"`
}

// How a container is isolated from the host: by namespaces, or by a
// chroot alone (the original jail, before namespaces).
const (
	IsolationNamespaces = "namespaces"
	IsolationChroot     = "chroot"
)

// Chroot reports whether the guest is a plain chroot jail.
func (d *Definition) Chroot() bool { return d.Security.Isolation == IsolationChroot }

// IDMap returns the host id range of an unprivileged container's user
// namespace, and false for a guest that has none (privileged, or a VM).
func (d *Definition) IDMap() (idmap.Map, bool) {
	if d.Type == TypeVM || d.Type == TypeUML || d.Privileged {
		return idmap.Map{}, false
	}
	if d.Security.IDMap == idmap.Isolated {
		return idmap.Map{HostBase: d.Security.IDMapBase, Size: idmap.Size}, true
	}
	return idmap.Default(), true
}

// Isolated reports whether the guest has an id range of its own.
func (d *Definition) Isolated() bool {
	_, ok := d.IDMap()
	return ok && d.Security.IDMap == idmap.Isolated
}

// validateSecurity checks the security settings: only an unprivileged
// container has them, capabilities are known ones, and the id map is of a
// known kind with, for an isolated guest, a base that is one of the pool's.
func (d *Definition) validateSecurity() error {
	s := d.Security
	if s.IDMap == "" && s.IDMapBase == 0 && !s.Nesting && s.Capabilities == nil && s.Isolation == "" {
		return nil
	}
	if d.Type != TypeContainer || d.Privileged {
		return fmt.Errorf("%w: security: only unprivileged containers have security settings (a privileged one holds every capability already); remove the security section", api.ErrInvalid)
	}
	for _, c := range s.Capabilities {
		if canonical, ok := capability.Canonical(c); !ok || canonical != c {
			return fmt.Errorf("%w: security.capabilities: %q is not a capability; write names like CAP_SYS_PTRACE", api.ErrInvalid, c)
		}
	}
	if err := d.validateIsolation(); err != nil {
		return err
	}
	if s.IDMap == "" && s.IDMapBase == 0 {
		return nil // an older definition's shared map
	}
	switch s.IDMap {
	case idmap.Isolated:
		if p := idmap.IsolatedPool(); !p.Contains(s.IDMapBase) {
			return fmt.Errorf("%w: security.idmapBase %d: not a range of the isolated pool (%d + k*%d, k below %d); restore the value polyvisor wrote", api.ErrInvalid, s.IDMapBase, p.First, idmap.Size, p.Count)
		}
	case idmap.Shared:
		if s.IDMapBase != 0 {
			return fmt.Errorf("%w: security.idmapBase: a shared guest uses the shared range; remove idmapBase", api.ErrInvalid)
		}
	default:
		return fmt.Errorf("%w: security.idmap %q: use %s or %s", api.ErrInvalid, s.IDMap, idmap.Isolated, idmap.Shared)
	}
	return nil
}

// Disk is one disk file or directory of the guest, relative to its directory.
type Disk struct {
	Name string `yaml:"name"`
	Path string `yaml:"path"`
	Kind string `yaml:"kind"` // overlay-upper, rootfs-copy, qcow2...
	// Size is the size the guest sees, for disk images; it only grows
	// (config set NAME disk.NAME.size=SIZE).
	Size Size `yaml:"size,omitempty"`
}

// NIC is one network interface of a guest that lists them (Definition.NICs).
type NIC struct {
	Network string `yaml:"network"`
	// MAC is the address the guest keeps; "" derives one from the guest's
	// name, the network and the NIC's place.
	MAC string `yaml:"mac,omitempty"`
}

// MaxDiskSize bounds a disk's size: far beyond any host here, and within
// what qcow2 and ext4 (4 KiB blocks, 64bit) take.
const MaxDiskSize = Size(64 << 40)

// DiskOverlayImage is the kind of an overlay container's root disk whose
// upper and work dirs live in an ext4 image of the disk's size: its disk
// quota. A container without one (kind overlay-upper, created before
// quotas or with --disk none) writes to the host's file system unbounded.
const DiskOverlayImage = "overlay-image"

// diskSizeKey is the settable key of a disk's size: disk.NAME.size.
func diskSizeKey(name string) string { return "disk." + name + ".size" }

// DiskOfKey returns the name of the disk a disk.NAME.size key sets, and
// whether key is such a key; "disk" alone sets the root disk.
func DiskOfKey(key string) (string, bool) {
	if key == "disk" {
		return "root", true
	}
	name, ok := strings.CutPrefix(key, "disk.")
	if !ok {
		return "", false
	}
	name, ok = strings.CutSuffix(name, ".size")
	return name, ok && name != ""
}

// Disk returns the disk named name.
func (d *Definition) Disk(name string) (*Disk, bool) {
	for i := range d.Disks {
		if d.Disks[i].Name == name {
			return &d.Disks[i], true
		}
	}
	return nil, false
}

// Status is what the daemon needs to find a running guest again after it
// restarts. It is a hint: liveness is always checked against the process
// (pid plus start time, so a reused pid is not mistaken for the guest).
type Status struct {
	State         string    `yaml:"state"`
	HandleVersion int       `yaml:"handleVersion,omitempty"`
	InitPID       int       `yaml:"initPid,omitempty"`
	InitStart     uint64    `yaml:"initStart,omitempty"`
	MonitorPID    int       `yaml:"monitorPid,omitempty"`
	MonitorStart  uint64    `yaml:"monitorStart,omitempty"`
	StartedAt     time.Time `yaml:"startedAt,omitempty"`
	// Handle is what the driver needs to find the guest again, opaque to
	// the daemon and versioned by HandleVersion: written by the driver's
	// Start, read by its Recover. Empty in definitions older than it.
	Handle string `yaml:"handle,omitempty"`
	// Accel is how a VM runs: kvm or tcg.
	Accel    string    `yaml:"accel,omitempty"`
	LastExit *api.Exit `yaml:"lastExit,omitempty"`
	// Pending lists limits changed while running that apply at next start.
	Pending []string `yaml:"pending,omitempty"`
	// Intent names the multi-step operation under way when this was
	// saved, recorded before its first side effect and cleared when it
	// completes: a daemon that finds it on start finishes or rolls back
	// what that operation left (see the Intent constants).
	Intent string `yaml:"intent,omitempty"`
	// IntentSnapshot names the snapshot a snapshot intent is about.
	IntentSnapshot string `yaml:"intentSnapshot,omitempty"`
}

// The operations a Status.Intent names, and what the next daemon makes of
// each when it finds it.
const (
	IntentStart           = "start"            // rolled back: the guest is left stopped
	IntentLaunch          = "launch"           // rolled back: its client saw it fail, so nothing is left
	IntentStop            = "stop"             // finished: the guest is left stopped
	IntentDelete          = "delete"           // finished: the guest is removed
	IntentSnapshotCreate  = "snapshot-create"  // rolled back: no snapshot of that name is left
	IntentSnapshotRestore = "snapshot-restore" // finished: the restore is made again
	IntentSnapshotDelete  = "snapshot-delete"  // finished: the snapshot is removed
)

// intents lists the valid Status.Intent values.
func intents() []string {
	return []string{IntentStart, IntentLaunch, IntentStop, IntentDelete, IntentSnapshotCreate, IntentSnapshotRestore, IntentSnapshotDelete}
}

// isDNSLabel reports whether name is 1-63 of [a-z0-9-], starting with a
// letter and not ending with '-'.
func isDNSLabel(name string) bool {
	if len(name) == 0 || len(name) > 63 || name[0] < 'a' || name[0] > 'z' || name[len(name)-1] == '-' {
		return false
	}
	for _, c := range []byte(name) {
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '-' {
			return false
		}
	}
	return true
}

// ValidateName checks that name is a DNS label, so it works as a hostname.
func ValidateName(name string) error {
	if !isDNSLabel(name) {
		return fmt.Errorf("%w: name %q: use 1-63 lower-case letters, digits and '-', starting with a letter and not ending with '-'", api.ErrInvalid, name)
	}
	return nil
}

// Validate checks every field, naming the field and the fix in the error.
func (d *Definition) Validate() error {
	if d.SchemaVersion != SchemaVersion {
		return fmt.Errorf("%w: schemaVersion %d: this polyvisor reads version %d", api.ErrInvalid, d.SchemaVersion, SchemaVersion)
	}
	if err := ValidateName(d.Name); err != nil {
		return err
	}
	if d.Type != TypeContainer && d.Type != TypeVM && d.Type != TypeUML {
		return fmt.Errorf("%w: type %q: use container, vm or uml", api.ErrInvalid, d.Type)
	}
	if err := validateTemplate(d.Template); err != nil {
		return err
	}
	if i := d.Status.Intent; i != "" && !slices.Contains(intents(), i) {
		return fmt.Errorf("%w: status.intent %q: use one of %s, or remove it", api.ErrInvalid, i, strings.Join(intents(), ", "))
	}
	if s := d.Status.IntentSnapshot; s != "" && !isDNSLabel(s) {
		return fmt.Errorf("%w: status.intentSnapshot %q: not a snapshot name; remove it", api.ErrInvalid, s)
	}
	if err := CheckCPUs("cpus", d.CPUs); err != nil {
		return err
	}
	if err := CheckMemory("memory", d.Memory); err != nil {
		return err
	}
	if err := CheckProcesses("processes", d.Processes); err != nil {
		return err
	}
	for _, disk := range d.Disks {
		if err := CheckDiskSize(diskSizeKey(disk.Name), disk.Size); err != nil {
			return err
		}
	}
	for netName, mac := range d.MACs {
		if hw, err := net.ParseMAC(mac); err != nil || len(hw) != 6 || hw[0]&1 == 1 {
			return fmt.Errorf("%w: macs: %s: %q is not a unicast Ethernet address like 52:54:00:12:34:56", api.ErrInvalid, netName, mac)
		}
	}
	if err := d.validateNICs(); err != nil {
		return err
	}
	if d.Type == TypeVM && d.Rootfs != RootfsQcow2 && d.Rootfs != RootfsRaw {
		return fmt.Errorf("%w: rootfs %q: a vm's root disk is qcow2 (raw under Bochs)", api.ErrInvalid, d.Rootfs)
	}
	if d.Type == TypeUML && d.Rootfs != RootfsUBDCOW {
		return fmt.Errorf("%w: rootfs %q: a uml guest's root disk is %s", api.ErrInvalid, d.Rootfs, RootfsUBDCOW)
	}
	if d.Type == TypeContainer && d.Rootfs != RootfsOverlay && d.Rootfs != RootfsCopy {
		return fmt.Errorf("%w: rootfs %q: use overlay or copy", api.ErrInvalid, d.Rootfs)
	}
	if err := d.validateSecurity(); err != nil {
		return err
	}
	return d.validatePrivileged()
}

// validateNICs checks a listed NIC's network and MAC. Only VMs list
// NICs: a container's one interface is eth0.
func (d *Definition) validateNICs() error {
	if len(d.NICs) > 0 && d.Type != TypeVM {
		return fmt.Errorf("%w: nics: only a vm lists its NICs; remove them", api.ErrInvalid)
	}
	for i, nic := range d.NICs {
		if !slices.Contains(d.Networks, nic.Network) {
			return fmt.Errorf("%w: nics: NIC %d is on network %q, which is not in networks; add it there or correct it", api.ErrInvalid, i+1, nic.Network)
		}
		if nic.MAC == "" {
			continue
		}
		if hw, err := net.ParseMAC(nic.MAC); err != nil || len(hw) != 6 || hw[0]&1 == 1 {
			return fmt.Errorf("%w: nics: NIC %d: %q is not a unicast Ethernet address like 52:54:00:12:34:56", api.ErrInvalid, i+1, nic.MAC)
		}
	}
	return nil
}

// validateTemplate checks that the template is a plain template name: the
// drivers join it to the templates directory, so "../../etc" or "a/b"
// would reach outside it.
func validateTemplate(name string) error {
	if name == "" {
		return fmt.Errorf("%w: template is empty: name a template from 'polyvisor template list'", api.ErrInvalid)
	}
	if !isDNSLabel(name) {
		return fmt.Errorf("%w: template %q: name a template from 'polyvisor template list' (1-63 lower-case letters, digits and '-', no '/' or '..')", api.ErrInvalid, name)
	}
	return nil
}

// validateIsolation checks a chroot jail's settings: it runs as the
// first host id of its own range, with no user namespace to map its
// processes' ids, no network namespace to plug a network into, and no pid
// namespace to hide other processes: a range shared with other guests
// would let it signal theirs.
func (d *Definition) validateIsolation() error {
	s := d.Security
	switch s.Isolation {
	case "":
		return nil
	case IsolationChroot:
	default:
		return fmt.Errorf("%w: security.isolation %q: use %s, or remove it for namespaces", api.ErrInvalid, s.Isolation, IsolationChroot)
	}
	switch {
	case s.IDMap != idmap.Isolated:
		return fmt.Errorf("%w: security.idmap %q: a chroot guest shares the host's pid namespace, so it needs host ids of its own; use %s", api.ErrInvalid, s.IDMap, idmap.Isolated)
	case s.Nesting:
		return fmt.Errorf("%w: security.nesting: a chroot guest runs as a non-root user with no capabilities; remove nesting", api.ErrInvalid)
	case len(s.Capabilities) > 0:
		return fmt.Errorf("%w: security.capabilities: a chroot guest runs as a non-root user with no capabilities; remove capabilities", api.ErrInvalid)
	case len(d.Networks) > 0 || len(d.Publish) > 0:
		return fmt.Errorf("%w: networks: a chroot guest shares the host's network stack and joins no network of polyvisor's; remove networks and publish", api.ErrInvalid)
	}
	return nil
}

// validatePrivileged refuses privileged where the guest's tree is the
// template's, which is stored shifted to the shared id map: without a user
// namespace, host root would own nothing in it and the guest would see
// every file owned by an unmapped id. The definition records no shift of
// its own; the rootfs kind tells: only a copy can have been shifted back
// (create --privileged). A VM has no user namespace to leave.
func (d *Definition) validatePrivileged() error {
	if !d.Privileged || d.Rootfs == RootfsCopy {
		return nil
	}
	if d.Type == TypeVM || d.Type == TypeUML {
		return fmt.Errorf("%w: privileged: only containers run privileged; remove privileged: true", api.ErrInvalid)
	}
	return fmt.Errorf("%w: privileged: rootfs %s is the template's tree, shifted for an unprivileged guest; remove privileged: true, or create a new guest with --privileged (which copies the tree)", api.ErrInvalid, d.Rootfs)
}

// Parse reads a guest.yaml strictly: unknown keys are errors.
func Parse(data []byte) (*Definition, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var d Definition
	if err := dec.Decode(&d); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("%w: the definition is empty", api.ErrInvalid)
		}
		return nil, fmt.Errorf("%w: %s", api.ErrInvalid, yamlMessage(data, err))
	}
	if err := d.Validate(); err != nil {
		return nil, err
	}
	return &d, nil
}

// yamlMessage turns yaml.v3's multi-line errors into one readable line.
func yamlMessage(data []byte, err error) string {
	var ve *valueError
	if errors.As(err, &ve) {
		return keyAtLine(data, ve.line) + ": " + ve.err.Error()
	}
	var te *yaml.TypeError
	if errors.As(err, &te) {
		parts := make([]string, 0, len(te.Errors))
		for _, e := range te.Errors {
			if i := strings.Index(e, "field "); i >= 0 && strings.Contains(e, "not found") {
				key := strings.Fields(e[i+len("field "):])[0]
				parts = append(parts, fmt.Sprintf("unknown key %q (%s): remove it or check its spelling", key, strings.TrimSuffix(e[:i], ": ")))
				continue
			}
			parts = append(parts, e)
		}
		return strings.Join(parts, "; ")
	}
	return strings.ReplaceAll(err.Error(), "\n", " ")
}

// Marshal writes the definition as guest.yaml.
func (d *Definition) Marshal() ([]byte, error) {
	var buf bytes.Buffer
	buf.WriteString("# polyvisor guest definition; edit with 'polyvisor config edit " + d.Name + "'\n")
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(d); err != nil {
		return nil, fmt.Errorf("encode %s: %w", d.Name, err)
	}
	return buf.Bytes(), nil
}

// Settable lists the keys `config set` accepts.
var Settable = []string{"cpus", "memory", "processes", "disk", "disk.root.size", "network", "publish", KeyNesting, KeyCapabilities}

// Security keys of `config set`; they take effect at the next start.
const (
	KeyNesting      = "security.nesting"
	KeyCapabilities = "security.capabilities"
)

// Set changes one settable key from its text form, validating it. Bounds
// that depend on the host (memory beyond the host's, which --force lifts)
// are the caller's to check.
func (d *Definition) Set(key, value string) error {
	switch key {
	case "cpus":
		n, err := strconv.Atoi(value)
		if err != nil {
			return fmt.Errorf("%w: cpus %q: give a whole number from 1 to %d", api.ErrInvalid, value, MaxCPUs)
		}
		d.CPUs = n
	case "memory":
		s, err := ParseSize(value)
		if err != nil {
			return fmt.Errorf("%w: memory: %v", api.ErrInvalid, err)
		}
		if err := CheckMemory("memory", s); err != nil {
			return err
		}
		d.Memory = s
	case "processes":
		n, err := strconv.Atoi(value)
		if err != nil {
			return fmt.Errorf("%w: processes %q: give a whole number of at least 1", api.ErrInvalid, value)
		}
		d.Processes = n
	case "network":
		// The network's existence, and whether the guest may move now, are
		// the daemon's to check.
		// The guest's own MAC (an imported one) moves with it.
		var mac string
		if len(d.Networks) > 0 {
			mac = d.MACs[d.Networks[0]]
		}
		d.MACs = nil
		if value == "none" {
			d.Networks, d.NICs = nil, nil
			break
		}
		if err := ValidateName(value); err != nil {
			return fmt.Errorf("%w: network %q: name one network, or none", api.ErrInvalid, value)
		}
		d.Networks = []string{value}
		if mac != "" {
			d.MACs = map[string]string{value: mac}
		}
		// Listed NICs all move, keeping their MACs.
		for i := range d.NICs {
			d.NICs[i].Network = value
		}
	case KeyNesting:
		on, err := strconv.ParseBool(value)
		if err != nil {
			return fmt.Errorf("%w: %s %q: give true or false", api.ErrInvalid, key, value)
		}
		d.Security.Nesting = on
	case KeyCapabilities:
		caps, err := ParseCapabilities(key, value)
		if err != nil {
			return err
		}
		d.Security.Capabilities = caps
	case "publish":
		// A comma-separated list, empty for none; the daemon parses each.
		d.Publish = nil
		for _, p := range strings.Split(value, ",") {
			if p = strings.TrimSpace(p); p != "" {
				d.Publish = append(d.Publish, p)
			}
		}
	default:
		name, ok := DiskOfKey(key)
		if !ok {
			return fmt.Errorf("%w: unknown key %q: settable keys are %s", api.ErrInvalid, key, strings.Join(Settable, ", "))
		}
		return d.setDiskSize(key, name, value)
	}
	return d.Validate()
}

// ParseCapabilities reads a capability list (capability.Parse): nil for
// the default set ("default" or nothing), refused if it leaves none.
func ParseCapabilities(field, value string) ([]string, error) {
	caps, err := capability.Parse(field, value)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", api.ErrInvalid, err)
	}
	switch {
	case strings.TrimSpace(value) == "" || strings.EqualFold(strings.TrimSpace(value), "default"):
		return nil, nil // the default set, which follows polyvisor's
	case len(caps) == 0:
		return nil, fmt.Errorf("%w: %s %q: that leaves no capability at all; give at least one, or default", api.ErrInvalid, field, value)
	}
	return caps, nil
}

// setDiskSize grows a disk image: never shrinks it, which would cut off
// the end of the guest's file system.
func (d *Definition) setDiskSize(key, name, value string) error {
	disk, ok := d.Disk(name)
	if !ok || (disk.Kind != RootfsQcow2 && disk.Kind != DiskOverlayImage) {
		if d.Type == TypeContainer {
			return fmt.Errorf("%w: %s: %s has no disk quota (created with --copy, --disk none or before quotas); its files share the host's file system", api.ErrInvalid, key, d.Name)
		}
		return fmt.Errorf("%w: %s: %s has no disk image named %q", api.ErrInvalid, key, d.Name, name)
	}
	size, err := ParseSize(value)
	if err != nil {
		return fmt.Errorf("%w: %s: %v", api.ErrInvalid, key, err)
	}
	if disk.Kind == DiskOverlayImage {
		size = roundQuota(size)
	}
	if size < disk.Size {
		return fmt.Errorf("%w: %s %s: smaller than the disk's %s; disks only grow (shrinking would cut off the guest's file system)", api.ErrInvalid, key, size, disk.Size)
	}
	if err := CheckDiskSize(key, size); err != nil {
		return err
	}
	disk.Size = size
	return nil
}

// keyAtLine names the top-level key whose value sits on line.
func keyAtLine(data []byte, line int) string {
	var root yaml.Node
	if yaml.Unmarshal(data, &root) != nil || len(root.Content) == 0 {
		return fmt.Sprintf("line %d", line)
	}
	m := root.Content[0]
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i+1].Line == line {
			return m.Content[i].Value
		}
	}
	return fmt.Sprintf("line %d", line)
}

// Clone returns a deep copy, so a changed definition can be validated and
// saved before it replaces the one readers see.
func (d *Definition) Clone() *Definition {
	c := *d
	c.Disks = append([]Disk(nil), d.Disks...)
	c.Networks = append([]string(nil), d.Networks...)
	c.Publish = append([]string(nil), d.Publish...)
	c.Security.Capabilities = slices.Clone(d.Security.Capabilities)
	if d.MACs != nil {
		c.MACs = maps.Clone(d.MACs)
	}
	c.NICs = slices.Clone(d.NICs)
	c.Status.Pending = append([]string(nil), d.Status.Pending...)
	if d.Status.LastExit != nil {
		e := *d.Status.LastExit
		c.Status.LastExit = &e
	}
	return &c
}

// Changes compares an edited definition with the current one and returns
// the settable keys that differ, as `config set` would take them. Any other
// difference (name, template, rootfs...) is refused: those are fixed at
// creation. Status is the daemon's and is ignored.
func Changes(current, edited *Definition) (map[string]string, error) {
	a, b := current.Clone(), edited.Clone()
	set := map[string]string{}
	if a.CPUs != b.CPUs {
		set["cpus"] = strconv.Itoa(b.CPUs)
	}
	if a.Memory != b.Memory {
		set["memory"] = b.Memory.String()
	}
	if a.Processes != b.Processes {
		set["processes"] = strconv.Itoa(b.Processes)
	}
	if len(a.Disks) == len(b.Disks) {
		for i := range a.Disks {
			if a.Disks[i].Name == b.Disks[i].Name && a.Disks[i].Size != b.Disks[i].Size {
				set[diskSizeKey(b.Disks[i].Name)] = b.Disks[i].Size.String()
				b.Disks[i].Size = a.Disks[i].Size
			}
		}
	}
	if !slices.Equal(a.Networks, b.Networks) {
		set["network"] = "none"
		if len(b.Networks) > 0 {
			set["network"] = strings.Join(b.Networks, ",")
		}
	}
	if !slices.Equal(a.Publish, b.Publish) {
		set["publish"] = strings.Join(b.Publish, ",")
	}
	if a.Security.Nesting != b.Security.Nesting {
		set[KeyNesting] = strconv.FormatBool(b.Security.Nesting)
	}
	if !slices.Equal(a.Security.Capabilities, b.Security.Capabilities) {
		set[KeyCapabilities] = strings.Join(b.Security.Capabilities, ",")
		if b.Security.Capabilities == nil {
			set[KeyCapabilities] = "default"
		}
	}
	if !slices.Equal(a.Networks, b.Networks) {
		b.MACs, b.NICs = a.MACs, a.NICs // they move with the network (Set "network")
	}
	b.Networks, b.Publish = a.Networks, a.Publish
	b.Security.Nesting, b.Security.Capabilities = a.Security.Nesting, a.Security.Capabilities
	b.CPUs, b.Memory, b.Processes, b.Status = a.CPUs, a.Memory, a.Processes, a.Status
	left, _ := a.Marshal()
	right, _ := b.Marshal()
	if !bytes.Equal(left, right) {
		return nil, fmt.Errorf("%w: only %s (disk sizes) can change after creation; revert the other edits", api.ErrInvalid, strings.Join(Settable, ", "))
	}
	return set, nil
}
