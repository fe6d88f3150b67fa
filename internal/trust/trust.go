// Package trust keeps who may reach the daemon over the network: the
// client certificates it trusts, by fingerprint, and the one-time tokens
// that make a client trusted. Only a token's hash is kept, so the state
// dir holds nothing that would let a reader join.
package trust

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"regexp"
	"slices"
	"sync"
	"time"

	"github.com/polyvisor/polyvisor/internal/fsutil"
	"github.com/polyvisor/polyvisor/internal/pki"
	"github.com/polyvisor/polyvisor/pkg/api"
)

// DefaultTokenLifetime is how long a token works when its maker names no
// lifetime: long enough to carry it to the other machine, short enough
// that a forgotten one is not a standing way in.
const DefaultTokenLifetime = time.Hour

// Client is a trusted client certificate.
type Client struct {
	Name        string    `json:"name"`
	Fingerprint string    `json:"fingerprint"`
	AddedAt     time.Time `json:"addedAt"`
}

// token is a token not used yet; SecretHash is the SHA-256 of its secret.
type token struct {
	Name       string    `json:"name"`
	SecretHash string    `json:"secretHash"`
	AddedAt    time.Time `json:"addedAt"`
	ExpiresAt  time.Time `json:"expiresAt"`
}

// file is what the store keeps on disk.
type file struct {
	Clients []Client `json:"clients"`
	Tokens  []token  `json:"tokens"`
}

// Store is the trust kept in one file. Its methods are safe for
// concurrent use; Trusted, called on every request, takes a read lock.
type Store struct {
	path string
	now  func() time.Time

	mu            sync.RWMutex
	clients       []Client
	tokens        []token
	byFingerprint map[string]Client
}

// Open loads the store kept at path (none yet is an empty store). now is
// the clock tokens expire by (nil for time.Now).
func Open(path string, now func() time.Time) (*Store, error) {
	if now == nil {
		now = time.Now
	}
	s := &Store{path: path, now: now}
	data, err := os.ReadFile(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return nil, fmt.Errorf("trust store: %w", err)
	default:
		var f file
		if err := json.Unmarshal(data, &f); err != nil {
			return nil, fmt.Errorf("trust store %s: %w (fix or remove it; removing it distrusts every client)", path, err)
		}
		s.clients, s.tokens = f.Clients, f.Tokens
	}
	s.index()
	return s, nil
}

func (s *Store) index() {
	s.byFingerprint = make(map[string]Client, len(s.clients))
	for _, c := range s.clients {
		s.byFingerprint[c.Fingerprint] = c
	}
}

// save writes the store whole; the caller holds the write lock.
func (s *Store) save() error {
	s.tokens = slices.DeleteFunc(s.tokens, func(t token) bool { return !s.now().Before(t.ExpiresAt) })
	data, err := json.MarshalIndent(file{Clients: s.clients, Tokens: s.tokens}, "", "  ")
	if err != nil {
		return err
	}
	if err := fsutil.WriteFileAtomic(s.path, append(data, '\n'), 0o600); err != nil {
		return fmt.Errorf("trust store: %w", err)
	}
	s.index()
	return nil
}

var validName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._@-]{0,62}$`)

// CheckName says whether name may name a client.
func CheckName(name string) error {
	if !validName.MatchString(name) {
		return fmt.Errorf("%w: name %q: use 1 to 63 letters, digits, '.', '_', '@' or '-', starting with a letter or digit", api.ErrInvalid, name)
	}
	return nil
}

// Issue makes a token for a client to be named name, working once for
// lifetime, and returns its secret: the only time the secret exists
// outside the token the user is given.
func (s *Store) Issue(name string, lifetime time.Duration) (secret string, expires time.Time, err error) {
	if err := CheckName(name); err != nil {
		return "", time.Time{}, err
	}
	if lifetime <= 0 {
		return "", time.Time{}, fmt.Errorf("%w: expiry %s: give a positive duration such as 30m or 24h", api.ErrInvalid, lifetime)
	}
	raw := make([]byte, 32)
	rand.Read(raw)
	secret = hex.EncodeToString(raw)
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	if s.taken(name, now) {
		return "", time.Time{}, fmt.Errorf("%w: %q is already trusted or has a token waiting: pick another name, or 'polyvisor trust remove %s' first", api.ErrExists, name, name)
	}
	t := token{Name: name, SecretHash: hash(secret), AddedAt: now, ExpiresAt: now.Add(lifetime)}
	s.tokens = append(s.tokens, t)
	if err := s.save(); err != nil {
		s.tokens = s.tokens[:len(s.tokens)-1]
		return "", time.Time{}, err
	}
	return secret, t.ExpiresAt, nil
}

// taken says whether a client or a live token holds name.
func (s *Store) taken(name string, now time.Time) bool {
	return slices.ContainsFunc(s.clients, func(c Client) bool { return c.Name == name }) ||
		slices.ContainsFunc(s.tokens, func(t token) bool { return t.Name == name && now.Before(t.ExpiresAt) })
}

// ErrBadToken is a secret that matches no live token: never issued,
// used already, expired or revoked. Which of them is not said.
var ErrBadToken = fmt.Errorf("%w: the token is not valid: it was used already, expired or revoked; ask for a new one ('polyvisor trust add NAME' on the server)", api.ErrForbidden)

// Redeem trusts cert under the name of the token whose secret this is,
// and spends the token.
func (s *Store) Redeem(secret string, cert *x509.Certificate) (Client, error) {
	h := hash(secret)
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	i := slices.IndexFunc(s.tokens, func(t token) bool { return t.SecretHash == h && now.Before(t.ExpiresAt) })
	if i < 0 {
		return Client{}, ErrBadToken
	}
	fp := pki.Fingerprint(cert)
	if c, ok := s.byFingerprint[fp]; ok {
		return Client{}, fmt.Errorf("%w: this client certificate is trusted already, as %q", api.ErrExists, c.Name)
	}
	t := s.tokens[i]
	c := Client{Name: t.Name, Fingerprint: fp, AddedAt: now}
	oldClients, oldTokens := s.clients, slices.Clone(s.tokens)
	s.clients = append(slices.Clip(s.clients), c)
	s.tokens = slices.Delete(s.tokens, i, i+1)
	if err := s.save(); err != nil {
		s.clients, s.tokens = oldClients, oldTokens
		return Client{}, err
	}
	return c, nil
}

// Trusted returns the client whose certificate has fingerprint fp.
func (s *Store) Trusted(fp string) (Client, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	c, ok := s.byFingerprint[fp]
	return c, ok
}

// Remove distrusts the client named name, or revokes its token, and
// returns the fingerprint it had ("" for a token).
func (s *Store) Remove(name string) (fingerprint string, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	oldClients, oldTokens := slices.Clone(s.clients), slices.Clone(s.tokens)
	found := false
	s.clients = slices.DeleteFunc(s.clients, func(c Client) bool {
		if c.Name == name {
			fingerprint, found = c.Fingerprint, true
		}
		return c.Name == name
	})
	now := s.now()
	s.tokens = slices.DeleteFunc(s.tokens, func(t token) bool {
		live := t.Name == name && now.Before(t.ExpiresAt)
		found = found || live
		return t.Name == name
	})
	if !found {
		s.clients, s.tokens = oldClients, oldTokens
		return "", fmt.Errorf("%w: no client or token named %q: 'polyvisor trust list' shows them", api.ErrNotFound, name)
	}
	if err := s.save(); err != nil {
		s.clients, s.tokens = oldClients, oldTokens
		s.index()
		return "", err
	}
	return fingerprint, nil
}

// List is every trusted client and every live token, without secrets.
func (s *Store) List() []api.TrustEntry {
	s.mu.RLock()
	defer s.mu.RUnlock()
	now := s.now()
	var out []api.TrustEntry
	for _, c := range s.clients {
		out = append(out, api.TrustEntry{Name: c.Name, Kind: api.TrustKindClient, Fingerprint: c.Fingerprint, AddedAt: c.AddedAt})
	}
	for _, t := range s.tokens {
		if now.Before(t.ExpiresAt) {
			out = append(out, api.TrustEntry{Name: t.Name, Kind: api.TrustKindToken, AddedAt: t.AddedAt, ExpiresAt: t.ExpiresAt})
		}
	}
	return out
}

func hash(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(sum[:])
}
