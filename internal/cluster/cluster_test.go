package cluster

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"testing"
	"time"

	"github.com/polyvisor/polyvisor/pkg/api"
)

func TestTheAuthorityVerifiesOnlyWhatItIssued(t *testing.T) {
	ours, err := NewCA("ours")
	if err != nil {
		t.Fatal(err)
	}
	theirs, err := NewCA("theirs")
	if err != nil {
		t.Fatal(err)
	}
	certPEM, _, err := ours.Issue("a", []net.IP{net.ParseIP("192.0.2.1")})
	if err != nil {
		t.Fatal(err)
	}
	foreignPEM, _, err := theirs.Issue("a", nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := ours.Verify(parse(t, certPEM)); err != nil {
		t.Errorf("our member's certificate: %v", err)
	}
	if err := ours.Verify(parse(t, foreignPEM)); err == nil {
		t.Errorf("another cluster's member's certificate verified")
	}
	again, err := ParseCA(ours.CertPEM, ours.KeyPEM)
	if err != nil || again.Verify(parse(t, certPEM)) != nil {
		t.Errorf("the authority loaded again: %v", err)
	}
	if _, err := ParseCA(certPEM, ours.KeyPEM); err == nil {
		t.Errorf("a member's certificate was taken for an authority")
	}
}

func parse(t *testing.T, certPEM []byte) *x509.Certificate {
	t.Helper()
	block, _ := pem.Decode(certPEM)
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

// startOne runs a cluster of one on a loopback address of its own.
func startOne(t *testing.T) *Registry {
	t.Helper()
	dir := t.TempDir()
	addr := fmt.Sprintf("127.%d.%d.%d", 100+rand.IntN(100), rand.IntN(250), 1+rand.IntN(250))
	ca, err := NewCA("test")
	if err != nil {
		t.Fatal(err)
	}
	certPEM, keyPEM, err := ca.Issue("a", []net.IP{net.ParseIP(addr)})
	if err != nil {
		t.Fatal(err)
	}
	if err := WriteKeys(dir, ca, certPEM, keyPEM); err != nil {
		t.Fatal(err)
	}
	l := &Local{Cluster: "test", Member: "a", Address: addr, New: true, InitialCluster: "a=" + PeerURL(addr)}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	node, err := Start(ctx, dir, l, nil, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(node.Close)
	return NewRegistry(node.Client)
}

func TestANameIsTakenOnceClusterWide(t *testing.T) {
	r := startOne(t)
	ctx := context.Background()
	if err := r.ClaimGuest(ctx, Placement{Name: "web", Member: "a", Type: "container"}); err != nil {
		t.Fatal(err)
	}
	if err := r.ClaimGuest(ctx, Placement{Name: "web", Member: "a"}); err != nil {
		t.Errorf("its own member claiming it again: %v", err)
	}
	err := r.ClaimGuest(ctx, Placement{Name: "web", Member: "b"})
	if !errors.Is(err, api.ErrConflict) {
		t.Errorf("another member claiming a taken name: %v", err)
	}
	// A name that prefixes another is another name.
	if err := r.ClaimGuest(ctx, Placement{Name: "web1", Member: "b"}); err != nil {
		t.Errorf("web1 beside web: %v", err)
	}
	// A move changes the record only while it names the member read.
	p, _, _ := r.Guest(ctx, "web")
	p.Member = "b"
	if err := r.UpdateGuest(ctx, p, "a"); err != nil {
		t.Fatal(err)
	}
	p.Member = "c"
	if err := r.UpdateGuest(ctx, p, "a"); !errors.Is(err, api.ErrConflict) {
		t.Errorf("an update from a member that no longer has it: %v", err)
	}
	if err := r.ReleaseGuest(ctx, "web", "a"); err != nil {
		t.Fatal(err)
	}
	if _, found, _ := r.Guest(ctx, "web"); !found {
		t.Errorf("a member that no longer has a guest released its record")
	}
	if err := r.ReleaseGuest(ctx, "web", "b"); err != nil {
		t.Fatal(err)
	}
	if _, found, _ := r.Guest(ctx, "web"); found {
		t.Errorf("the record outlived its release")
	}
	guests, err := r.Guests(ctx)
	if err != nil || len(guests) != 1 || guests[0].Name != "web1" {
		t.Errorf("guests: %+v, %v", guests, err)
	}
}

func TestAJoinTokenWorksOnceAndNotLate(t *testing.T) {
	r := startOne(t)
	ctx := context.Background()
	now := time.Now()
	if err := r.PutToken(ctx, "b", "hash-b", now.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := r.RedeemToken(ctx, "b", "wrong", now); !errors.Is(err, api.ErrForbidden) {
		t.Errorf("a wrong secret: %v", err)
	}
	if err := r.RedeemToken(ctx, "b", "hash-b", now); err != nil {
		t.Fatalf("the token: %v", err)
	}
	if err := r.RedeemToken(ctx, "b", "hash-b", now); !errors.Is(err, api.ErrForbidden) {
		t.Errorf("the token used again: %v", err)
	}
	if err := r.PutToken(ctx, "c", "hash-c", now.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if err := r.RedeemToken(ctx, "c", "hash-c", now.Add(2*time.Minute)); !errors.Is(err, api.ErrForbidden) {
		t.Errorf("an expired token: %v", err)
	}
	if err := r.PutMember(ctx, Member{Name: "d"}); err != nil {
		t.Fatal(err)
	}
	if err := r.PutToken(ctx, "d", "hash-d", now.Add(time.Hour)); !errors.Is(err, api.ErrConflict) {
		t.Errorf("a token for a member's name: %v", err)
	}
}

func TestTheFirstNetworkWins(t *testing.T) {
	r := startOne(t)
	ctx := context.Background()
	first, err := r.PutNetwork(ctx, Network{Subnet: "10.1.0.0/24", VNI: 7})
	if err != nil || first.Subnet != "10.1.0.0/24" {
		t.Fatal(first, err)
	}
	second, err := r.PutNetwork(ctx, Network{Subnet: "10.2.0.0/24", VNI: 8})
	if err != nil || second != first {
		t.Errorf("a second network: %+v, %v", second, err)
	}
	if err := r.Writable(ctx); err != nil {
		t.Errorf("a cluster of one is writable: %v", err)
	}
}
