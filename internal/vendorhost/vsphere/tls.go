package vsphere

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"strings"

	"github.com/vmware/govmomi/vim25/soap"
)

// parseFingerprint reads a SHA-256 fingerprint as users copy it: hex,
// with or without colons, either case.
func parseFingerprint(s string) ([]byte, error) {
	clean := strings.ToLower(strings.ReplaceAll(strings.TrimSpace(s), ":", ""))
	sum, err := hex.DecodeString(clean)
	if err != nil || len(sum) != sha256.Size {
		return nil, fmt.Errorf("fingerprint %q: give the certificate's SHA-256 as 64 hex digits (colons optional)", s)
	}
	return sum, nil
}

// fingerprintOf formats a certificate's SHA-256 as AB:CD:..., the form
// browsers and openssl print and --insecure-fingerprint takes.
func fingerprintOf(raw []byte) string {
	sum := sha256.Sum256(raw)
	parts := make([]string, len(sum))
	for i, b := range sum {
		parts[i] = fmt.Sprintf("%02X", b)
	}
	return strings.Join(parts, ":")
}

// certError is a server certificate polyvisor does not trust; it carries
// the certificate's fingerprint so the error line can name it.
type certError struct {
	fingerprint string
	pinned      bool // the user pinned another fingerprint
	err         error
}

func (e *certError) Error() string {
	if e.pinned {
		return "its certificate is not the one it was added with (SHA-256 " + e.fingerprint + ")"
	}
	return fmt.Sprintf("its certificate is not trusted (%v)", e.err)
}

// tlsDialer dials the host's TLS connections. Go's own verification is
// off (InsecureSkipVerify) because VerifyConnection does it: a pinned
// fingerprint accepts exactly that certificate and nothing else, without
// one the system's CAs decide. Other hosts the session sends us to (an
// ESXi host serving an export lease for its vCenter) are trusted by the
// SHA-1 or SHA-256 thumbprint the authenticated session gave for them.
type tlsDialer struct {
	addr   string // host:port of the vSphere endpoint
	pin    []byte // SHA-256 of its certificate; nil: system CAs
	thumbs *soap.Client
	net    *net.Dialer
}

func (d *tlsDialer) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		host = addr
	}
	cfg := &tls.Config{
		ServerName:         host,
		InsecureSkipVerify: true, // VerifyConnection verifies
		VerifyConnection:   func(cs tls.ConnectionState) error { return d.verify(addr, host, cs) },
		MinVersion:         tls.VersionTLS12,
	}
	td := tls.Dialer{NetDialer: d.net, Config: cfg}
	return td.DialContext(ctx, network, addr)
}

func (d *tlsDialer) verify(addr, host string, cs tls.ConnectionState) error {
	if len(cs.PeerCertificates) == 0 {
		return errors.New("the server sent no certificate")
	}
	leaf := cs.PeerCertificates[0]
	got := sha256.Sum256(leaf.Raw)
	if addr == d.addr && d.pin != nil {
		if string(got[:]) == string(d.pin) {
			return nil
		}
		return &certError{fingerprint: fingerprintOf(leaf.Raw), pinned: true}
	}
	if addr != d.addr {
		if tp := d.thumbs.Thumbprint(addr); tp != "" {
			if strings.EqualFold(tp, soap.ThumbprintSHA1(leaf)) || strings.EqualFold(tp, soap.ThumbprintSHA256(leaf)) {
				return nil
			}
			return &certError{fingerprint: fingerprintOf(leaf.Raw), pinned: true}
		}
	}
	inter := x509.NewCertPool()
	for _, c := range cs.PeerCertificates[1:] {
		inter.AddCert(c)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{DNSName: host, Intermediates: inter}); err != nil {
		return &certError{fingerprint: fingerprintOf(leaf.Raw), err: err}
	}
	return nil
}
