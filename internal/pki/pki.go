// Package pki makes and keeps the key pairs polyvisor speaks TLS with:
// the daemon's server certificate and each CLI user's client certificate.
// Both are self-signed; whoever talks to them pins them by fingerprint
// (the SHA-256 of the certificate), as Incus does, so no authority is
// involved and none can be forged into trust.
package pki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"time"

	"github.com/polyvisor/polyvisor/internal/fsutil"
)

// Role says what a certificate is for.
type Role int

const (
	Server Role = iota
	Client
)

// validity is long: a pinned certificate that expired would cut every
// client off at once, and it is its fingerprint, not its dates, that
// clients trust.
const validity = 10 * 365 * 24 * time.Hour

// Fingerprint is the SHA-256 of a certificate's DER, in lower-case hex:
// what `server info` shows and what tokens and remotes pin.
func Fingerprint(cert *x509.Certificate) string {
	sum := sha256.Sum256(cert.Raw)
	return hex.EncodeToString(sum[:])
}

// LoadOrCreate returns the key pair kept as certFile and keyFile, making
// it first (ECDSA P-256, self-signed, named commonName) if neither exists.
// The key is written 0600; the directory is made 0700.
func LoadOrCreate(certFile, keyFile string, role Role, commonName string) (tls.Certificate, error) {
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err == nil {
		return pair, nil
	}
	_, certErr := os.Stat(certFile)
	_, keyErr := os.Stat(keyFile)
	if !errors.Is(certErr, os.ErrNotExist) || !errors.Is(keyErr, os.ErrNotExist) {
		// One of them is there and the pair does not load: making a new
		// one would silently cut off whoever pinned the old.
		return tls.Certificate{}, fmt.Errorf("load key pair %s: %w (remove both %s and %s to make a new one; every remote that pinned it must then be added again)", certFile, err, certFile, keyFile)
	}
	certPEM, keyPEM, err := generate(role, commonName)
	if err != nil {
		return tls.Certificate{}, err
	}
	if err := os.MkdirAll(filepath.Dir(certFile), 0o700); err != nil {
		return tls.Certificate{}, fmt.Errorf("key pair dir: %w", err)
	}
	// The key first: a certificate alone, left by a crash, would be taken
	// for a broken pair above; a key alone is too, but holds no trust.
	if err := fsutil.WriteFileAtomic(keyFile, keyPEM, 0o600); err != nil {
		return tls.Certificate{}, fmt.Errorf("write %s: %w", keyFile, err)
	}
	if err := fsutil.WriteFileAtomic(certFile, certPEM, 0o644); err != nil {
		return tls.Certificate{}, fmt.Errorf("write %s: %w", certFile, err)
	}
	return tls.X509KeyPair(certPEM, keyPEM)
}

// generate makes a self-signed certificate and its key, both PEM.
func generate(role Role, commonName string) (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("generate key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, nil, fmt.Errorf("serial number: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: commonName, Organization: []string{"polyvisor"}},
		NotBefore:             now.Add(-time.Hour), // a client's clock a little behind
		NotAfter:              now.Add(validity),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
	}
	if role == Server {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.DNSNames = []string{commonName}
	} else {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, fmt.Errorf("create certificate: %w", err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, nil, fmt.Errorf("encode key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), nil
}

// Leaf is a key pair's certificate, parsed.
func Leaf(pair tls.Certificate) (*x509.Certificate, error) {
	if pair.Leaf != nil {
		return pair.Leaf, nil
	}
	if len(pair.Certificate) == 0 {
		return nil, errors.New("key pair holds no certificate")
	}
	return x509.ParseCertificate(pair.Certificate[0])
}

// PinnedConfig is a client's TLS configuration for a server it knows by
// fingerprint alone: TLS 1.3, its own certificate offered, and the
// server's checked against the pin instead of against an authority.
func PinnedConfig(own tls.Certificate, serverFingerprint string) *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{own},
		// Verification is VerifyConnection's: the pin, not a chain.
		InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("the server sent no certificate")
			}
			if got := Fingerprint(cs.PeerCertificates[0]); got != serverFingerprint {
				return fmt.Errorf("the server's certificate fingerprint is %s, not the %s pinned for it: someone may be in between, or the server made a new certificate (then remove the remote and add it again)", got, serverFingerprint)
			}
			return nil
		},
		// HTTP/1.1 only: exec and console streams take the connection over,
		// which HTTP/2 does not allow.
		NextProtos: []string{"http/1.1"},
	}
}
