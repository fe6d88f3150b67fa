package trust

import (
	"crypto/x509"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/polyvisor/polyvisor/internal/pki"
	"github.com/polyvisor/polyvisor/pkg/api"
)

// clock is a test's clock, moved by hand.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// open opens a store in a fresh dir, on a clock the test moves.
func open(t *testing.T) (*Store, string, *clock) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "trust.json")
	c := &clock{t: time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)}
	s, err := Open(path, c.now)
	if err != nil {
		t.Fatal(err)
	}
	return s, path, c
}

// cert makes a client certificate.
func cert(t *testing.T) *x509.Certificate {
	t.Helper()
	dir := t.TempDir()
	p, err := pki.LoadOrCreate(filepath.Join(dir, "c.crt"), filepath.Join(dir, "c.key"), pki.Client, "me")
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := pki.Leaf(p)
	if err != nil {
		t.Fatal(err)
	}
	return leaf
}

// issue issues a token that must be issued.
func issue(t *testing.T, s *Store, name string, lifetime time.Duration) string {
	t.Helper()
	secret, _, err := s.Issue(name, lifetime)
	if err != nil {
		t.Fatalf("Issue(%q): %v", name, err)
	}
	return secret
}

// A token trusts the certificate it is redeemed with, under the token's
// name, and is spent by it: the same secret never works twice.
func TestATokenWorksOnce(t *testing.T) {
	s, _, c := open(t)
	secret, expires, err := s.Issue("laptop", 30*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if want := c.now().Add(30 * time.Minute); !expires.Equal(want) {
		t.Errorf("expires %v, want %v", expires, want)
	}
	if len(secret) < 32 {
		t.Errorf("secret %q is too short to be unguessable", secret)
	}
	crt := cert(t)
	fp := pki.Fingerprint(crt)
	if _, ok := s.Trusted(fp); ok {
		t.Fatal("the certificate is trusted before the token is redeemed")
	}
	got, err := s.Redeem(secret, crt)
	if err != nil {
		t.Fatal(err)
	}
	if got.Name != "laptop" || got.Fingerprint != fp || !got.AddedAt.Equal(c.now()) {
		t.Errorf("Redeem = %+v, want laptop with %s at %v", got, fp, c.now())
	}
	if cl, ok := s.Trusted(fp); !ok || cl.Name != "laptop" {
		t.Errorf("Trusted(%s) = %+v, %v; want laptop", fp, cl, ok)
	}
	_, err = s.Redeem(secret, cert(t))
	if !errors.Is(err, ErrBadToken) || !errors.Is(err, api.ErrForbidden) {
		t.Errorf("second Redeem: %v, want ErrBadToken and api.ErrForbidden", err)
	}
	list := s.List()
	if len(list) != 1 || list[0].Kind != api.TrustKindClient || list[0].Name != "laptop" || list[0].Fingerprint != fp {
		t.Errorf("List = %+v, want only the client laptop", list)
	}
}

// A secret that was never issued is refused like a spent one.
func TestAnUnknownSecretIsRefused(t *testing.T) {
	s, _, _ := open(t)
	issue(t, s, "laptop", time.Hour)
	if _, err := s.Redeem("0123456789abcdef", cert(t)); !errors.Is(err, ErrBadToken) {
		t.Errorf("Redeem of an unknown secret: %v, want ErrBadToken", err)
	}
}

// Once its lifetime is over a token neither works nor shows, and its name
// is free again.
func TestAnExpiredTokenIsRefusedAndNotListed(t *testing.T) {
	s, _, c := open(t)
	secret := issue(t, s, "laptop", time.Hour)
	if list := s.List(); len(list) != 1 || list[0].Kind != api.TrustKindToken || list[0].Fingerprint != "" {
		t.Fatalf("List = %+v, want the one token, without fingerprint", list)
	}
	c.advance(time.Hour)
	if list := s.List(); len(list) != 0 {
		t.Errorf("List after expiry = %+v, want nothing", list)
	}
	if _, err := s.Redeem(secret, cert(t)); !errors.Is(err, ErrBadToken) {
		t.Errorf("Redeem of an expired token: %v, want ErrBadToken", err)
	}
	if _, err := s.Remove("laptop"); !errors.Is(err, api.ErrNotFound) {
		t.Errorf("Remove of an expired token: %v, want api.ErrNotFound", err)
	}
	if _, _, err := s.Issue("laptop", time.Hour); err != nil {
		t.Errorf("a new token for the name an expired one held: %v", err)
	}
}

// Removing a client distrusts it at once and says which certificate it
// had, so that the daemon can cut off its connections.
func TestRemovingAClientDistrustsIt(t *testing.T) {
	s, _, _ := open(t)
	crt := cert(t)
	fp := pki.Fingerprint(crt)
	if _, err := s.Redeem(issue(t, s, "laptop", time.Hour), crt); err != nil {
		t.Fatal(err)
	}
	got, err := s.Remove("laptop")
	if err != nil {
		t.Fatal(err)
	}
	if got != fp {
		t.Errorf("Remove returned %q, want the fingerprint %s", got, fp)
	}
	if _, ok := s.Trusted(fp); ok {
		t.Error("the removed client is still trusted")
	}
	if list := s.List(); len(list) != 0 {
		t.Errorf("List = %+v, want nothing", list)
	}
	if _, err := s.Remove("laptop"); !errors.Is(err, api.ErrNotFound) {
		t.Errorf("second Remove: %v, want api.ErrNotFound", err)
	}
}

// Removing a token revokes it: it has no fingerprint, and its secret
// stops working.
func TestRemovingATokenRevokesIt(t *testing.T) {
	s, _, _ := open(t)
	secret := issue(t, s, "laptop", time.Hour)
	fp, err := s.Remove("laptop")
	if err != nil {
		t.Fatal(err)
	}
	if fp != "" {
		t.Errorf("Remove of a token returned fingerprint %q, want none", fp)
	}
	if _, err := s.Redeem(secret, cert(t)); !errors.Is(err, ErrBadToken) {
		t.Errorf("Redeem of a revoked token: %v, want ErrBadToken", err)
	}
}

func TestRemovingAnUnknownNameIsNotFound(t *testing.T) {
	s, _, _ := open(t)
	issue(t, s, "laptop", time.Hour)
	if _, err := s.Remove("desktop"); !errors.Is(err, api.ErrNotFound) {
		t.Errorf("Remove(desktop): %v, want api.ErrNotFound", err)
	}
	if list := s.List(); len(list) != 1 {
		t.Errorf("a failed Remove changed the list: %+v", list)
	}
}

// Names end up in URLs, in REMOTE:NAME arguments and in paths: only a
// short run of safe characters is allowed.
func TestNamesAreChecked(t *testing.T) {
	for _, name := range []string{"a", "laptop", "me@host", "host.example.com", "a_b-c", "A9", strings.Repeat("x", 63)} {
		if err := CheckName(name); err != nil {
			t.Errorf("CheckName(%q): %v", name, err)
		}
	}
	for _, name := range []string{"", strings.Repeat("x", 64), "b:web", "a/b", "../x", "-x", ".x", "a b", "a\n", "é"} {
		if err := CheckName(name); !errors.Is(err, api.ErrInvalid) {
			t.Errorf("CheckName(%q): %v, want api.ErrInvalid", name, err)
		}
	}
	s, _, _ := open(t)
	if _, _, err := s.Issue("a/b", time.Hour); !errors.Is(err, api.ErrInvalid) {
		t.Errorf("Issue with a bad name: %v, want api.ErrInvalid", err)
	}
	if list := s.List(); len(list) != 0 {
		t.Errorf("a refused Issue left %+v", list)
	}
}

func TestATokenNeedsAPositiveLifetime(t *testing.T) {
	s, _, _ := open(t)
	for _, d := range []time.Duration{0, -time.Minute} {
		if _, _, err := s.Issue("laptop", d); !errors.Is(err, api.ErrInvalid) {
			t.Errorf("Issue with lifetime %v: %v, want api.ErrInvalid", d, err)
		}
	}
}

// One name, one holder: a trusted client or a waiting token keeps its
// name from a second token, which would otherwise make two clients of
// one name.
func TestATakenNameGetsNoSecondToken(t *testing.T) {
	s, _, _ := open(t)
	issue(t, s, "waiting", time.Hour)
	if _, _, err := s.Issue("waiting", time.Hour); !errors.Is(err, api.ErrExists) {
		t.Errorf("second token for a waiting name: %v, want api.ErrExists", err)
	}
	if _, err := s.Redeem(issue(t, s, "trusted", time.Hour), cert(t)); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Issue("trusted", time.Hour); !errors.Is(err, api.ErrExists) {
		t.Errorf("token for a trusted client's name: %v, want api.ErrExists", err)
	}
	if list := s.List(); len(list) != 2 {
		t.Errorf("List = %+v, want the one token and the one client", list)
	}
}

// A certificate trusted once is not trusted again under another name,
// and the token it tried is not spent.
func TestACertificateIsTrustedUnderOneNameOnly(t *testing.T) {
	s, _, _ := open(t)
	crt := cert(t)
	if _, err := s.Redeem(issue(t, s, "first", time.Hour), crt); err != nil {
		t.Fatal(err)
	}
	second := issue(t, s, "second", time.Hour)
	if _, err := s.Redeem(second, crt); !errors.Is(err, api.ErrExists) {
		t.Fatalf("Redeem with a trusted certificate: %v, want api.ErrExists", err)
	}
	if c, ok := s.Trusted(pki.Fingerprint(crt)); !ok || c.Name != "first" {
		t.Errorf("Trusted = %+v, %v; want first still", c, ok)
	}
	if c, err := s.Redeem(second, cert(t)); err != nil || c.Name != "second" {
		t.Errorf("the token refused a trusted certificate was spent: %+v, %v", c, err)
	}
}

// The store is the daemon's memory across restarts: clients and waiting
// tokens come back; the file is private and holds no secret in clear.
func TestTheStoreSurvivesReopening(t *testing.T) {
	s, path, c := open(t)
	crt := cert(t)
	fp := pki.Fingerprint(crt)
	clientSecret := issue(t, s, "laptop", time.Hour)
	if _, err := s.Redeem(clientSecret, crt); err != nil {
		t.Fatal(err)
	}
	waiting := issue(t, s, "desktop", time.Hour)
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("store mode %v, want 0600", st.Mode().Perm())
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, secret := range []string{clientSecret, waiting} {
		if strings.Contains(string(data), secret) {
			t.Errorf("the store file holds secret %s in clear:\n%s", secret, data)
		}
	}

	s2, err := Open(path, c.now)
	if err != nil {
		t.Fatal(err)
	}
	if cl, ok := s2.Trusted(fp); !ok || cl.Name != "laptop" {
		t.Errorf("after reopening Trusted(%s) = %+v, %v; want laptop", fp, cl, ok)
	}
	if list := s2.List(); len(list) != 2 {
		t.Errorf("after reopening List = %+v, want laptop and the desktop token", list)
	}
	if cl, err := s2.Redeem(waiting, cert(t)); err != nil || cl.Name != "desktop" {
		t.Errorf("the waiting token after reopening: %+v, %v", cl, err)
	}
}

// The clock a token expires by is the one Open is given, after a reopen
// too: a token that expired while the daemon was down stays dead.
func TestATokenExpiresAcrossReopening(t *testing.T) {
	s, path, c := open(t)
	secret := issue(t, s, "laptop", time.Hour)
	c.advance(2 * time.Hour)
	s2, err := Open(path, c.now)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s2.Redeem(secret, cert(t)); !errors.Is(err, ErrBadToken) {
		t.Errorf("Redeem of a token expired while closed: %v, want ErrBadToken", err)
	}
	if list := s2.List(); len(list) != 0 {
		t.Errorf("List = %+v, want nothing", list)
	}
}

// A store that does not parse is not taken for an empty one (that would
// distrust everyone silently): Open fails and says which file.
func TestACorruptStoreIsAnError(t *testing.T) {
	path := filepath.Join(t.TempDir(), "trust.json")
	if err := os.WriteFile(path, []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Open(path, nil)
	if err == nil {
		t.Fatal("a corrupt store opened")
	}
	if !strings.Contains(err.Error(), path) {
		t.Errorf("error %q does not name %s", err, path)
	}
	if data, _ := os.ReadFile(path); string(data) != "{not json" {
		t.Errorf("the corrupt store was rewritten: %q", data)
	}
}

// No file yet is an empty store, not an error: the first start.
func TestAMissingStoreIsEmpty(t *testing.T) {
	s, err := Open(filepath.Join(t.TempDir(), "trust.json"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if list := s.List(); len(list) != 0 {
		t.Errorf("List = %+v, want nothing", list)
	}
	if _, _, err := s.Issue("laptop", DefaultTokenLifetime); err != nil {
		t.Errorf("Issue on the real clock: %v", err)
	}
}

// Two clients racing with one secret: exactly one of them is trusted.
func TestATokenWorksOnceUnderARace(t *testing.T) {
	s, _, _ := open(t)
	secret := issue(t, s, "laptop", time.Hour)
	certs := make([]*x509.Certificate, 8)
	for i := range certs {
		certs[i] = cert(t)
	}
	errs := make([]error, len(certs))
	var wg sync.WaitGroup
	for i, crt := range certs {
		wg.Go(func() {
			_, errs[i] = s.Redeem(secret, crt)
			s.Trusted(pki.Fingerprint(crt))
		})
	}
	wg.Wait()
	won := 0
	for _, err := range errs {
		switch {
		case err == nil:
			won++
		case !errors.Is(err, ErrBadToken):
			t.Errorf("a losing Redeem: %v, want ErrBadToken", err)
		}
	}
	if won != 1 {
		t.Errorf("%d clients redeemed one token, want 1", won)
	}
}

// A web token logs a browser in once: its user becomes a web client, the
// session it opens is found by its id (never stored in clear), and a
// certificate cannot spend it, nor a browser a certificate's token.
func TestAWebTokenOpensOneSession(t *testing.T) {
	s, path, c := open(t)
	secret, _, err := s.IssueWeb("alice", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Redeem(secret, cert(t)); !errors.Is(err, ErrBadToken) {
		t.Fatalf("a certificate spending a web token: %v", err)
	}
	certSecret := issue(t, s, "laptop", time.Hour)
	if _, _, _, err := s.Login(certSecret); !errors.Is(err, ErrBadToken) {
		t.Fatalf("a browser spending a certificate's token: %v", err)
	}
	client, id, expires, err := s.Login(secret)
	if err != nil {
		t.Fatal(err)
	}
	if client.Name != "alice" || !client.Web || !expires.Equal(c.now().Add(SessionLifetime)) {
		t.Fatalf("login: %+v until %s", client, expires)
	}
	if _, _, _, err := s.Login(secret); !errors.Is(err, ErrBadToken) {
		t.Fatalf("a second login with one link: %v", err)
	}
	if got, _, ok := s.Session(id); !ok || got.Name != "alice" {
		t.Fatalf("the session: %+v, %v", got, ok)
	}
	if _, _, ok := s.Session(id + "0"); ok {
		t.Fatal("another id opened the session")
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(data), id) || strings.Contains(string(data), secret) {
		t.Fatal("the store holds a session id or a secret in clear")
	}
	reopened, err := Open(path, c.now)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, ok := reopened.Session(id); !ok {
		t.Fatal("the session did not survive reopening the store")
	}
	c.advance(SessionLifetime)
	if _, _, ok := s.Session(id); ok {
		t.Fatal("an expired session still opens")
	}
}

// A web user logs in again with a new link (another browser), keeping
// one client; logging out ends one session; removing the user ends all.
func TestWebSessionsEndByLogoutOrRemoval(t *testing.T) {
	s, _, _ := open(t)
	login := func() string {
		t.Helper()
		secret, _, err := s.IssueWeb("alice", time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		_, id, _, err := s.Login(secret)
		if err != nil {
			t.Fatal(err)
		}
		return id
	}
	first, second, third := login(), login(), login()
	if list := s.List(); len(list) != 1 || list[0].Kind != api.TrustKindWeb {
		t.Fatalf("three logins of alice: %+v, want one web client", list)
	}
	if err := s.EndSession(first); err != nil {
		t.Fatal(err)
	}
	if _, _, ok := s.Session(first); ok {
		t.Fatal("a logged-out session still opens")
	}
	if _, _, ok := s.Session(second); !ok {
		t.Fatal("logging one session out ended another")
	}
	if _, err := s.Remove("alice"); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{second, third} {
		if _, _, ok := s.Session(id); ok {
			t.Fatal("a removed user's session still opens")
		}
	}
	if _, _, err := s.IssueWeb("laptop-web", time.Hour); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.IssueWeb("laptop-web", time.Hour); !errors.Is(err, api.ErrExists) {
		t.Fatalf("a second web link while one waits: %v, want exists", err)
	}
}
