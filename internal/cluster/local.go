package cluster

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/polyvisor/polyvisor/internal/fsutil"
)

// Local is what a member keeps on its own disk about its cluster
// (STATE/cluster/member.json): enough to start its etcd again and to run
// its guests while the cluster cannot be reached.
type Local struct {
	Cluster string `json:"cluster"`
	Member  string `json:"member"`
	// Address is the member's address among the members: etcd's peer and
	// client URLs and the network overlay's underlay are on it.
	Address string `json:"address"`
	// InitialCluster and New are etcd's first start: the members as the
	// member joined them, and whether it founded the cluster.
	InitialCluster string `json:"initialCluster"`
	New            bool   `json:"new,omitempty"`
	// ForceNew, for one start, makes the member's etcd a cluster of one
	// that keeps its data (etcd's --force-new-cluster); never saved.
	ForceNew bool      `json:"-"`
	Settings Settings  `json:"settings"`
	JoinedAt time.Time `json:"joinedAt"`
}

// Settings are the cluster's timings, chosen at init, kept in etcd and
// copied to each member.
type Settings struct {
	// OfflineAfter is how long a member may stay silent before it is
	// marked offline and its HA guests restart elsewhere.
	OfflineAfter Duration `json:"offlineAfter"`
	// ReplicateEvery is how often an HA guest's disks are copied to its
	// replica member: the most data a failover loses.
	ReplicateEvery Duration `json:"replicateEvery"`
}

// Defaults: etcd's lease and a minute of data at most.
const (
	DefaultOfflineAfter   = 15 * time.Second
	DefaultReplicateEvery = 60 * time.Second
)

// Duration is a time.Duration written as "15s" in JSON.
type Duration time.Duration

func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	v, err := time.ParseDuration(s)
	*d = Duration(v)
	return err
}

// Files of STATE/cluster.
const (
	localFile  = "member.json"
	caCert     = "ca.crt"
	caKey      = "ca.key"
	memberCert = "member.crt"
	memberKey  = "member.key"
	etcdDir    = "etcd"
)

// LoadLocal reads dir's member.json: nil without an error when this host
// is in no cluster.
func LoadLocal(dir string) (*Local, error) {
	data, err := os.ReadFile(filepath.Join(dir, localFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("cluster membership: %w", err)
	}
	var l Local
	if err := json.Unmarshal(data, &l); err != nil {
		return nil, fmt.Errorf("cluster membership %s: %w", filepath.Join(dir, localFile), err)
	}
	return &l, nil
}

// Save writes the membership last, once its keys are in place: a member
// is one only when member.json is there.
func (l *Local) Save(dir string) error {
	data, err := json.MarshalIndent(l, "", "  ")
	if err != nil {
		return err
	}
	return fsutil.WriteFileAtomic(filepath.Join(dir, localFile), append(data, '\n'), 0o600)
}

// WriteKeys keeps the authority and the member's own pair in dir (0700,
// keys 0600). Every member holds the authority's key, so that any of them
// admits a new member: a member already holds the whole cluster's store.
func WriteKeys(dir string, ca *CA, certPEM, keyPEM []byte) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("cluster dir: %w", err)
	}
	for _, f := range []struct {
		name string
		data []byte
		mode os.FileMode
	}{{caKey, ca.KeyPEM, 0o600}, {caCert, ca.CertPEM, 0o644}, {memberKey, keyPEM, 0o600}, {memberCert, certPEM, 0o644}} {
		if err := fsutil.WriteFileAtomic(filepath.Join(dir, f.name), f.data, f.mode); err != nil {
			return fmt.Errorf("write %s: %w", f.name, err)
		}
	}
	return nil
}

// LoadCA reads the authority kept in dir.
func LoadCA(dir string) (*CA, error) {
	certPEM, err := os.ReadFile(filepath.Join(dir, caCert))
	if err != nil {
		return nil, fmt.Errorf("cluster authority: %w", err)
	}
	keyPEM, err := os.ReadFile(filepath.Join(dir, caKey))
	if err != nil {
		return nil, fmt.Errorf("cluster authority: %w", err)
	}
	return ParseCA(certPEM, keyPEM)
}

// Leave removes what made this host a member: its keys, its etcd data and
// member.json (first, so that a crash midway leaves no half member).
func Leave(dir string) error {
	if err := os.Remove(filepath.Join(dir, localFile)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("leave the cluster: %w", err)
	}
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("leave the cluster: %w", err)
	}
	return nil
}
