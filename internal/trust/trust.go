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
	"slices"
	"sync"
	"time"

	"github.com/polyvisor/polyvisor/internal/fsutil"
	"github.com/polyvisor/polyvisor/internal/lazyre"
	"github.com/polyvisor/polyvisor/internal/pki"
	"github.com/polyvisor/polyvisor/pkg/api"
)

// SessionLifetime is how long a browser's session lasts from its login.
const SessionLifetime = 24 * time.Hour

// DefaultTokenLifetime is how long a token works when its maker names no
// lifetime: long enough to carry it to the other machine, short enough
// that a forgotten one is not a standing way in.
const DefaultTokenLifetime = time.Hour

// Client is a trusted client: a certificate, known by its fingerprint, or
// a browser user (Web), known by the sessions its logins opened.
type Client struct {
	Name        string    `json:"name"`
	Fingerprint string    `json:"fingerprint,omitempty"`
	Web         bool      `json:"web,omitempty"`
	AddedAt     time.Time `json:"addedAt"`
}

// token is a token not used yet; SecretHash is the SHA-256 of its secret.
// A Web token logs a browser in instead of trusting a certificate.
type token struct {
	Name       string    `json:"name"`
	SecretHash string    `json:"secretHash"`
	Web        bool      `json:"web,omitempty"`
	AddedAt    time.Time `json:"addedAt"`
	ExpiresAt  time.Time `json:"expiresAt"`
}

// session is a browser's login; IDHash is the SHA-256 of the session id
// its cookie holds.
type session struct {
	Name      string    `json:"name"`
	IDHash    string    `json:"idHash"`
	ExpiresAt time.Time `json:"expiresAt"`
}

// file is what the store keeps on disk.
type file struct {
	Clients  []Client  `json:"clients"`
	Tokens   []token   `json:"tokens"`
	Sessions []session `json:"sessions,omitempty"`
}

// Store is the trust kept in one file. Its methods are safe for
// concurrent use; Trusted, called on every request, takes a read lock.
type Store struct {
	path string
	now  func() time.Time

	mu            sync.RWMutex
	clients       []Client
	tokens        []token
	sessions      []session
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
		s.clients, s.tokens, s.sessions = f.Clients, f.Tokens, f.Sessions
	}
	s.index()
	return s, nil
}

func (s *Store) index() {
	s.byFingerprint = make(map[string]Client, len(s.clients))
	for _, c := range s.clients {
		if !c.Web {
			s.byFingerprint[c.Fingerprint] = c
		}
	}
}

// save writes the store whole; the caller holds the write lock.
func (s *Store) save() error {
	now := s.now()
	s.tokens = slices.DeleteFunc(s.tokens, func(t token) bool { return !now.Before(t.ExpiresAt) })
	s.sessions = slices.DeleteFunc(s.sessions, func(x session) bool { return !now.Before(x.ExpiresAt) })
	data, err := json.MarshalIndent(file{Clients: s.clients, Tokens: s.tokens, Sessions: s.sessions}, "", "  ")
	if err != nil {
		return err
	}
	if err := fsutil.WriteFileAtomic(s.path, append(data, '\n'), 0o600); err != nil {
		return fmt.Errorf("trust store: %w", err)
	}
	s.index()
	return nil
}

var validName = lazyre.New(`^[A-Za-z0-9][A-Za-z0-9._@-]{0,62}$`)

// CheckName says whether name may name a client.
func CheckName(name string) error {
	if !validName().MatchString(name) {
		return fmt.Errorf("%w: name %q: use 1 to 63 letters, digits, '.', '_', '@' or '-', starting with a letter or digit", api.ErrInvalid, name)
	}
	return nil
}

// Issue makes a token for a client to be named name, working once for
// lifetime, and returns its secret: the only time the secret exists
// outside the token the user is given.
func (s *Store) Issue(name string, lifetime time.Duration) (secret string, expires time.Time, err error) {
	return s.issue(name, lifetime, false)
}

// IssueWeb makes a token that logs a browser in once, as name: a web
// client, whose every login opens a session of its own.
func (s *Store) IssueWeb(name string, lifetime time.Duration) (secret string, expires time.Time, err error) {
	return s.issue(name, lifetime, true)
}

func (s *Store) issue(name string, lifetime time.Duration, web bool) (secret string, expires time.Time, err error) {
	if err := CheckName(name); err != nil {
		return "", time.Time{}, err
	}
	if lifetime <= 0 {
		return "", time.Time{}, fmt.Errorf("%w: expiry %s: give a positive duration such as 30m or 24h", api.ErrInvalid, lifetime)
	}
	secret = NewSecret()
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	// A web user may log in again (another browser, a session that
	// ended): a new link for a web client of that name is no clash.
	if s.taken(name, now) && !(web && s.webClient(name) && !s.waiting(name, now)) {
		return "", time.Time{}, fmt.Errorf("%w: %q is already trusted or has a token waiting: pick another name, or 'polyvisor trust remove %s' first", api.ErrExists, name, name)
	}
	t := token{Name: name, SecretHash: HashSecret(secret), Web: web, AddedAt: now, ExpiresAt: now.Add(lifetime)}
	s.tokens = append(s.tokens, t)
	if err := s.save(); err != nil {
		s.tokens = s.tokens[:len(s.tokens)-1]
		return "", time.Time{}, err
	}
	return secret, t.ExpiresAt, nil
}

// taken says whether a client or a live token holds name.
func (s *Store) taken(name string, now time.Time) bool {
	return slices.ContainsFunc(s.clients, func(c Client) bool { return c.Name == name }) || s.waiting(name, now)
}

// waiting says whether a live token holds name.
func (s *Store) waiting(name string, now time.Time) bool {
	return slices.ContainsFunc(s.tokens, func(t token) bool { return t.Name == name && now.Before(t.ExpiresAt) })
}

// webClient says whether name is a web client's.
func (s *Store) webClient(name string) bool {
	return slices.ContainsFunc(s.clients, func(c Client) bool { return c.Name == name && c.Web })
}

// ErrBadToken is a secret that matches no live token: never issued,
// used already, expired or revoked. Which of them is not said.
var ErrBadToken = fmt.Errorf("%w: the token is not valid: it was used already, expired or revoked; ask for a new one ('polyvisor trust add NAME' on the server)", api.ErrForbidden)

// Redeem trusts cert under the name of the token whose secret this is,
// and spends the token.
func (s *Store) Redeem(secret string, cert *x509.Certificate) (Client, error) {
	h := HashSecret(secret)
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	i := slices.IndexFunc(s.tokens, func(t token) bool { return t.SecretHash == h && !t.Web && now.Before(t.ExpiresAt) })
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

// Login spends a web token's secret: its web client is trusted, and a
// session opened, whose id (for the browser's cookie alone: only its hash
// is kept) is returned.
func (s *Store) Login(secret string) (c Client, sessionID string, expires time.Time, err error) {
	h := HashSecret(secret)
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	i := slices.IndexFunc(s.tokens, func(t token) bool { return t.SecretHash == h && t.Web && now.Before(t.ExpiresAt) })
	if i < 0 {
		return Client{}, "", time.Time{}, ErrBadToken
	}
	t := s.tokens[i]
	c = Client{Name: t.Name, Web: true, AddedAt: now}
	sessionID = NewSecret()
	expires = now.Add(SessionLifetime)
	oldClients, oldTokens, oldSessions := s.clients, slices.Clone(s.tokens), s.sessions
	if j := slices.IndexFunc(s.clients, func(c Client) bool { return c.Name == t.Name }); j >= 0 {
		c = s.clients[j] // logging in again
	} else {
		s.clients = append(slices.Clip(s.clients), c)
	}
	s.tokens = slices.Delete(s.tokens, i, i+1)
	s.sessions = append(slices.Clip(s.sessions), session{Name: c.Name, IDHash: HashSecret(sessionID), ExpiresAt: expires})
	if err := s.save(); err != nil {
		s.clients, s.tokens, s.sessions = oldClients, oldTokens, oldSessions
		return Client{}, "", time.Time{}, err
	}
	return c, sessionID, expires, nil
}

// Session returns the web client whose live session id is this, and when
// the session ends.
func (s *Store) Session(id string) (Client, time.Time, bool) {
	h := HashSecret(id)
	s.mu.RLock()
	defer s.mu.RUnlock()
	now := s.now()
	for _, x := range s.sessions {
		if x.IDHash == h && now.Before(x.ExpiresAt) {
			for _, c := range s.clients {
				if c.Web && c.Name == x.Name {
					return c, x.ExpiresAt, true
				}
			}
		}
	}
	return Client{}, time.Time{}, false
}

// EndSession ends one session (a log out); its client stays trusted.
func (s *Store) EndSession(id string) error {
	h := HashSecret(id)
	s.mu.Lock()
	defer s.mu.Unlock()
	old := slices.Clone(s.sessions)
	s.sessions = slices.DeleteFunc(s.sessions, func(x session) bool { return x.IDHash == h })
	if err := s.save(); err != nil {
		s.sessions = old
		return err
	}
	return nil
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
	oldClients, oldTokens, oldSessions := slices.Clone(s.clients), slices.Clone(s.tokens), slices.Clone(s.sessions)
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
	s.sessions = slices.DeleteFunc(s.sessions, func(x session) bool { return x.Name == name })
	if !found {
		s.clients, s.tokens, s.sessions = oldClients, oldTokens, oldSessions
		return "", fmt.Errorf("%w: no client or token named %q: 'polyvisor trust list' shows them", api.ErrNotFound, name)
	}
	if err := s.save(); err != nil {
		s.clients, s.tokens, s.sessions = oldClients, oldTokens, oldSessions
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
		kind := api.TrustKindClient
		if c.Web {
			kind = api.TrustKindWeb
		}
		out = append(out, api.TrustEntry{Name: c.Name, Kind: kind, Fingerprint: c.Fingerprint, AddedAt: c.AddedAt})
	}
	for _, t := range s.tokens {
		if now.Before(t.ExpiresAt) {
			kind := api.TrustKindToken
			if t.Web {
				kind = api.TrustKindWebToken
			}
			out = append(out, api.TrustEntry{Name: t.Name, Kind: kind, AddedAt: t.AddedAt, ExpiresAt: t.ExpiresAt})
		}
	}
	return out
}

// NewSecret is 32 random bytes in hex: a token's secret or a session
// id (the cluster's join tokens use it too).
func NewSecret() string {
	raw := make([]byte, 32)
	rand.Read(raw)
	return hex.EncodeToString(raw)
}

// HashSecret is what is kept of a secret: its SHA-256, hex.
func HashSecret(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(sum[:])
}
