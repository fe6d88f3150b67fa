package api

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// ClusterInit is the body of POST /1.0/cluster: this daemon founds a
// cluster.
type ClusterInit struct {
	// Name is the cluster's; Member this daemon's name in it (its host
	// name when empty).
	Name   string `json:"name,omitempty"`
	Member string `json:"member,omitempty"`
	// Address is where the members reach this one (etcd, the network
	// overlay): an address of this host's; empty for the --listen one.
	Address string `json:"address,omitempty"`
	// OfflineAfter and ReplicateEvery are Go durations (see ClusterSettings).
	OfflineAfter   string `json:"offlineAfter,omitempty"`
	ReplicateEvery string `json:"replicateEvery,omitempty"`
}

// ClusterTokenCreate is the body of POST /1.0/cluster/tokens.
type ClusterTokenCreate struct {
	Name      string `json:"name"`
	ExpiresIn string `json:"expiresIn,omitempty"`
}

// ClusterToken is what `cluster add` prints, encoded: all a new member
// needs to reach a member it knows by its certificate and be admitted
// once, as Name, until ExpiresAt.
type ClusterToken struct {
	Cluster     string    `json:"cluster"`
	Name        string    `json:"name"`
	Addresses   []string  `json:"addresses"`
	Fingerprint string    `json:"fingerprint"`
	Secret      string    `json:"secret"`
	ExpiresAt   time.Time `json:"expiresAt"`
}

// clusterTokenPrefix tells a join token from a trust token at a glance.
const clusterTokenPrefix = "pvjoin-"

// Encode is the token as one word.
func (t ClusterToken) Encode() string {
	data, _ := json.Marshal(t) // strings and a time: cannot fail
	return clusterTokenPrefix + base64.RawURLEncoding.EncodeToString(data)
}

// ParseClusterToken decodes what Encode made.
func ParseClusterToken(s string) (ClusterToken, error) {
	var t ClusterToken
	body, ok := strings.CutPrefix(strings.TrimSpace(s), clusterTokenPrefix)
	var err error
	if !ok {
		err = errors.New("it does not start with " + clusterTokenPrefix)
	}
	var data []byte
	if err == nil {
		data, err = base64.RawURLEncoding.DecodeString(body)
	}
	if err == nil {
		err = json.Unmarshal(data, &t)
	}
	if err == nil && (t.Secret == "" || t.Fingerprint == "" || len(t.Addresses) == 0 || t.Name == "" || t.Cluster == "") {
		err = errors.New("it lacks a cluster, name, secret, fingerprint or address")
	}
	if err != nil {
		return ClusterToken{}, fmt.Errorf("%w: token: not one that 'polyvisor cluster add' printed (%v); copy it whole", ErrInvalid, err)
	}
	return t, nil
}

// ClusterTokenIssued answers POST /1.0/cluster/tokens.
type ClusterTokenIssued struct {
	Name      string    `json:"name"`
	Token     string    `json:"token"`
	ExpiresAt time.Time `json:"expiresAt"`
}

// ClusterJoin is the body of POST /1.0/cluster/join: this daemon joins
// the cluster a token leads to.
type ClusterJoin struct {
	Token string `json:"token"`
	// Address is this host's address among the members; empty for the one
	// it reaches the token's member from.
	Address string `json:"address,omitempty"`
}

// ClusterAdmit is what a joining daemon asks of a member (POST
// /1.0/cluster/members), over HTTPS with its own certificate.
type ClusterAdmit struct {
	Secret  string `json:"secret"`
	Name    string `json:"name"`
	Address string `json:"address"`
	API     string `json:"api"`
}

// ClusterAdmission answers ClusterAdmit: the cluster's authority and the
// etcd membership to start with.
type ClusterAdmission struct {
	Cluster        string          `json:"cluster"`
	CACert         string          `json:"caCert"`
	CAKey          string          `json:"caKey"`
	InitialCluster string          `json:"initialCluster"`
	Endpoints      []string        `json:"endpoints"`
	Learner        bool            `json:"learner,omitempty"`
	Settings       json.RawMessage `json:"settings"`
}

// Cluster is GET /1.0/cluster: the members as this one sees them.
type Cluster struct {
	Name   string `json:"name"`
	Member string `json:"member"`
	// Writable is false when this member cannot reach a majority: it
	// refuses writes then, and Reason says why.
	Writable       bool            `json:"writable"`
	Reason         string          `json:"reason,omitempty"`
	OfflineAfter   string          `json:"offlineAfter"`
	ReplicateEvery string          `json:"replicateEvery"`
	Members        []ClusterMember `json:"members"`
}

// ClusterMember is one member in `cluster list`.
type ClusterMember struct {
	Name    string `json:"name"`
	Address string `json:"address"`
	API     string `json:"api"`
	// Role is voter or learner (etcd's); Leader marks the raft leader.
	Role   string `json:"role"`
	Leader bool   `json:"leader,omitempty"`
	// Health is online, or offline once it was silent past OfflineAfter.
	Health     string  `json:"health"`
	FreeMemory int64   `json:"freeMemory"`
	CPUs       int     `json:"cpus"`
	Load       float64 `json:"load"`
	Guests     int     `json:"guests"`
	// Classes are the guest types it runs: type → "ok" or why not.
	Classes map[string]string `json:"classes,omitempty"`
}

// Member health values.
const (
	MemberOnline  = "online"
	MemberOffline = "offline"
)

// ReplicaPromote is the body of POST /1.0/cluster/replicas/NAME/promote:
// the member keeping a guest's replica runs it as the guest.
type ReplicaPromote struct {
	// Start starts it (it ran on the lost member).
	Start bool `json:"start,omitempty"`
	// Reason is why, for the log.
	Reason string `json:"reason,omitempty"`
}
