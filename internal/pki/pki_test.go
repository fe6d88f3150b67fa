package pki

import (
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

// pair makes a key pair of role in a fresh dir and returns it with its
// parsed certificate.
func pair(t *testing.T, role Role, name string) (tls.Certificate, *x509.Certificate) {
	t.Helper()
	dir := t.TempDir()
	p, err := LoadOrCreate(filepath.Join(dir, "c.crt"), filepath.Join(dir, "c.key"), role, name)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := Leaf(p)
	if err != nil {
		t.Fatal(err)
	}
	return p, leaf
}

// The first call makes the pair, key private and in a private dir; the
// second loads that very pair instead of making another, since a new one
// would cut off everyone who pinned the first.
func TestLoadOrCreateMakesThePairOnceAndKeepsIt(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "pki")
	certFile, keyFile := filepath.Join(dir, "server.crt"), filepath.Join(dir, "server.key")
	first, err := LoadOrCreate(certFile, keyFile, Server, "host.example")
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o700 {
		t.Errorf("dir mode %v, want 0700", st.Mode().Perm())
	}
	st, err = os.Stat(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("key mode %v, want 0600", st.Mode().Perm())
	}
	if _, err := os.Stat(certFile); err != nil {
		t.Fatalf("no certificate written: %v", err)
	}
	second, err := LoadOrCreate(certFile, keyFile, Server, "host.example")
	if err != nil {
		t.Fatal(err)
	}
	l1, err := Leaf(first)
	if err != nil {
		t.Fatal(err)
	}
	l2, err := Leaf(second)
	if err != nil {
		t.Fatal(err)
	}
	if Fingerprint(l1) != Fingerprint(l2) {
		t.Errorf("second load has fingerprint %s, first %s: a new pair was made", Fingerprint(l2), Fingerprint(l1))
	}
	if l1.Subject.CommonName != "host.example" {
		t.Errorf("common name %q, want host.example", l1.Subject.CommonName)
	}
}

// A certificate whose key is missing or unreadable is a broken pair, not
// a missing one: it must be reported, naming both files, and left as it
// is rather than replaced by a new pair.
func TestABrokenPairIsAnErrorAndIsNotReplaced(t *testing.T) {
	for _, tc := range []struct {
		name    string
		breakIt func(certFile, keyFile string) error
	}{
		{"key missing", func(_, keyFile string) error { return os.Remove(keyFile) }},
		{"key corrupt", func(_, keyFile string) error { return os.WriteFile(keyFile, []byte("not a key\n"), 0o600) }},
		{"cert missing", func(certFile, _ string) error { return os.Remove(certFile) }},
		{"cert corrupt", func(certFile, _ string) error { return os.WriteFile(certFile, []byte("not a cert\n"), 0o644) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			certFile, keyFile := filepath.Join(dir, "client.crt"), filepath.Join(dir, "client.key")
			if _, err := LoadOrCreate(certFile, keyFile, Client, "me"); err != nil {
				t.Fatal(err)
			}
			if err := tc.breakIt(certFile, keyFile); err != nil {
				t.Fatal(err)
			}
			certBefore, certErr := os.ReadFile(certFile)
			keyBefore, keyErr := os.ReadFile(keyFile)
			_, err := LoadOrCreate(certFile, keyFile, Client, "me")
			if err == nil {
				t.Fatal("a broken pair loaded")
			}
			if !strings.Contains(err.Error(), certFile) || !strings.Contains(err.Error(), keyFile) {
				t.Errorf("error %q does not name both %s and %s", err, certFile, keyFile)
			}
			certAfter, certErr2 := os.ReadFile(certFile)
			keyAfter, keyErr2 := os.ReadFile(keyFile)
			if (certErr == nil) != (certErr2 == nil) || !bytes.Equal(certBefore, certAfter) {
				t.Error("the certificate file was changed")
			}
			if (keyErr == nil) != (keyErr2 == nil) || !bytes.Equal(keyBefore, keyAfter) {
				t.Error("the key file was changed")
			}
		})
	}
}

// Two pairs that load are not enough: the key must belong to the
// certificate, or the daemon would serve a certificate it cannot prove.
func TestAKeyOfAnotherPairIsAnError(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "a.crt"), filepath.Join(dir, "a.key")
	if _, err := LoadOrCreate(certFile, keyFile, Server, "a"); err != nil {
		t.Fatal(err)
	}
	otherKey := filepath.Join(dir, "b.key")
	if _, err := LoadOrCreate(filepath.Join(dir, "b.crt"), otherKey, Server, "b"); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(otherKey)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadOrCreate(certFile, keyFile, Server, "a"); err == nil {
		t.Fatal("a certificate with another pair's key loaded")
	}
}

// The fingerprint is what users compare by eye and what pins are checked
// against: SHA-256 of the DER, 64 lower-case hex digits.
func TestFingerprintIsTheSHA256OfTheDER(t *testing.T) {
	p, leaf := pair(t, Server, "host")
	sum := sha256.Sum256(p.Certificate[0])
	want := hex.EncodeToString(sum[:])
	got := Fingerprint(leaf)
	if got != want {
		t.Errorf("Fingerprint = %s, want %s", got, want)
	}
	if !regexp.MustCompile(`^[0-9a-f]{64}$`).MatchString(got) {
		t.Errorf("Fingerprint %q is not 64 lower-case hex digits", got)
	}
	_, other := pair(t, Server, "host")
	if Fingerprint(other) == got {
		t.Error("two pairs made apart share a fingerprint")
	}
}

// A server certificate is for server auth and names the host; a client
// one is for client auth only. Both are long-lived and valid now.
func TestTheRoleSetsTheExtendedKeyUsage(t *testing.T) {
	_, server := pair(t, Server, "host.example")
	if !slices.Equal(server.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}) {
		t.Errorf("server certificate ExtKeyUsage %v, want server auth", server.ExtKeyUsage)
	}
	if !slices.Equal(server.DNSNames, []string{"host.example"}) {
		t.Errorf("server certificate DNS names %v, want [host.example]", server.DNSNames)
	}
	_, client := pair(t, Client, "me@host")
	if !slices.Equal(client.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}) {
		t.Errorf("client certificate ExtKeyUsage %v, want client auth", client.ExtKeyUsage)
	}
	if len(client.DNSNames) != 0 {
		t.Errorf("client certificate names hosts %v", client.DNSNames)
	}
	now := time.Now()
	for _, c := range []*x509.Certificate{server, client} {
		if now.Before(c.NotBefore) || now.After(c.NotAfter) {
			t.Errorf("%s: valid %v to %v, not now", c.Subject.CommonName, c.NotBefore, c.NotAfter)
		}
		if c.NotAfter.Sub(now) < 5*365*24*time.Hour {
			t.Errorf("%s: expires %v, too soon for a pinned certificate", c.Subject.CommonName, c.NotAfter)
		}
	}
}

// Leaf parses the certificate when the pair carries none parsed, and
// refuses a pair without one.
func TestLeafParsesOrRefuses(t *testing.T) {
	p, want := pair(t, Client, "me")
	p.Leaf = nil
	got, err := Leaf(p)
	if err != nil {
		t.Fatal(err)
	}
	if Fingerprint(got) != Fingerprint(want) {
		t.Errorf("Leaf parsed %s, want %s", Fingerprint(got), Fingerprint(want))
	}
	if _, err := Leaf(tls.Certificate{}); err == nil {
		t.Error("Leaf of an empty pair succeeded")
	}
}

// handshake runs a TLS handshake on loopback between a server serving
// server (requiring a client certificate, as the daemon does) and a
// client with cfg. It returns the client certificate the server saw and
// the client's error.
func handshake(t *testing.T, server tls.Certificate, serverMax uint16, cfg *tls.Config) (*x509.Certificate, error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	type result struct {
		peer *x509.Certificate
	}
	done := make(chan result, 1)
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			done <- result{}
			return
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(10 * time.Second))
		tc := tls.Server(conn, &tls.Config{
			Certificates: []tls.Certificate{server},
			ClientAuth:   tls.RequireAnyClientCert,
			MaxVersion:   serverMax,
			NextProtos:   []string{"h2", "http/1.1"},
		})
		var r result
		if tc.Handshake() == nil {
			if peers := tc.ConnectionState().PeerCertificates; len(peers) > 0 {
				r.peer = peers[0]
			}
			// Read until the client closes, so that its handshake is
			// never cut short by our close.
			var b [1]byte
			tc.Read(b[:])
		}
		done <- r
	}()
	conn, err := net.DialTimeout("tcp", ln.Addr().String(), 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	tc := tls.Client(conn, cfg)
	herr := tc.Handshake()
	if herr == nil {
		st := tc.ConnectionState()
		if st.Version != tls.VersionTLS13 {
			t.Errorf("negotiated TLS version %#x, want 1.3", st.Version)
		}
		if st.NegotiatedProtocol != "http/1.1" {
			t.Errorf("negotiated protocol %q, want http/1.1", st.NegotiatedProtocol)
		}
	}
	tc.Close()
	r := <-done
	return r.peer, herr
}

// With the server's fingerprint pinned the handshake succeeds without
// any authority, and the server sees the client's own certificate.
func TestPinnedConfigTrustsThePinnedServer(t *testing.T) {
	server, serverLeaf := pair(t, Server, "host")
	client, clientLeaf := pair(t, Client, "me")
	cfg := PinnedConfig(client, Fingerprint(serverLeaf))
	if cfg.MinVersion != tls.VersionTLS13 {
		t.Errorf("MinVersion %#x, want TLS 1.3", cfg.MinVersion)
	}
	peer, err := handshake(t, server, 0, cfg)
	if err != nil {
		t.Fatalf("handshake with the pinned server: %v", err)
	}
	if peer == nil || Fingerprint(peer) != Fingerprint(clientLeaf) {
		t.Errorf("the server saw client certificate %v, want the client's own", peer)
	}
}

// Any other certificate is refused, even a well-formed self-signed one,
// and the error says which fingerprint was pinned.
func TestPinnedConfigRefusesAnotherServer(t *testing.T) {
	_, pinnedLeaf := pair(t, Server, "host")
	impostor, _ := pair(t, Server, "host")
	client, _ := pair(t, Client, "me")
	pin := Fingerprint(pinnedLeaf)
	peer, err := handshake(t, impostor, 0, PinnedConfig(client, pin))
	if err == nil {
		t.Fatal("handshake with an unpinned server succeeded")
	}
	if !strings.Contains(err.Error(), pin) {
		t.Errorf("error %q does not mention the pinned fingerprint %s", err, pin)
	}
	if peer != nil {
		t.Error("the impostor completed the handshake")
	}
}

// A server that offers no more than TLS 1.2 is refused even when pinned.
func TestPinnedConfigRefusesTLS12(t *testing.T) {
	server, serverLeaf := pair(t, Server, "host")
	client, _ := pair(t, Client, "me")
	if _, err := handshake(t, server, tls.VersionTLS12, PinnedConfig(client, Fingerprint(serverLeaf))); err == nil {
		t.Fatal("handshake with a TLS 1.2 server succeeded")
	}
}
