package daemon

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/polyvisor/polyvisor/internal/pki"
	"github.com/polyvisor/polyvisor/internal/trust"
	"github.com/polyvisor/polyvisor/internal/webui"
	"github.com/polyvisor/polyvisor/pkg/api"
	"github.com/polyvisor/polyvisor/pkg/client"
)

// serveTLS serves the harness's daemon over HTTPS on a loopback port, as
// --listen does, and returns its address.
func (h *harness) serveTLS() string {
	h.t.Helper()
	r, err := h.d.listenTLS("127.0.0.1:0")
	if err != nil {
		h.t.Fatal(err)
	}
	h.d.remote = r
	srv, served := h.d.serveRemote(h.t.Context(), h.d.routes())
	h.t.Cleanup(func() {
		srv.Close()
		<-served
	})
	return r.addr.String()
}

// clientCert makes a client key pair in a directory of the test's.
func clientCert(t testing.TB) tls.Certificate {
	t.Helper()
	dir := t.TempDir()
	pair, err := pki.LoadOrCreate(filepath.Join(dir, "client.crt"), filepath.Join(dir, "client.key"), pki.Client, "tester")
	if err != nil {
		t.Fatal(err)
	}
	return pair
}

// remoteClient is a client of the daemon at addr, pinning its
// certificate, offering cert (none when cert is nil).
func (h *harness) remoteClient(addr string, cert *tls.Certificate) *client.Client {
	var own tls.Certificate
	if cert != nil {
		own = *cert
	}
	cfg := pki.PinnedConfig(own, h.d.remote.fingerprint)
	if cert == nil {
		cfg.Certificates = nil
	}
	return client.NewRemote(addr, cfg)
}

// trusted returns a client whose certificate the daemon trusts, by a
// token redeemed as `remote add` does.
func (h *harness) trusted(addr, name string) (*client.Client, tls.Certificate) {
	h.t.Helper()
	secret := h.issue(name, time.Hour)
	cert := clientCert(h.t)
	c := h.remoteClient(addr, &cert)
	if _, err := c.RedeemTrustToken(h.t.Context(), secret); err != nil {
		h.t.Fatal(err)
	}
	return c, cert
}

// issue makes a token over the unix side and returns its secret.
func (h *harness) issue(name string, lifetime time.Duration) string {
	h.t.Helper()
	r := h.do(http.MethodPost, "/trust/tokens", api.TrustTokenCreate{Name: name, ExpiresIn: lifetime.String()})
	if r.status != http.StatusCreated {
		h.t.Fatalf("issue a token: %s", r)
	}
	var issued api.TrustTokenIssued
	if err := json.Unmarshal(r.body, &issued); err != nil {
		h.t.Fatal(err)
	}
	token, err := api.ParseTrustToken(issued.Token)
	if err != nil {
		h.t.Fatal(err)
	}
	if token.Fingerprint != h.d.remote.fingerprint || token.Name != name || len(token.Addresses) == 0 {
		h.t.Fatalf("token %+v: want fingerprint %s, name %s and an address", token, h.d.remote.fingerprint, name)
	}
	return token.Secret
}

// trustClock gives the daemon's trust store a clock the test moves, and
// returns what moves it.
func (h *harness) trustClock() (advance func(time.Duration)) {
	h.t.Helper()
	now := time.Now()
	var mu sync.Mutex
	store, err := trust.Open(h.d.layout.TrustFile(), func() time.Time { mu.Lock(); defer mu.Unlock(); return now })
	if err != nil {
		h.t.Fatal(err)
	}
	h.d.trust = store
	return func(d time.Duration) { mu.Lock(); defer mu.Unlock(); now = now.Add(d) }
}

// rawTLS sends one request over HTTPS with cert (none when nil) and
// returns the status and body.
func rawTLS(t *testing.T, addr string, cert *tls.Certificate, method, path string, body []byte) (int, string) {
	t.Helper()
	cfg := &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS13} //nolint:gosec // the test checks the server, not its certificate
	if cert != nil {
		cfg.Certificates = []tls.Certificate{*cert}
	}
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}, Timeout: 10 * time.Second}
	defer hc.CloseIdleConnections()
	req, err := http.NewRequest(method, "https://"+addr+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(data)
}

// concretePath fills a route pattern's wildcards with a guest that exists.
func concretePath(pattern string) (method, path string) {
	method, path, _ = strings.Cut(pattern, " ")
	path = strings.NewReplacer("{name}", "web", "{snap}", "s1", "{id}", "0123456789abcdef", "{host}", "h1").Replace(path)
	return method, path
}

// Every route but health answers 401 to a client without a certificate
// and 403 to one with a certificate it does not trust, and none of them
// touches anything: the guest they name is still there, still running.
func TestEveryRouteButHealthRefusesStrangers(t *testing.T) {
	h := newHarness(t)
	h.create("web", true)
	addr := h.serveTLS()
	stranger := clientCert(t)
	routes := h.d.routeTable()
	if len(routes) < 30 {
		t.Fatalf("%d routes: the table lost some", len(routes))
	}
	for _, r := range routes {
		method, path := concretePath(r.pattern)
		body := []byte(`{"secret":"0000"}`)
		wantAnon, wantStranger := http.StatusUnauthorized, http.StatusForbidden
		switch path {
		case healthPath:
			wantAnon, wantStranger = http.StatusOK, http.StatusOK
		case webui.Prefix:
			// The console's files hold no secret; built or not, they answer.
			wantAnon = http.StatusOK
			if !webui.Built() {
				wantAnon = http.StatusServiceUnavailable
			}
			wantStranger = wantAnon
		case loginPath:
			// Anyone may log in, with a secret that works: this one does not.
			wantAnon = http.StatusForbidden
		}
		if status, text := rawTLS(t, addr, nil, method, path, body); status != wantAnon {
			t.Errorf("%s %s without a certificate: %d %s, want %d", method, path, status, text, wantAnon)
		}
		if status, text := rawTLS(t, addr, &stranger, method, path, body); status != wantStranger {
			t.Errorf("%s %s with an untrusted certificate: %d %s, want %d", method, path, status, text, wantStranger)
		}
	}
	// Not a route at all is refused the same way, not answered 404.
	if status, _ := rawTLS(t, addr, nil, http.MethodGet, "/no/such/thing", nil); status != http.StatusUnauthorized {
		t.Errorf("an unknown path without a certificate: %d, want 401", status)
	}
	if state := h.state("web"); state != "running" {
		t.Fatalf("web after every refused request: %s, want running", state)
	}
	if list := h.d.trust.List(); len(list) != 0 {
		t.Fatalf("refused requests left trust behind: %+v", list)
	}
	// The unix socket asks no certificate: its mode is its gate.
	if r := h.do(http.MethodGet, "/guests/web", nil); r.status != http.StatusOK {
		t.Fatalf("over the unix socket: %s", r)
	}
}

// A token makes one client trusted, once; a second use, an expired token
// and a revoked one are refused with 403, and none of them leaves a
// trusted client behind.
func TestATokenWorksOnceAndExpires(t *testing.T) {
	h := newHarness(t)
	addr := h.serveTLS()
	advance := h.trustClock()
	ctx := t.Context()

	secret := h.issue("laptop", time.Hour)
	first, second := clientCert(t), clientCert(t)
	if _, err := h.remoteClient(addr, &first).RedeemTrustToken(ctx, secret); err != nil {
		t.Fatalf("first use: %v", err)
	}
	if _, err := h.remoteClient(addr, &first).Guests(ctx); err != nil {
		t.Fatalf("the trusted client lists guests: %v", err)
	}
	if _, err := h.remoteClient(addr, &second).RedeemTrustToken(ctx, secret); !errors.Is(err, api.ErrForbidden) {
		t.Fatalf("second use of a token: %v, want forbidden", err)
	}

	expiring := h.issue("phone", 10*time.Minute)
	advance(11 * time.Minute)
	if _, err := h.remoteClient(addr, &second).RedeemTrustToken(ctx, expiring); !errors.Is(err, api.ErrForbidden) {
		t.Fatalf("an expired token: %v, want forbidden", err)
	}

	revoked := h.issue("tablet", time.Hour)
	if r := h.do(http.MethodDelete, "/trust/tablet", nil); r.status != http.StatusNoContent {
		t.Fatalf("revoke a token: %s", r)
	}
	if _, err := h.remoteClient(addr, &second).RedeemTrustToken(ctx, revoked); !errors.Is(err, api.ErrForbidden) {
		t.Fatalf("a revoked token: %v, want forbidden", err)
	}
	if _, err := h.remoteClient(addr, &second).Guests(ctx); !errors.Is(err, api.ErrForbidden) {
		t.Fatalf("the refused client lists guests: %v, want forbidden", err)
	}
	if list := h.d.trust.List(); len(list) != 1 || list[0].Name != "laptop" {
		t.Fatalf("trust after one good token and three bad: %+v, want laptop alone", list)
	}
}

// Removing a client refuses it at once: its event stream and its
// keep-alive connection are closed, and its next request gets 403.
func TestRevokingAClientClosesItsConnections(t *testing.T) {
	h := newHarness(t)
	addr := h.serveTLS()
	c, _ := h.trusted(addr, "laptop")
	other, _ := h.trusted(addr, "desktop")
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	stream, err := c.Events(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer stream.Close()
	otherStream, err := other.Events(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer otherStream.Close()
	if _, err := c.Guests(ctx); err != nil {
		t.Fatal(err)
	}
	if n := h.d.remote.conns.count(); n < 3 {
		t.Fatalf("%d tracked connections with two streams and a keep-alive one open, want 3 or more", n)
	}

	if r := h.do(http.MethodDelete, "/trust/laptop", nil); r.status != http.StatusNoContent {
		t.Fatalf("remove laptop: %s", r)
	}
	ended := make(chan error, 1)
	go func() {
		_, err := stream.Next(ctx)
		ended <- err
	}()
	select {
	case err := <-ended:
		if err == nil {
			t.Fatal("the revoked client's stream sent an event instead of ending")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the revoked client's event stream is still open 5 s after its removal")
	}
	if _, err := c.Guests(ctx); !errors.Is(err, api.ErrForbidden) {
		t.Fatalf("the revoked client lists guests: %v, want forbidden", err)
	}
	// The other client is untouched: its stream still carries events.
	h.create("web", false)
	ev, err := otherStream.Next(ctx)
	if err != nil || ev.Type == "" {
		t.Fatalf("the other client's stream after laptop's removal: %+v, %v", ev, err)
	}
}

// The events websocket over HTTPS refuses a page of another origin, as it
// does on the socket: a browser's cookie or certificate must not let
// another site read the stream.
func TestRemoteEventsCheckOrigin(t *testing.T) {
	h := newHarness(t)
	addr := h.serveTLS()
	_, cert := h.trusted(addr, "laptop")
	cfg := &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{cert}} //nolint:gosec // pinned below by the daemon's own answer
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}}
	defer hc.CloseIdleConnections()
	if status := upgradeFromAnotherOrigin(t, hc, "https://"+addr); status != http.StatusForbidden {
		t.Fatalf("a cross-origin websocket upgrade: %d, want 403", status)
	}
}

// A body over the bound is refused with a line saying so, over either
// side, before the handler acts on any of it.
func TestRequestBodiesAreBounded(t *testing.T) {
	h := newHarness(t)
	addr := h.serveTLS()
	c, _ := h.trusted(addr, "laptop")
	h.create("web", false)
	huge := `{"name":"big","template":"` + strings.Repeat("x", maxBody+1) + `"}`
	if r := h.do(http.MethodPost, "/guests", []byte(huge)); r.status != http.StatusBadRequest || !strings.Contains(string(r.body), "larger than") {
		t.Fatalf("a %d-byte body over the socket: %s, want 400 saying it is too large", len(huge), r)
	}
	_, err := c.ReplaceConfig(t.Context(), "web", []byte(strings.Repeat("#", maxBody+1)))
	if err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Fatalf("a huge guest.yaml over HTTPS: %v, want refused as too large", err)
	}
	if _, err := h.d.guests.get("big"); err == nil {
		t.Fatal("a refused body made a guest")
	}
}

// No token secret reaches the log, server info, trust list or the event
// stream, whatever happens to the token.
func TestNoSecretLeaks(t *testing.T) {
	h := newHarness(t)
	var logged lockedLog
	h.d.log = slog.New(slog.NewTextHandler(&logged, &slog.HandlerOptions{Level: slog.LevelDebug}))
	addr := h.serveTLS()
	unix := h.serveUnix(readTimeout)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	stream, err := unix.Events(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer stream.Close()

	used := h.issue("laptop", time.Hour)
	unused := h.issue("spare", time.Hour)
	cert := clientCert(t)
	c := h.remoteClient(addr, &cert)
	if _, err := c.RedeemTrustToken(ctx, used); err != nil {
		t.Fatal(err)
	}
	stranger := clientCert(t)
	h.remoteClient(addr, &stranger).RedeemTrustToken(ctx, used) // refused, and logged
	h.create("web", false)                                      // an event, so the stream has something
	ev, err := stream.Next(ctx)
	if err != nil {
		t.Fatal(err)
	}
	info, err := c.Server(ctx)
	if err != nil {
		t.Fatal(err)
	}
	list, err := unix.TrustList(ctx)
	if err != nil {
		t.Fatal(err)
	}
	stored, err := os.ReadFile(h.d.layout.TrustFile())
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]string{"log": logged.String(), "trust.json": string(stored)}
	for what, v := range map[string]any{"event": ev, "server info": info, "trust list": list} {
		data, _ := json.Marshal(v)
		seen[what] = string(data)
	}
	for what, text := range seen {
		for _, secret := range []string{used, unused} {
			if strings.Contains(text, secret) {
				t.Errorf("a token's secret appears in the %s: %s", what, text)
			}
		}
	}
	if !strings.Contains(logged.String(), "trusted a client") || !strings.Contains(logged.String(), "refused a trust token") {
		t.Fatalf("the log says nothing of the tokens used: %s", logged.String())
	}
	if info.Client != "laptop" {
		t.Fatalf("server info over HTTPS names the client %q, want laptop", info.Client)
	}
}

// A client that pins another fingerprint never talks to the daemon: the
// handshake fails, saying why.
func TestAClientRefusesAServerOfAnotherFingerprint(t *testing.T) {
	h := newHarness(t)
	addr := h.serveTLS()
	cert := clientCert(t)
	wrong := strings.Repeat("ab", 32)
	_, err := client.NewRemote(addr, pki.PinnedConfig(cert, wrong)).Health(t.Context())
	if !errors.Is(err, client.ErrUnreachable) || !strings.Contains(err.Error(), wrong) {
		t.Fatalf("a client pinning %s: %v, want unreachable naming the pinned fingerprint", wrong, err)
	}
}

type lockedLog struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *lockedLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *lockedLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}
