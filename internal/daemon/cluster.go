package daemon

import (
	"cmp"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/polyvisor/polyvisor/internal/cluster"
	"github.com/polyvisor/polyvisor/internal/guest"
	"github.com/polyvisor/polyvisor/internal/network"
	"github.com/polyvisor/polyvisor/internal/pki"
	"github.com/polyvisor/polyvisor/internal/trust"
	"github.com/polyvisor/polyvisor/pkg/api"
	"github.com/polyvisor/polyvisor/pkg/client"
)

// A polyvisor cluster: members keep their shared state in an etcd each
// embeds (internal/cluster), speak to each other over the HTTPS API, and
// know each other there by the fingerprints recorded in etcd. See
// docs/cluster.md.

// clusterState is this daemon's membership while it is a member.
type clusterState struct {
	local *cluster.Local
	node  *cluster.Node
	reg   *cluster.Registry
	// stop ends the member's loops (heartbeat, leader, replication);
	// loops is their owner's wait.
	stop  context.CancelFunc
	loops sync.WaitGroup

	mu sync.Mutex
	// members are the records by name, refreshed by a watch;
	// byFingerprint finds the member a client certificate is of.
	members       map[string]cluster.Member
	byFingerprint map[string]string
	// writableAt caches the last quorum check that passed.
	writableAt time.Time
	// transports reach the other members' APIs; withReplica are this
	// member's HA guests copied elsewhere at the last round.
	transports  map[string]*http.Transport
	withReplica map[string]bool
	// incoming are the guests migrating here, paused until finished.
	incoming map[string]*guest.Definition
}

// member returns a member's record.
func (c *clusterState) member(name string) (cluster.Member, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	m, ok := c.members[name]
	return m, ok
}

// memberList is every member's record, by name.
func (c *clusterState) memberList() []cluster.Member {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]cluster.Member, 0, len(c.members))
	for _, m := range c.members {
		out = append(out, m)
	}
	slices.SortFunc(out, func(a, b cluster.Member) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// setMembers replaces the cached records.
func (c *clusterState) setMembers(ms []cluster.Member) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.members = map[string]cluster.Member{}
	c.byFingerprint = map[string]string{}
	for _, m := range ms {
		c.members[m.Name] = m
		c.byFingerprint[m.Fingerprint] = m.Name
	}
}

// memberByFingerprint is the member a client certificate is of.
func (d *Daemon) memberByFingerprint(fp string) (string, bool) {
	c := d.clusterNow()
	if c == nil {
		return "", false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	name, ok := c.byFingerprint[fp]
	return name, ok
}

// clusterNow is the membership, nil outside a cluster.
func (d *Daemon) clusterNow() *clusterState {
	d.clusterMu.Lock()
	defer d.clusterMu.Unlock()
	return d.cluster
}

// writable refuses a write while this member cannot reach a majority: a
// partitioned minority must not change what the majority may be
// changing, nor start a guest the majority may have restarted.
func (c *clusterState) writable(ctx context.Context) error {
	c.mu.Lock()
	fresh := time.Since(c.writableAt) < time.Second
	c.mu.Unlock()
	if fresh {
		return nil
	}
	if err := c.reg.Writable(ctx); err != nil {
		return fmt.Errorf("%w: refused: %v; writes are refused here so that no guest runs twice: reconnect this member to the others, or recover the cluster's quorum (docs/cluster.md)", api.ErrNotAvailable, err)
	}
	c.mu.Lock()
	c.writableAt = time.Now()
	c.mu.Unlock()
	return nil
}

// startCluster runs this daemon's membership if it has one.
func (d *Daemon) startCluster(ctx context.Context) error {
	l, err := cluster.LoadLocal(d.layout.ClusterDir())
	if err != nil || l == nil {
		return err
	}
	if d.remote == nil {
		return fmt.Errorf("this daemon is member %s of cluster %s, whose members speak HTTPS: start it with --listen ADDR:PORT", l.Member, l.Cluster)
	}
	if d.cfg.ForceNewCluster {
		l.ForceNew = true
		d.log.Warn("recovering the cluster: this member's etcd starts as its only member, keeping its data", "member", l.Member)
	}
	if err := d.runMember(ctx, l, nil); err != nil {
		return fmt.Errorf("cluster member %s: %w (a member removed from its cluster while it was down is one no more: remove %s to start this daemon outside it)", l.Member, err, d.layout.ClusterDir())
	}
	return nil
}

// runMember starts the member's etcd and its loops.
func (d *Daemon) runMember(ctx context.Context, l *cluster.Local, endpoints []string) error {
	node, err := cluster.Start(ctx, d.layout.ClusterDir(), l, endpoints, d.log)
	if err != nil {
		return err
	}
	loopCtx, stop := context.WithCancel(d.ctx)
	c := &clusterState{local: l, node: node, reg: cluster.NewRegistry(node.Client), stop: stop}
	if ms, err := c.reg.Members(ctx); err == nil {
		c.setMembers(ms)
	}
	d.clusterMu.Lock()
	d.cluster = c
	d.clusterMu.Unlock()
	c.loops.Go(func() { d.watchMembers(loopCtx, c) })
	c.loops.Go(func() { d.heartbeat(loopCtx, c) })
	c.loops.Go(func() { d.lead(loopCtx, c) })
	c.loops.Go(func() { d.replicate(loopCtx, c) })
	c.loops.Go(func() { d.rejoin(loopCtx, c) })
	c.loops.Go(func() { d.syncNetwork(loopCtx, c) })
	c.loops.Go(func() { d.publishState(loopCtx, c) })
	d.log.Info("cluster member running", "cluster", l.Cluster, "member", l.Member, "address", l.Address)
	return nil
}

// stopCluster ends the membership's loops and its etcd (the daemon's
// exit, or leaving).
func (d *Daemon) stopCluster() {
	d.clusterMu.Lock()
	c := d.cluster
	d.cluster = nil
	d.clusterMu.Unlock()
	if c == nil {
		return
	}
	c.stop()
	c.loops.Wait()
	c.node.Close()
}

// watchMembers keeps the members' records current.
func (d *Daemon) watchMembers(ctx context.Context, c *clusterState) {
	for ctx.Err() == nil {
		if ms, err := c.reg.Members(ctx); err == nil {
			c.setMembers(ms)
		}
		select {
		case <-ctx.Done():
		case <-c.reg.Client().Watch(clientv3.WithRequireLeader(ctx), "/polyvisor/members/", clientv3.WithPrefix()):
		case <-time.After(5 * time.Second):
		}
	}
}

// clusterAddress is where the members reach this host: asked, the
// --listen address, or the first of the host's it advertises.
func (d *Daemon) clusterAddress(asked string) (string, error) {
	if asked != "" {
		ip := net.ParseIP(asked)
		if ip == nil {
			return "", fmt.Errorf("%w: address %q: give an IP address of this host's", api.ErrInvalid, asked)
		}
		return ip.String(), nil
	}
	for _, a := range advertise(d.remote.addr) {
		host, _, _ := net.SplitHostPort(a)
		if ip := net.ParseIP(host); ip != nil && !ip.IsLoopback() {
			return host, nil
		}
	}
	return "", fmt.Errorf("%w: address: this host has no address but loopback for the members to reach it by; pass --address", api.ErrInvalid)
}

// notMember refuses what only a daemon outside a cluster does.
func (d *Daemon) notMember(what string) error {
	if d.remote == nil {
		return fmt.Errorf("%w: %s: the members of a cluster speak HTTPS: restart this daemon with --listen ADDR:PORT", api.ErrNotAvailable, what)
	}
	if c := d.clusterNow(); c != nil {
		return fmt.Errorf("%w: %s: this daemon is member %s of cluster %s already; 'polyvisor cluster remove %s' first", api.ErrConflict, what, c.local.Member, c.local.Cluster, c.local.Member)
	}
	return nil
}

// memberOnly is the membership, or why there is none.
func (d *Daemon) memberOnly() (*clusterState, error) {
	c := d.clusterNow()
	if c == nil {
		return nil, fmt.Errorf("%w: this daemon is in no cluster: 'polyvisor cluster init' founds one, 'polyvisor cluster join TOKEN' joins one", api.ErrNotAvailable)
	}
	return c, nil
}

// handleClusterInit founds a cluster of this daemon alone.
func (d *Daemon) handleClusterInit(r *http.Request) (any, error) {
	var req api.ClusterInit
	if err := readJSON(r, &req); err != nil {
		return nil, err
	}
	if err := d.notMember("cluster init"); err != nil {
		return nil, err
	}
	settings, err := clusterSettings(req)
	if err != nil {
		return nil, err
	}
	host, _ := os.Hostname()
	name := cmp.Or(req.Member, host)
	if err := guest.ValidateName(name); err != nil {
		return nil, fmt.Errorf("%w: member name %q: use lower-case letters, digits and '-' (--member NAME)", api.ErrInvalid, name)
	}
	clusterName := cmp.Or(req.Name, "polyvisor")
	if err := guest.ValidateName(clusterName); err != nil {
		return nil, fmt.Errorf("%w: cluster name %q: use lower-case letters, digits and '-'", api.ErrInvalid, clusterName)
	}
	addr, err := d.clusterAddress(req.Address)
	if err != nil {
		return nil, err
	}
	ca, err := cluster.NewCA(clusterName)
	if err != nil {
		return nil, err
	}
	l := &cluster.Local{Cluster: clusterName, Member: name, Address: addr, New: true, Settings: settings, JoinedAt: time.Now().UTC(),
		InitialCluster: name + "=" + cluster.PeerURL(addr)}
	if err := d.becomeMember(r.Context(), l, ca, nil); err != nil {
		return nil, err
	}
	c := d.clusterNow()
	if err := c.reg.PutSettings(r.Context(), settings); err != nil {
		return nil, err
	}
	if err := d.putSelf(r.Context(), c, 1, false); err != nil {
		return nil, err
	}
	// Later starts are of an existing cluster.
	l.New = false
	if err := l.Save(d.layout.ClusterDir()); err != nil {
		return nil, err
	}
	d.log.Info("founded a cluster", "cluster", clusterName, "member", name, "address", addr, "by", clientName(r))
	return d.clusterView(r.Context(), c), nil
}

// clusterSettings reads the timings asked, or the defaults.
func clusterSettings(req api.ClusterInit) (cluster.Settings, error) {
	s := cluster.Settings{OfflineAfter: cluster.Duration(cluster.DefaultOfflineAfter), ReplicateEvery: cluster.Duration(cluster.DefaultReplicateEvery)}
	for _, f := range []struct {
		name, value string
		to          *cluster.Duration
		least       time.Duration
	}{{"offline-after", req.OfflineAfter, &s.OfflineAfter, 3 * time.Second}, {"replicate-every", req.ReplicateEvery, &s.ReplicateEvery, time.Second}} {
		if f.value == "" {
			continue
		}
		v, err := time.ParseDuration(f.value)
		if err != nil || v < f.least {
			return s, fmt.Errorf("%w: --%s %q: give a Go duration of at least %s, such as 15s", api.ErrInvalid, f.name, f.value, f.least)
		}
		*f.to = cluster.Duration(v)
	}
	return s, nil
}

// becomeMember writes the membership and runs it; a failure leaves no
// trace of it.
func (d *Daemon) becomeMember(ctx context.Context, l *cluster.Local, ca *cluster.CA, endpoints []string) (err error) {
	dir := d.layout.ClusterDir()
	defer func() {
		if err != nil {
			cluster.Leave(dir)
		}
	}()
	certPEM, keyPEM, err := ca.Issue(l.Member, []net.IP{net.ParseIP(l.Address)})
	if err != nil {
		return err
	}
	if err := cluster.WriteKeys(dir, ca, certPEM, keyPEM); err != nil {
		return err
	}
	if err := l.Save(dir); err != nil {
		return err
	}
	return d.runMember(ctx, l, endpoints)
}

// putSelf records this member: how the others reach it.
func (d *Daemon) putSelf(ctx context.Context, c *clusterState, slot int, learner bool) error {
	if old, ok := c.member(c.local.Member); ok {
		slot, learner = old.Slot, old.Learner
	}
	m := cluster.Member{
		Name: c.local.Member, Address: c.local.Address, API: d.memberAPI(c.local.Address), Fingerprint: d.remote.fingerprint,
		EtcdID: c.node.ID(), Learner: learner, Slot: slot, JoinedAt: c.local.JoinedAt,
	}
	if err := c.reg.PutMember(ctx, m); err != nil {
		return err
	}
	ms, err := c.reg.Members(ctx)
	if err == nil {
		c.setMembers(ms)
	}
	return err
}

// memberAPI is where the members reach this daemon's API: its HTTPS port
// on its cluster address.
func (d *Daemon) memberAPI(addr string) string {
	return net.JoinHostPort(addr, fmt.Sprint(d.remote.addr.Port))
}

// handleClusterToken issues a join token for member name.
func (d *Daemon) handleClusterToken(r *http.Request) (any, error) {
	c, err := d.memberOnly()
	if err != nil {
		return nil, err
	}
	var req api.ClusterTokenCreate
	if err := readJSON(r, &req); err != nil {
		return nil, err
	}
	if err := guest.ValidateName(req.Name); err != nil {
		return nil, fmt.Errorf("%w: member name %q: use lower-case letters, digits and '-'", api.ErrInvalid, req.Name)
	}
	lifetime := time.Hour
	if req.ExpiresIn != "" {
		if lifetime, err = time.ParseDuration(req.ExpiresIn); err != nil || lifetime <= 0 {
			return nil, fmt.Errorf("%w: expiry %q: give a Go duration such as 30m or 24h", api.ErrInvalid, req.ExpiresIn)
		}
	}
	secret := trust.NewSecret()
	expires := time.Now().Add(lifetime).UTC()
	if err := c.reg.PutToken(r.Context(), req.Name, trust.HashSecret(secret), expires); err != nil {
		return nil, err
	}
	token := api.ClusterToken{Cluster: c.local.Cluster, Name: req.Name, Addresses: []string{d.memberAPI(c.local.Address)},
		Fingerprint: d.remote.fingerprint, Secret: secret, ExpiresAt: expires}
	d.log.Info("issued a cluster join token", "member", req.Name, "expires", expires.Format(time.RFC3339), "by", clientName(r))
	return api.ClusterTokenIssued{Name: req.Name, Token: token.Encode(), ExpiresAt: expires}, nil
}

// handleClusterJoin joins this daemon to the cluster a token leads to:
// the token's member admits it, then its etcd starts as one of theirs.
func (d *Daemon) handleClusterJoin(r *http.Request) (any, error) {
	var req api.ClusterJoin
	if err := readJSON(r, &req); err != nil {
		return nil, err
	}
	if err := d.notMember("cluster join"); err != nil {
		return nil, err
	}
	token, err := api.ParseClusterToken(req.Token)
	if err != nil {
		return nil, err
	}
	if time.Now().After(token.ExpiresAt) {
		return nil, fmt.Errorf("%w: the join token expired at %s: ask for a new one with 'polyvisor cluster add %s'", api.ErrForbidden, token.ExpiresAt.Format(time.RFC3339), token.Name)
	}
	var admission api.ClusterAdmission
	var addr string
	var lastErr error
	for _, at := range token.Addresses {
		addr = req.Address
		if addr == "" {
			// The address this host reaches the member from is one the
			// member can answer.
			if addr, lastErr = localAddressTowards(r.Context(), at); lastErr != nil {
				continue
			}
		}
		if _, lastErr = d.clusterAddress(addr); lastErr != nil {
			return nil, lastErr
		}
		peer := client.NewRemote(at, pki.PinnedConfig(d.remote.pair, token.Fingerprint))
		admission, lastErr = peer.ClusterAdmit(r.Context(), api.ClusterAdmit{Secret: token.Secret, Name: token.Name, Address: addr, API: d.memberAPI(addr)})
		if lastErr == nil || !errors.Is(lastErr, client.ErrUnreachable) {
			break
		}
	}
	if lastErr != nil {
		return nil, fmt.Errorf("join cluster %s: %w", token.Cluster, lastErr)
	}
	ca, err := cluster.ParseCA([]byte(admission.CACert), []byte(admission.CAKey))
	if err != nil {
		return nil, err
	}
	var settings cluster.Settings
	if err := json.Unmarshal(admission.Settings, &settings); err != nil {
		return nil, fmt.Errorf("join cluster %s: its settings: %w", token.Cluster, err)
	}
	l := &cluster.Local{Cluster: admission.Cluster, Member: token.Name, Address: addr, InitialCluster: admission.InitialCluster,
		Settings: settings, JoinedAt: time.Now().UTC()}
	if err := d.becomeMember(r.Context(), l, ca, admission.Endpoints); err != nil {
		return nil, fmt.Errorf("join cluster %s: %w", token.Cluster, err)
	}
	c := d.clusterNow()
	if err := d.putSelf(r.Context(), c, 0, admission.Learner); err != nil {
		return nil, fmt.Errorf("join cluster %s: %w", token.Cluster, err)
	}
	d.log.Info("joined a cluster", "cluster", l.Cluster, "member", l.Member, "address", addr, "learner", admission.Learner)
	return d.clusterView(r.Context(), c), nil
}

// localAddressTowards is this host's address on the route to a member.
func localAddressTowards(ctx context.Context, hostport string) (string, error) {
	var dialer net.Dialer
	conn, err := dialer.DialContext(ctx, "udp", hostport)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	return conn.LocalAddr().(*net.UDPAddr).IP.String(), nil
}

// handleClusterAdmit admits a joining daemon for its token's secret: its
// record, then its etcd membership (in that order: adding a voter to a
// one-member cluster stops its writes until the new one runs).
func (d *Daemon) handleClusterAdmit(r *http.Request) (any, error) {
	c, err := d.memberOnly()
	if err != nil {
		return nil, err
	}
	if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
		return nil, fmt.Errorf("%w: a member is admitted over HTTPS with its daemon's certificate: 'polyvisor cluster join TOKEN' on it does it", api.ErrInvalid)
	}
	var req api.ClusterAdmit
	if err := readJSON(r, &req); err != nil {
		return nil, err
	}
	if net.ParseIP(req.Address) == nil {
		return nil, fmt.Errorf("%w: address %q: not an IP address", api.ErrInvalid, req.Address)
	}
	ctx := r.Context()
	if err := c.reg.RedeemToken(ctx, req.Name, trust.HashSecret(req.Secret), time.Now()); err != nil {
		d.log.Warn("refused a cluster join", "member", req.Name, "from", r.RemoteAddr, "err", err)
		return nil, err
	}
	slot := 1
	for _, m := range c.memberList() {
		slot = max(slot, m.Slot+1)
	}
	// Every member joins as a learner, which counts for no quorum while
	// it catches up; the leader promotes learners while fewer than
	// three (five, from five members) vote (promoteLearners). A voter added at once would stop
	// a one-member cluster's writes until it ran.
	learner := true
	rec := cluster.Member{Name: req.Name, Address: req.Address, API: req.API, Fingerprint: pki.Fingerprint(r.TLS.PeerCertificates[0]),
		Learner: learner, Slot: slot, JoinedAt: time.Now().UTC()}
	if err := c.reg.PutMember(ctx, rec); err != nil {
		return nil, err
	}
	peerURL := cluster.PeerURL(req.Address)
	added, err := addEtcdMember(ctx, c.reg.Client(), peerURL, learner)
	if err != nil {
		c.reg.DeleteMember(context.WithoutCancel(ctx), req.Name)
		return nil, fmt.Errorf("add %s to the cluster's etcd: %w", req.Name, err)
	}
	var initial, endpoints []string
	for _, m := range added.Members {
		name := m.Name
		if m.ID == added.Member.ID {
			name = req.Name
		}
		for _, u := range m.PeerURLs {
			initial = append(initial, name+"="+u)
		}
		endpoints = append(endpoints, m.ClientURLs...)
	}
	settings, _ := json.Marshal(c.local.Settings)
	d.log.Info("admitted a cluster member", "member", req.Name, "address", req.Address, "learner", learner, "from", r.RemoteAddr)
	return api.ClusterAdmission{Cluster: c.local.Cluster, CACert: string(c.node.CA.CertPEM), CAKey: string(c.node.CA.KeyPEM),
		InitialCluster: strings.Join(initial, ","), Endpoints: endpoints, Learner: learner, Settings: settings}, nil
}

// handleClusterList shows the members as this one sees them.
func (d *Daemon) handleClusterList(r *http.Request) (any, error) {
	c, err := d.memberOnly()
	if err != nil {
		return nil, err
	}
	return d.clusterView(r.Context(), c), nil
}

// clusterView is `cluster list`: records, liveness, roles and load.
func (d *Daemon) clusterView(ctx context.Context, c *clusterState) api.Cluster {
	view := api.Cluster{Name: c.local.Cluster, Member: c.local.Member, Writable: true,
		OfflineAfter: time.Duration(c.local.Settings.OfflineAfter).String(), ReplicateEvery: time.Duration(c.local.Settings.ReplicateEvery).String(),
		Members: []api.ClusterMember{}}
	if err := c.writable(ctx); err != nil {
		view.Writable, view.Reason = false, err.Error()
	}
	if ms, err := c.reg.Members(ctx); err == nil {
		c.setMembers(ms)
	}
	alive, _ := c.reg.Alive(ctx)
	placements, _ := c.reg.Guests(ctx)
	guests := map[string]int{}
	for _, p := range placements {
		guests[p.Member]++
	}
	roles := map[uint64]string{}
	var leader uint64
	if view.Writable {
		lctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		if resp, err := c.reg.Client().MemberList(lctx); err == nil {
			for _, m := range resp.Members {
				roles[m.ID] = "voter"
				if m.IsLearner {
					roles[m.ID] = "learner"
				}
			}
		}
		if st, err := c.reg.Client().Status(lctx, cluster.ClientURL(c.local.Address)); err == nil {
			leader = st.Leader
		}
		cancel()
	}
	for _, m := range c.memberList() {
		cm := api.ClusterMember{Name: m.Name, Address: m.Address, API: m.API, Health: api.MemberOffline, Guests: guests[m.Name], Leader: m.EtcdID != 0 && m.EtcdID == leader}
		cm.Role = roles[m.EtcdID]
		if cm.Role == "" {
			cm.Role = map[bool]string{true: "learner", false: "voter"}[m.Learner]
		}
		if s, ok := alive[m.Name]; ok {
			cm.Health, cm.FreeMemory, cm.CPUs, cm.Load, cm.Classes = api.MemberOnline, s.FreeMemory, s.CPUs, s.Load, s.Classes
		}
		// Cut off from the others, this member still knows it lives.
		if m.Name == c.local.Member && !view.Writable {
			cm.Health = api.MemberOnline
		}
		view.Members = append(view.Members, cm)
	}
	return view
}

// handleClusterRemove removes a member: from etcd, then its records; the
// member itself, when it answers, leaves too. Its guests' records go
// only with force.
func (d *Daemon) handleClusterRemove(r *http.Request) (any, error) {
	c, err := d.memberOnly()
	if err != nil {
		return nil, err
	}
	name := r.PathValue("member")
	force := r.URL.Query().Get("force") == "true"
	ctx := r.Context()
	m, ok := c.member(name)
	if !ok {
		return nil, fmt.Errorf("%w: cluster member %s: 'polyvisor cluster list' shows the members", api.ErrNotFound, name)
	}
	placements, err := c.reg.Guests(ctx)
	if err != nil {
		return nil, err
	}
	var its []string
	for _, p := range placements {
		if p.Member == name {
			its = append(its, p.Name)
		}
	}
	if len(its) > 0 && !force {
		return nil, fmt.Errorf("%w: member %s still runs %d guest(s) (%s): move or delete them first, or --force to drop them from the cluster", api.ErrConflict, name, len(its), strings.Join(its, ", "))
	}
	if len(c.memberList()) == 1 {
		// The last member dissolves the cluster.
		d.leaveCluster(ctx)
		return nil, nil
	}
	for _, g := range its {
		c.reg.ReleaseGuest(ctx, g, name)
	}
	if err := c.reg.DeleteMember(ctx, name); err != nil {
		return nil, err
	}
	if err := c.reg.DropState(ctx, name); err != nil {
		return nil, err
	}
	d.log.Info("removed a cluster member", "member", name, "force", force, "by", clientName(r))
	// A member's etcd stops by itself once it is removed; whatever still
	// asks it then (its own loops) finds its store closed under it, which
	// etcd does not survive. So the member first stops asking (detach),
	// then it is removed, then its etcd, stopped, is closed.
	if name == c.local.Member {
		var others []string
		for _, o := range c.memberList() {
			if o.Name != name {
				others = append(others, cluster.ClientURL(o.Address))
			}
		}
		d.detach(c)
		err := removeEtcdMember(ctx, others, c.node, m.EtcdID)
		go d.finishLeave(c)
		return nil, err
	}
	if err := d.memberClient(m).ClusterLeave(ctx); err != nil {
		// One that does not answer is removed all the same; its daemon
		// then fails to start its etcd, saying it was removed.
		d.log.Warn("the removed member was not told to leave", "member", name, "err", err)
	}
	if m.EtcdID != 0 {
		if _, err := c.reg.Client().MemberRemove(ctx, m.EtcdID); err != nil && !strings.Contains(err.Error(), "member not found") {
			return nil, fmt.Errorf("remove %s from the cluster's etcd: %w", name, err)
		}
	}
	return nil, nil
}

// removeEtcdMember removes member id through the others' etcd.
func removeEtcdMember(ctx context.Context, endpoints []string, node *cluster.Node, id uint64) error {
	client, err := cluster.Connect(endpoints, node.ClientTLS)
	if err != nil {
		return err
	}
	defer client.Close()
	if _, err := client.MemberRemove(ctx, id); err != nil && !strings.Contains(err.Error(), "member not found") {
		return fmt.Errorf("remove this member from the cluster's etcd: %w", err)
	}
	return nil
}

// handleClusterLeave is a member's word to this one that it is being
// removed: it stops asking its etcd (detach), answers, and forgets the
// cluster once its etcd has stopped.
func (d *Daemon) handleClusterLeave(r *http.Request) (any, error) {
	c, err := d.memberOnly()
	if err != nil {
		return nil, err
	}
	if _, ok := d.fromMember(r); !ok {
		return nil, fmt.Errorf("%w: only a cluster member may tell this one to leave: 'polyvisor cluster remove NAME'", api.ErrForbidden)
	}
	d.detach(c)
	go d.finishLeave(c)
	return nil, nil
}

// leaveCluster stops the membership and forgets it; the guests stay, as
// this daemon's own.
func (d *Daemon) leaveCluster(ctx context.Context) {
	d.stopCluster()
	d.forget(ctx)
}

// detach ends the membership's loops and this member's use of its etcd,
// which runs on until it is removed.
func (d *Daemon) detach(c *clusterState) {
	d.clusterMu.Lock()
	if d.cluster == c {
		d.cluster = nil
	}
	d.clusterMu.Unlock()
	c.stop()
	c.loops.Wait()
	c.node.CloseClient()
}

// finishLeave waits for a detached member's etcd to stop (it does once
// it is removed; a minute at most), closes it and forgets the cluster.
func (d *Daemon) finishLeave(c *clusterState) {
	select {
	case <-c.node.Stopped():
	case <-time.After(time.Minute):
		d.log.Warn("this member's etcd did not stop by itself after its removal; closing it")
	}
	c.node.Close()
	d.forget(context.Background())
}

// forget removes what made this host a member.
func (d *Daemon) forget(ctx context.Context) {
	if err := cluster.Leave(d.layout.ClusterDir()); err != nil {
		d.log.Error("leave the cluster", "err", err)
	}
	if err := d.networks.ClearCluster(ctx, network.DefaultName); err != nil && !errors.Is(err, api.ErrNotFound) {
		d.log.Warn("take the default network out of the cluster", "err", err)
	}
	d.log.Info("left the cluster")
}

// memberClient talks to another member's API, pinned to its certificate
// and presenting this daemon's.
func (d *Daemon) memberClient(m cluster.Member) *client.Client {
	return client.NewRemote(m.API, d.memberTLS(m))
}

func (d *Daemon) memberTLS(m cluster.Member) *tls.Config {
	return pki.PinnedConfig(d.remote.pair, m.Fingerprint)
}

// fromMember says which member sent a request, if one did.
func (d *Daemon) fromMember(r *http.Request) (string, bool) {
	if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
		return "", false
	}
	return d.memberByFingerprint(pki.Fingerprint(r.TLS.PeerCertificates[0]))
}

// addEtcdMember adds a member to etcd, waiting out its "unhealthy
// cluster" refusal: etcd adds a voter only once a quorum has been
// connected for five seconds, which a member that just joined has not.
func addEtcdMember(ctx context.Context, c *clientv3.Client, peerURL string, learner bool) (*clientv3.MemberAddResponse, error) {
	deadline := time.Now().Add(30 * time.Second)
	for {
		var added *clientv3.MemberAddResponse
		var err error
		if learner {
			added, err = c.MemberAddAsLearner(ctx, []string{peerURL})
		} else {
			added, err = c.MemberAdd(ctx, []string{peerURL})
		}
		busy := err != nil && (strings.Contains(err.Error(), "unhealthy cluster") || strings.Contains(err.Error(), "too many learner"))
		if !busy || time.Now().After(deadline) {
			return added, err
		}
		sleepCtx(ctx, time.Second)
	}
}
