package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/polyvisor/polyvisor/pkg/api"
)

// The store's keys. Every record is JSON.
const (
	prefix        = "/polyvisor/"
	membersPrefix = prefix + "members/"
	alivePrefix   = prefix + "alive/"
	guestsPrefix  = prefix + "guests/"
	tokensPrefix  = prefix + "tokens/"
	settingsKey   = prefix + "settings"
	networkKey    = prefix + "network"
	// ElectionPrefix is where members campaign to be the one that acts on
	// failures (etcd's concurrency.Election).
	ElectionPrefix = prefix + "leader"
)

// Member is one member's record: how to reach it.
type Member struct {
	Name string `json:"name"`
	// Address is its cluster address (etcd, overlay); API where its
	// daemon serves HTTPS, Fingerprint that server's certificate's.
	Address     string    `json:"address"`
	API         string    `json:"api"`
	Fingerprint string    `json:"fingerprint"`
	EtcdID      uint64    `json:"etcdID"`
	Learner     bool      `json:"learner,omitempty"`
	Slot        int       `json:"slot"`
	JoinedAt    time.Time `json:"joinedAt"`
}

// Status is what a live member says of itself, under its lease: the key
// goes when the member stops renewing it.
type Status struct {
	FreeMemory int64   `json:"freeMemory"`
	CPUs       int     `json:"cpus"`
	Load       float64 `json:"load"`
	// Classes are the guest types this member can run: type → "ok" or
	// why not (host check's verdicts).
	Classes map[string]string `json:"classes"`
	At      time.Time         `json:"at"`
}

// Placement is where a guest runs, cluster-wide: its name is taken
// cluster-wide by it.
type Placement struct {
	Name   string `json:"name"`
	Member string `json:"member"`
	Type   string `json:"type"`
	// HA guests restart on Replica from their last copy when Member is
	// lost.
	HA           bool      `json:"ha,omitempty"`
	Spread       string    `json:"spread,omitempty"`
	Replica      string    `json:"replica,omitempty"`
	ReplicatedAt time.Time `json:"replicatedAt,omitzero"`
	// Running says whether it ran when it was last copied: a failover
	// starts it then.
	Running bool `json:"running,omitempty"`
	// Lost says why a guest of a lost member runs nowhere.
	Lost string `json:"lost,omitempty"`
	// Address is its address on the cluster's network, for DNS.
	Address string `json:"address,omitempty"`
}

// Network is the cluster-wide default network: one subnet, one VXLAN id.
type Network struct {
	Subnet string `json:"subnet"`
	VNI    uint32 `json:"vni"`
}

// Registry reads and writes the records.
type Registry struct{ c *clientv3.Client }

// NewRegistry works on the store c connects to.
func NewRegistry(c *clientv3.Client) *Registry { return &Registry{c: c} }

// Client is the store's client.
func (r *Registry) Client() *clientv3.Client { return r.c }

// ErrNoQuorum is a store that cannot answer for the cluster: this member
// cannot reach a majority of the voters.
var ErrNoQuorum = errors.New("this member cannot reach a majority of the cluster's members")

// quorumTimeout bounds a linearizable read: past it the member is taken
// to be cut off from the majority.
const quorumTimeout = 3 * time.Second

// Writable checks that the store answers for the cluster now (a
// linearizable read goes through the raft leader and a quorum).
func (r *Registry) Writable(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, quorumTimeout)
	defer cancel()
	if _, err := r.c.Get(ctx, settingsKey); err != nil {
		return fmt.Errorf("%w (%v)", ErrNoQuorum, err)
	}
	return nil
}

func (r *Registry) put(ctx context.Context, key string, v any, opts ...clientv3.OpOption) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, quorumTimeout)
	defer cancel()
	if _, err := r.c.Put(ctx, key, string(data), opts...); err != nil {
		return storeError(err)
	}
	return nil
}

// storeError names a timeout as the quorum's loss.
func storeError(err error) error {
	if errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("%w: %w", api.ErrNotAvailable, ErrNoQuorum)
	}
	return fmt.Errorf("the cluster's store: %w", err)
}

func list[T any](ctx context.Context, r *Registry, keyPrefix string, opts ...clientv3.OpOption) ([]T, error) {
	ctx, cancel := context.WithTimeout(ctx, quorumTimeout)
	defer cancel()
	resp, err := r.c.Get(ctx, keyPrefix, append([]clientv3.OpOption{clientv3.WithPrefix()}, opts...)...)
	if err != nil {
		return nil, storeError(err)
	}
	out := make([]T, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		var v T
		if err := json.Unmarshal(kv.Value, &v); err != nil {
			return nil, fmt.Errorf("record %s: %w", kv.Key, err)
		}
		out = append(out, v)
	}
	return out, nil
}

// PutSettings and Settings: the cluster's timings.
func (r *Registry) PutSettings(ctx context.Context, s Settings) error {
	return r.put(ctx, settingsKey, s)
}

// PutNetwork records the cluster's network once: the first member's wins.
func (r *Registry) PutNetwork(ctx context.Context, n Network) (Network, error) {
	data, _ := json.Marshal(n)
	ctx, cancel := context.WithTimeout(ctx, quorumTimeout)
	defer cancel()
	resp, err := r.c.Txn(ctx).If(clientv3.Compare(clientv3.CreateRevision(networkKey), "=", 0)).
		Then(clientv3.OpPut(networkKey, string(data))).Else(clientv3.OpGet(networkKey)).Commit()
	if err != nil {
		return Network{}, storeError(err)
	}
	if resp.Succeeded {
		return n, nil
	}
	var have Network
	err = json.Unmarshal(resp.Responses[0].GetResponseRange().Kvs[0].Value, &have)
	return have, err
}

// Members lists the members' records.
func (r *Registry) Members(ctx context.Context) ([]Member, error) {
	return list[Member](ctx, r, membersPrefix, clientv3.WithSerializable())
}

// PutMember records a member.
func (r *Registry) PutMember(ctx context.Context, m Member) error {
	return r.put(ctx, membersPrefix+m.Name, m)
}

// DeleteMember forgets a member's record and its status.
func (r *Registry) DeleteMember(ctx context.Context, name string) error {
	ctx, cancel := context.WithTimeout(ctx, quorumTimeout)
	defer cancel()
	_, err := r.c.Txn(ctx).Then(clientv3.OpDelete(membersPrefix+name), clientv3.OpDelete(alivePrefix+name)).Commit()
	if err != nil {
		return storeError(err)
	}
	return nil
}

// Alive is every live member's status, by name.
func (r *Registry) Alive(ctx context.Context) (map[string]Status, error) {
	ctx, cancel := context.WithTimeout(ctx, quorumTimeout)
	defer cancel()
	resp, err := r.c.Get(ctx, alivePrefix, clientv3.WithPrefix(), clientv3.WithSerializable())
	if err != nil {
		return nil, storeError(err)
	}
	out := map[string]Status{}
	for _, kv := range resp.Kvs {
		var s Status
		if json.Unmarshal(kv.Value, &s) == nil {
			out[strings.TrimPrefix(string(kv.Key), alivePrefix)] = s
		}
	}
	return out, nil
}

// PutStatus records a member's status under its lease.
func (r *Registry) PutStatus(ctx context.Context, member string, s Status, lease clientv3.LeaseID) error {
	return r.put(ctx, alivePrefix+member, s, clientv3.WithLease(lease))
}

// MemberOfAliveKey names the member an alive key is of.
func MemberOfAliveKey(key []byte) (string, bool) {
	name, ok := strings.CutPrefix(string(key), alivePrefix)
	return name, ok
}

// AlivePrefix is what a watch of members' liveness watches.
const AlivePrefix = alivePrefix

// Guests lists every guest's placement.
func (r *Registry) Guests(ctx context.Context) ([]Placement, error) {
	return list[Placement](ctx, r, guestsPrefix)
}

// Guest is one guest's placement; found false when no member has it.
func (r *Registry) Guest(ctx context.Context, name string) (p Placement, found bool, err error) {
	p, _, found, err = r.guest(ctx, name)
	return p, found, err
}

// guest is a placement and the revision it was last written at.
func (r *Registry) guest(ctx context.Context, name string) (p Placement, rev int64, found bool, err error) {
	ctx, cancel := context.WithTimeout(ctx, quorumTimeout)
	defer cancel()
	resp, err := r.c.Get(ctx, guestKey(name))
	if err != nil {
		return p, 0, false, storeError(err)
	}
	if len(resp.Kvs) == 0 {
		return p, 0, false, nil
	}
	err = json.Unmarshal(resp.Kvs[0].Value, &p)
	return p, resp.Kvs[0].ModRevision, err == nil, err
}

// guestKey ends in a NUL so that one guest's name never prefixes
// another's key.
func guestKey(name string) string { return guestsPrefix + name + "\x00" }

// ClaimGuest takes a name cluster-wide for p: refused when another
// member has a guest of that name.
func (r *Registry) ClaimGuest(ctx context.Context, p Placement) error {
	data, _ := json.Marshal(p)
	key := guestKey(p.Name)
	tctx, cancel := context.WithTimeout(ctx, quorumTimeout)
	defer cancel()
	resp, err := r.c.Txn(tctx).If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).
		Then(clientv3.OpPut(key, string(data))).Else(clientv3.OpGet(key)).Commit()
	if err != nil {
		return storeError(err)
	}
	if resp.Succeeded {
		return nil
	}
	var have Placement
	json.Unmarshal(resp.Responses[0].GetResponseRange().Kvs[0].Value, &have)
	if have.Member == p.Member {
		return nil // its own already: a restart, a replica run here
	}
	return fmt.Errorf("%w: guest %s: the name is taken on cluster member %s; pick another name", api.ErrConflict, p.Name, have.Member)
}

// UpdateGuest rewrites p's record when it still names from as its member:
// a failover or a move meanwhile wins (compare-and-swap on the record's
// revision).
func (r *Registry) UpdateGuest(ctx context.Context, p Placement, from string) error {
	have, rev, found, err := r.guest(ctx, p.Name)
	if err != nil {
		return err
	}
	if !found || have.Member != from {
		return fmt.Errorf("%w: guest %s is no longer on member %s", api.ErrConflict, p.Name, from)
	}
	data, _ := json.Marshal(p)
	key := guestKey(p.Name)
	ctx, cancel := context.WithTimeout(ctx, quorumTimeout)
	defer cancel()
	resp, err := r.c.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(key), "=", rev)).
		Then(clientv3.OpPut(key, string(data))).Commit()
	if err != nil {
		return storeError(err)
	}
	if !resp.Succeeded {
		return fmt.Errorf("%w: guest %s changed meanwhile on another member; try again", api.ErrConflict, p.Name)
	}
	return nil
}

// ReleaseGuest drops a guest's record if member still holds it.
func (r *Registry) ReleaseGuest(ctx context.Context, name, member string) error {
	have, rev, found, err := r.guest(ctx, name)
	if err != nil || !found || have.Member != member {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, quorumTimeout)
	defer cancel()
	key := guestKey(name)
	if _, err := r.c.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(key), "=", rev)).Then(clientv3.OpDelete(key)).Commit(); err != nil {
		return storeError(err)
	}
	return nil
}

// tokenRecord is a join token as the store keeps it: its secret hashed.
type tokenRecord struct {
	Hash      string    `json:"hash"`
	ExpiresAt time.Time `json:"expiresAt"`
}

// PutToken records a join token for member name.
func (r *Registry) PutToken(ctx context.Context, name, secretHash string, expires time.Time) error {
	ctx, cancel := context.WithTimeout(ctx, quorumTimeout)
	defer cancel()
	data, _ := json.Marshal(tokenRecord{Hash: secretHash, ExpiresAt: expires})
	key := tokensPrefix + name
	resp, err := r.c.Txn(ctx).If(clientv3.Compare(clientv3.CreateRevision(membersPrefix+name), "=", 0)).
		Then(clientv3.OpPut(key, string(data))).Commit()
	if err != nil {
		return storeError(err)
	}
	if !resp.Succeeded {
		return fmt.Errorf("%w: %s is a member already: pick another name, or remove it first ('polyvisor cluster remove %s')", api.ErrConflict, name, name)
	}
	return nil
}

// RedeemToken uses up the token of member name whose secret hashes to
// secretHash: once only, and not after it expired.
func (r *Registry) RedeemToken(ctx context.Context, name, secretHash string, now time.Time) error {
	refused := fmt.Errorf("%w: the join token is not valid: it was used already, revoked, expired or never issued; ask for a new one with 'polyvisor cluster add %s'", api.ErrForbidden, name)
	ctx, cancel := context.WithTimeout(ctx, quorumTimeout)
	defer cancel()
	key := tokensPrefix + name
	resp, err := r.c.Get(ctx, key)
	if err != nil {
		return storeError(err)
	}
	if len(resp.Kvs) == 0 {
		return refused
	}
	var rec tokenRecord
	if json.Unmarshal(resp.Kvs[0].Value, &rec) != nil || rec.Hash != secretHash || now.After(rec.ExpiresAt) {
		return refused
	}
	del, err := r.c.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(key), "=", resp.Kvs[0].ModRevision)).Then(clientv3.OpDelete(key)).Commit()
	if err != nil {
		return storeError(err)
	}
	if !del.Succeeded {
		return refused // redeemed by another join meanwhile
	}
	return nil
}

// A member's state, as it publishes it: its guests' definitions
// (guest.yaml), its templates and its networks (JSON), under
// /polyvisor/state/MEMBER/{guests,templates,networks}/NAME. Its own disk
// keeps what it runs its guests with; this is the cluster's view of it.
const statePrefix = prefix + "state/"

// StateKey is the key of one item of a member's state.
func StateKey(member, kind, name string) string {
	return statePrefix + member + "/" + kind + "/" + name
}

// txnOps bounds one transaction: etcd takes 128 operations at most.
const txnOps = 100

// PublishState writes puts and deletes keys, in transactions of at most
// txnOps operations.
func (r *Registry) PublishState(ctx context.Context, puts map[string]string, deletes []string) error {
	var ops []clientv3.Op
	for k, v := range puts {
		ops = append(ops, clientv3.OpPut(k, v))
	}
	for _, k := range deletes {
		ops = append(ops, clientv3.OpDelete(k))
	}
	for len(ops) > 0 {
		n := min(len(ops), txnOps)
		tctx, cancel := context.WithTimeout(ctx, quorumTimeout)
		_, err := r.c.Txn(tctx).Then(ops[:n]...).Commit()
		cancel()
		if err != nil {
			return storeError(err)
		}
		ops = ops[n:]
	}
	return nil
}

// State lists the state items of kind every member published: member →
// name → value.
func (r *Registry) State(ctx context.Context, kind string) (map[string]map[string][]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, quorumTimeout)
	defer cancel()
	resp, err := r.c.Get(ctx, statePrefix, clientv3.WithPrefix(), clientv3.WithSerializable())
	if err != nil {
		return nil, storeError(err)
	}
	out := map[string]map[string][]byte{}
	for _, kv := range resp.Kvs {
		member, rest, _ := strings.Cut(strings.TrimPrefix(string(kv.Key), statePrefix), "/")
		k, name, _ := strings.Cut(rest, "/")
		if k != kind {
			continue
		}
		if out[member] == nil {
			out[member] = map[string][]byte{}
		}
		out[member][name] = kv.Value
	}
	return out, nil
}

// DropState deletes everything a member published (its removal).
func (r *Registry) DropState(ctx context.Context, member string) error {
	ctx, cancel := context.WithTimeout(ctx, quorumTimeout)
	defer cancel()
	if _, err := r.c.Delete(ctx, statePrefix+member+"/", clientv3.WithPrefix()); err != nil {
		return storeError(err)
	}
	return nil
}
