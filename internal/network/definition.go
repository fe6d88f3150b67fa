// Package network manages polyvisor's networks: a Linux bridge each, with
// the gateway's address on it, and dnsmasq (the DHCP and DNS server libvirt
// and incus use) leasing addresses to guests and answering their names.
// Definitions live in the state dir; bridges and dnsmasq processes are
// made again from them when the daemon starts, and adopted when they are
// still there.
package network

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/polyvisor/polyvisor/internal/fsutil"
	"github.com/polyvisor/polyvisor/internal/guest"
	"github.com/polyvisor/polyvisor/pkg/api"
)

// SchemaVersion is the network.yaml schema this build writes and reads.
const SchemaVersion = 1

// DefaultName is the network guests join when they name none; it is made
// on first use.
const DefaultName = "polyvisor0"

// Domain is the DNS domain guests' names resolve in: NAME.polyvisor.
const Domain = "polyvisor"

// maxName keeps a network's name usable as its bridge's name (IFNAMSIZ-1).
const maxName = 15

// fileName is the definition's file inside the network's directory.
const fileName = "network.yaml"

// Definition is one network's network.yaml.
type Definition struct {
	SchemaVersion int          `yaml:"schemaVersion"`
	Name          string       `yaml:"name"`
	Bridge        string       `yaml:"bridge"`
	Subnet        netip.Prefix `yaml:"subnet"`
	Isolated      bool         `yaml:"isolated,omitempty"`
	CreatedAt     time.Time    `yaml:"createdAt"`
	// Intent is set while the network is being created or deleted
	// (intentCreate, intentDelete): a daemon that finds it on start
	// removes the network, whose creation its client saw fail or whose
	// deletion was asked.
	Intent string `yaml:"intent,omitempty"`
	// Cluster, when set, makes the network this member's slot of a
	// network that spans the cluster (SetCluster).
	Cluster *Cluster `yaml:"cluster,omitempty"`
}

// The values of Definition.Intent.
const (
	intentCreate = "create"
	intentDelete = "delete"
)

// Gateway is the bridge's address: the guests' router (unless isolated)
// and DNS server. In a cluster each member's bridge has its own: the
// subnet's address number Slot.
func (d *Definition) Gateway() netip.Addr {
	if d.Cluster != nil {
		return addrAt(d.Subnet, uint32(d.Cluster.Slot))
	}
	return gateway(d.Subnet)
}

// dhcpRange is the addresses this member's dnsmasq leases.
func (d *Definition) dhcpRange() (first, last netip.Addr) {
	if d.Cluster != nil {
		return slotRange(d.Subnet, d.Cluster.Slot, d.Cluster.MaxSlots)
	}
	return dhcpRange(d.Subnet)
}

// validateName checks a network name: a DNS label short enough to name
// the bridge after.
func validateName(name string) error {
	if err := guest.ValidateName(name); err != nil || len(name) > maxName {
		return fmt.Errorf("%w: network name %q: use 1-%d lower-case letters, digits and '-', starting with a letter", api.ErrInvalid, name, maxName)
	}
	return nil
}

// validate checks a loaded definition.
func (d *Definition) validate() error {
	if d.SchemaVersion != SchemaVersion {
		return fmt.Errorf("%w: schemaVersion %d: this polyvisor reads version %d", api.ErrInvalid, d.SchemaVersion, SchemaVersion)
	}
	if err := validateName(d.Name); err != nil {
		return err
	}
	if d.Bridge != d.Name {
		return fmt.Errorf("%w: bridge %q: a network's bridge is named after it (%s)", api.ErrInvalid, d.Bridge, d.Name)
	}
	if d.Intent != "" && d.Intent != intentCreate && d.Intent != intentDelete {
		return fmt.Errorf("%w: intent %q: remove it", api.ErrInvalid, d.Intent)
	}
	if !d.Subnet.IsValid() || !d.Subnet.Addr().Is4() || d.Subnet.Masked() != d.Subnet || d.Subnet.Bits() < minBits || d.Subnet.Bits() > maxBits {
		return fmt.Errorf("%w: subnet %s: write an IPv4 network from /%d to /%d, like 10.86.0.0/24", api.ErrInvalid, d.Subnet, minBits, maxBits)
	}
	if d.Cluster != nil {
		return d.Cluster.validate(d.Subnet)
	}
	return nil
}

// store keeps network definitions, one directory each.
type store struct{ dir string }

func (s store) path(name string) string { return filepath.Join(s.dir, name) }

func (s store) load(name string) (*Definition, error) {
	data, err := os.ReadFile(filepath.Join(s.path(name), fileName))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("network %s: %w", name, api.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("load network %s: %w", name, err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var d Definition
	if err := dec.Decode(&d); err != nil {
		return nil, fmt.Errorf("%w: network %s: %s: %s", api.ErrInvalid, name, fileName, strings.ReplaceAll(err.Error(), "\n", " "))
	}
	if err := d.validate(); err != nil {
		return nil, fmt.Errorf("network %s: %w", name, err)
	}
	return &d, nil
}

func (s store) save(d *Definition) error {
	// dnsmasq, once it has dropped root, reads the hosts file again on SIGHUP.
	if err := os.MkdirAll(s.path(d.Name), 0o755); err != nil {
		return fmt.Errorf("save network %s: %w", d.Name, err)
	}
	var buf bytes.Buffer
	buf.WriteString("# polyvisor network definition\n")
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(d); err != nil {
		return fmt.Errorf("encode network %s: %w", d.Name, err)
	}
	return fsutil.WriteFileAtomic(filepath.Join(s.path(d.Name), fileName), buf.Bytes(), 0o640)
}

// names lists the networks on disk.
func (s store) names() ([]string, error) {
	entries, err := os.ReadDir(s.dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list networks: %w", err)
	}
	var names []string
	for _, e := range entries {
		if e.IsDir() && !strings.HasPrefix(e.Name(), ".") {
			names = append(names, e.Name())
		}
	}
	return names, nil
}

func (s store) remove(name string) error { return fsutil.RemoveAllAtomic(s.path(name)) }
