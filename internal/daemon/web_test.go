package daemon

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/polyvisor/polyvisor/internal/trust"
	"github.com/polyvisor/polyvisor/pkg/api"
)

// browser is a test's browser: cookies kept as a browser keeps them, no
// client certificate, the daemon's certificate taken as it is.
type browser struct {
	t    *testing.T
	base string
	http *http.Client
	csrf string
}

func newBrowser(t *testing.T, addr string) *browser {
	jar, _ := cookiejar.New(nil)
	tr := &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS13}} //nolint:gosec // a browser the user told to accept the daemon's certificate
	t.Cleanup(tr.CloseIdleConnections)
	return &browser{t: t, base: "https://" + addr, http: &http.Client{Jar: jar, Transport: tr, Timeout: 10 * time.Second}}
}

// do sends a request as the page would, with headers; it returns the
// status and body.
func (b *browser) do(method, path string, body []byte, headers map[string]string) (int, string) {
	b.t.Helper()
	req, err := http.NewRequest(method, b.base+path, bytes.NewReader(body))
	if err != nil {
		b.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := b.http.Do(req)
	if err != nil {
		b.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(data)
}

// login opens the one-time link's secret as the page does.
func (b *browser) login(secret string) (int, string) {
	b.t.Helper()
	status, body := b.do(http.MethodPost, loginPath, []byte(`{"secret":"`+secret+`"}`), map[string]string{"Origin": b.base})
	if status == http.StatusOK {
		var l webLogin
		if err := json.Unmarshal([]byte(body), &l); err != nil {
			b.t.Fatal(err)
		}
		b.csrf = l.CSRF
	}
	return status, body
}

// issueWeb makes a web login link over the unix side and returns its
// secret.
func (h *harness) issueWeb(name string) string {
	h.t.Helper()
	r := h.do(http.MethodPost, "/trust/tokens", api.TrustTokenCreate{Name: name, Web: true})
	if r.status != http.StatusCreated {
		h.t.Fatalf("issue a web link: %s", r)
	}
	var issued api.TrustTokenIssued
	if err := json.Unmarshal(r.body, &issued); err != nil {
		h.t.Fatal(err)
	}
	if len(issued.URLs) == 0 || issued.Token != "" {
		h.t.Fatalf("a web link answer: %+v", issued)
	}
	_, secret, ok := strings.Cut(issued.URLs[0], "/ui/#/login/")
	if !ok || !strings.HasPrefix(issued.URLs[0], "https://") {
		h.t.Fatalf("login link %q", issued.URLs[0])
	}
	return secret
}

// A login link works once: it sets a session cookie a browser keeps to
// this site alone (HttpOnly, Secure, SameSite=Strict), with which the
// page reads the API; the same link again is refused.
func TestWebLoginSetsAStrictCookieOnce(t *testing.T) {
	h := newHarness(t)
	addr := h.serveTLS()
	secret := h.issueWeb("alice")
	b := newBrowser(t, addr)
	req, _ := http.NewRequest(http.MethodPost, b.base+loginPath, strings.NewReader(`{"secret":"`+secret+`"}`))
	resp, err := b.http.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	cookies := resp.Cookies()
	if resp.StatusCode != http.StatusOK || len(cookies) != 1 {
		t.Fatalf("login: %s, cookies %v", resp.Status, cookies)
	}
	c := cookies[0]
	if c.Name != sessionCookie || !c.HttpOnly || !c.Secure || c.SameSite != http.SameSiteStrictMode || c.Path != "/" || c.Expires.IsZero() {
		t.Fatalf("session cookie %+v: want HttpOnly, Secure, SameSite=Strict, Path=/, an expiry", c)
	}
	if status, body := b.do(http.MethodGet, api.Version+"/guests", nil, nil); status != http.StatusOK {
		t.Fatalf("the logged-in page lists guests: %d %s", status, body)
	}
	status, body := b.do(http.MethodGet, webAPIPrefix+"session", nil, nil)
	if status != http.StatusOK || !strings.Contains(body, `"name":"alice"`) || !strings.Contains(body, csrfToken(c.Value)) {
		t.Fatalf("session: %d %s", status, body)
	}
	other := newBrowser(t, addr)
	if status, _ := other.login(secret); status != http.StatusForbidden {
		t.Fatalf("the same link a second time: %d, want 403", status)
	}
	if status, _ := other.do(http.MethodGet, api.Version+"/guests", nil, nil); status != http.StatusUnauthorized {
		t.Fatalf("a browser that was refused lists guests: %d, want 401", status)
	}
	if list := h.d.trust.List(); len(list) != 1 || list[0].Kind != api.TrustKindWeb {
		t.Fatalf("trust after a web login: %+v", list)
	}
}

// With a session, a state-changing request needs the session's CSRF token
// and, when the browser names an origin, this site's: a cross-site POST
// (no token, a wrong one, another origin) is refused and does nothing.
func TestWebSessionRefusesCrossSiteWrites(t *testing.T) {
	h := newHarness(t)
	addr := h.serveTLS()
	b := newBrowser(t, addr)
	if status, body := b.login(h.issueWeb("alice")); status != http.StatusOK {
		t.Fatalf("login: %d %s", status, body)
	}
	create := func(name string) []byte {
		data, _ := json.Marshal(api.GuestCreate{Name: name, Template: testTemplate})
		return data
	}
	for what, headers := range map[string]map[string]string{
		"no CSRF token":  {"Origin": b.base},
		"a wrong token":  {"Origin": b.base, csrfHeader: strings.Repeat("0", 64)},
		"another origin": {"Origin": "https://evil.example", csrfHeader: b.csrf},
		"a null origin":  {"Origin": "null", csrfHeader: b.csrf},
		"an empty token": {csrfHeader: ""},
	} {
		if status, body := b.do(http.MethodPost, api.Version+"/guests", create("evil"), headers); status != http.StatusForbidden {
			t.Errorf("a create with %s: %d %s, want 403", what, status, body)
		}
	}
	if _, err := h.d.guests.get("evil"); err == nil {
		t.Fatal("a refused cross-site request made a guest")
	}
	status, body := b.do(http.MethodPost, api.Version+"/guests", create("web"), map[string]string{"Origin": b.base, csrfHeader: b.csrf})
	if status != http.StatusAccepted {
		t.Fatalf("the page's own create: %d %s", status, body)
	}
}

// A session ends: at its expiry, at log out (its cookie then opens
// nothing), and when its user is removed, which closes its event stream
// at once.
func TestWebSessionsEnd(t *testing.T) {
	h := newHarness(t)
	addr := h.serveTLS()
	advance := h.trustClock()

	expiring := newBrowser(t, addr)
	expiring.login(h.issueWeb("alice"))
	advance(trust.SessionLifetime + time.Minute)
	if status, _ := expiring.do(http.MethodGet, api.Version+"/guests", nil, nil); status != http.StatusUnauthorized {
		t.Fatalf("an expired session lists guests: %d, want 401", status)
	}

	leaving := newBrowser(t, addr)
	leaving.login(h.issueWeb("alice")) // alice logs in again
	cookie := leaving.http.Jar.Cookies(mustURL(t, leaving.base))
	if status, _ := leaving.do(http.MethodPost, webAPIPrefix+"logout", nil, map[string]string{csrfHeader: leaving.csrf}); status != http.StatusNoContent {
		t.Fatalf("log out: %d", status)
	}
	replay := newBrowser(t, addr)
	replay.http.Jar.SetCookies(mustURL(t, replay.base), cookie)
	if status, _ := replay.do(http.MethodGet, api.Version+"/guests", nil, nil); status != http.StatusUnauthorized {
		t.Fatalf("a logged-out session's cookie lists guests: %d, want 401", status)
	}

	staying := newBrowser(t, addr)
	staying.login(h.issueWeb("alice"))
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, "wss://"+addr+api.Version+"/events", &websocket.DialOptions{HTTPClient: staying.http})
	if err != nil {
		t.Fatal(err)
	}
	defer ws.CloseNow()
	if r := h.do(http.MethodDelete, "/trust/alice", nil); r.status != http.StatusNoContent {
		t.Fatalf("remove alice: %s", r)
	}
	ended := make(chan error, 1)
	go func() {
		_, _, err := ws.Read(ctx)
		ended <- err
	}()
	select {
	case err := <-ended:
		if err == nil {
			t.Fatal("the removed user's event stream sent an event instead of ending")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the removed user's event stream is open 5 s after the removal")
	}
	if status, _ := staying.do(http.MethodGet, api.Version+"/guests", nil, nil); status != http.StatusUnauthorized {
		t.Fatalf("a removed user's session lists guests: %d, want 401", status)
	}
}

func mustURL(t *testing.T, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}
