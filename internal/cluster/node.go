package cluster

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// etcd's own ports, on the member's cluster address.
const (
	ClientPort = "2379"
	PeerPort   = "2380"
)

// PeerURL and ClientURL are a member's etcd URLs.
func PeerURL(addr string) string   { return "https://" + net.JoinHostPort(addr, PeerPort) }
func ClientURL(addr string) string { return "https://" + net.JoinHostPort(addr, ClientPort) }

// MaxLearners bounds the members that do not vote.
const MaxLearners = 32

// Node is a member's embedded etcd and its client of the cluster's store.
type Node struct {
	etcd   *embed.Etcd
	Client *clientv3.Client
	CA     *CA
	// ClientTLS is how this member speaks to any member's etcd.
	ClientTLS   *tls.Config
	closeClient sync.Once
}

// readyTimeout bounds the wait for etcd's start: a joining member
// catches up with the others' log before it is ready, and a member that
// starts cut off from the majority is never ready; the daemon serves
// meanwhile (refusing writes), and etcd goes on trying.
const readyTimeout = 15 * time.Second

// Start runs the member's etcd from dir (STATE/cluster) and connects to
// the cluster's store through it and endpoints (the other members' client
// URLs: a learner serves no linearizable read of its own).
func Start(ctx context.Context, dir string, l *Local, endpoints []string, log *slog.Logger) (*Node, error) {
	ca, err := LoadCA(dir)
	if err != nil {
		return nil, err
	}
	peer, err := url.Parse(PeerURL(l.Address))
	if err != nil {
		return nil, fmt.Errorf("cluster address %q: %w", l.Address, err)
	}
	client, _ := url.Parse(ClientURL(l.Address))
	cfg := embed.NewConfig()
	cfg.Name = l.Member
	cfg.Dir = filepath.Join(dir, etcdDir)
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{*peer}, []url.URL{*peer}
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{*client}, []url.URL{*client}
	cfg.InitialCluster = l.InitialCluster
	cfg.InitialClusterToken = "polyvisor-" + l.Cluster
	cfg.ClusterState = embed.ClusterStateFlagExisting
	if l.New {
		cfg.ClusterState = embed.ClusterStateFlagNew
	}
	cfg.ForceNewCluster = l.ForceNew
	// Every member joins as a learner first (see the daemon's admission),
	// and members beyond the voters stay learners.
	cfg.MaxLearners = MaxLearners
	for _, info := range []*transport.TLSInfo{&cfg.PeerTLSInfo, &cfg.ClientTLSInfo} {
		info.CertFile, info.KeyFile = filepath.Join(dir, memberCert), filepath.Join(dir, memberKey)
		info.TrustedCAFile, info.ClientCertAuth = filepath.Join(dir, caCert), true
	}
	// Old revisions are of no use to us: compact hourly.
	cfg.AutoCompactionMode, cfg.AutoCompactionRetention = "periodic", "1h"
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(etcdLogger(log))
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return nil, fmt.Errorf("start the cluster's etcd: %w", err)
	}
	select {
	case <-e.Server.ReadyNotify():
	case err := <-e.Err():
		e.Close()
		return nil, fmt.Errorf("the cluster's etcd: %w", err)
	case <-time.After(readyTimeout):
		// A member that cannot reach a quorum is not ready; it still
		// serves its guests and answers that it refuses writes.
		log.Warn("the cluster's etcd is not ready: no quorum reachable yet", "member", l.Member)
	case <-ctx.Done():
		e.Close()
		return nil, ctx.Err()
	}
	tlsCfg, err := clientTLS(dir, ca)
	if err != nil {
		e.Close()
		return nil, err
	}
	c, err := Connect(append([]string{client.String()}, endpoints...), tlsCfg)
	if err != nil {
		e.Close()
		return nil, err
	}
	return &Node{etcd: e, Client: c, CA: ca, ClientTLS: tlsCfg}, nil
}

// Connect opens a client of the store at endpoints.
func Connect(endpoints []string, tlsCfg *tls.Config) (*clientv3.Client, error) {
	c, err := clientv3.New(clientv3.Config{
		Endpoints:   dedupe(endpoints),
		TLS:         tlsCfg,
		DialTimeout: 5 * time.Second,
		Logger:      zap.NewNop(),
		// A partitioned member must hear "no quorum" soon, not hang.
		DialKeepAliveTime:    2 * time.Second,
		DialKeepAliveTimeout: 2 * time.Second,
	})
	if err != nil {
		return nil, fmt.Errorf("connect to the cluster's etcd: %w", err)
	}
	return c, nil
}

func dedupe(in []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, s := range in {
		if s != "" && !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}

// clientTLS is the member's certificate, verified by the authority both ways.
func clientTLS(dir string, ca *CA) (*tls.Config, error) {
	pair, err := tls.LoadX509KeyPair(filepath.Join(dir, memberCert), filepath.Join(dir, memberKey))
	if err != nil {
		return nil, fmt.Errorf("member key pair: %w", err)
	}
	return &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{pair}, RootCAs: ca.Pool()}, nil
}

// Close stops the client and the member's etcd.
func (n *Node) Close() {
	n.CloseClient()
	n.etcd.Close()
}

// CloseClient stops this member's use of the store; its etcd runs on.
func (n *Node) CloseClient() {
	n.closeClient.Do(func() { n.Client.Close() })
}

// Stopped is closed once the member's etcd has stopped: it does by
// itself once the member is removed from the cluster.
func (n *Node) Stopped() <-chan struct{} { return n.etcd.Server.StopNotify() }

// ID is the member's id in etcd.
func (n *Node) ID() uint64 { return uint64(n.etcd.Server.MemberID()) }

// IsLeader says whether this member's etcd leads the raft group.
func (n *Node) IsLeader() bool { return n.etcd.Server.Leader() == n.etcd.Server.MemberID() }

// etcdLogger sends etcd's errors into the daemon's log; its warnings
// (a line per slow request, per peer connection lost) stay out.
func etcdLogger(log *slog.Logger) *zap.Logger {
	core := zapcore.NewCore(zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig()), zapcore.AddSync(slogWriter{log}), zap.ErrorLevel)
	return zap.New(core)
}

type slogWriter struct{ log *slog.Logger }

func (w slogWriter) Write(p []byte) (int, error) {
	w.log.Warn("etcd", "line", strings.TrimSpace(string(p)))
	return len(p), nil
}
