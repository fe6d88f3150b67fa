package daemon

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/polyvisor/polyvisor/internal/pki"
	"github.com/polyvisor/polyvisor/internal/trust"
	"github.com/polyvisor/polyvisor/internal/webui"
	"github.com/polyvisor/polyvisor/pkg/api"
)

// The API over the network: HTTPS (TLS 1.3) on --listen, clients known by
// their certificate's fingerprint (internal/trust). The unix socket keeps
// its own gate, its mode (root only); over it no certificate is asked.

// ListenAddress completes a --listen value: a host alone gets
// api.DefaultPort.
func ListenAddress(addr string) (string, error) {
	if _, _, err := net.SplitHostPort(addr); err == nil {
		return addr, nil
	}
	host := addr
	if len(host) > 1 && host[0] == '[' && host[len(host)-1] == ']' {
		host = host[1 : len(host)-1]
	}
	joined := net.JoinHostPort(host, api.DefaultPort)
	if _, _, err := net.SplitHostPort(joined); err != nil || host == "" {
		return "", fmt.Errorf("--listen %q: give ADDR:PORT, such as 0.0.0.0:%s or [::1]:%s", addr, api.DefaultPort, api.DefaultPort)
	}
	return joined, nil
}

// remote is the daemon's network side: its key pair, where it listens,
// whom it trusts and which connections each trusted client holds.
type remote struct {
	// pair is the server's key pair; members present it as clients too.
	pair        tls.Certificate
	fingerprint string
	listener    net.Listener
	// addr is where it listens: a token names it, or every address of the
	// host's (as they are when the token is made) for a wildcard.
	addr  *net.TCPAddr
	conns *connTracker
}

// openTrust loads the trust store (it exists with or without --listen:
// tokens and clients outlive a daemon started without it).
func (d *Daemon) openTrust() error {
	store, err := trust.Open(d.layout.TrustFile(), nil)
	if err != nil {
		return err
	}
	d.trust = store
	return nil
}

// listenTLS opens the HTTPS listener, making the server's key pair on
// first use.
func (d *Daemon) listenTLS(addr string) (*remote, error) {
	host, _ := os.Hostname()
	dir := d.layout.TLSDir()
	pair, err := pki.LoadOrCreate(dir+"/server.crt", dir+"/server.key", pki.Server, host)
	if err != nil {
		return nil, err
	}
	leaf, err := pki.Leaf(pair)
	if err != nil {
		return nil, err
	}
	tcp, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("--listen %s: %w", addr, err)
	}
	conns := &connTracker{byName: map[string]map[*trackedConn]struct{}{}}
	cfg := &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{pair},
		// Any certificate is taken at the handshake and judged per request
		// (authenticate): an untrusted client must still reach the one
		// route that redeems a token, and hear why it is refused.
		ClientAuth: tls.RequestClientCert,
		// HTTP/1.1 only: exec and console streams take the connection over.
		NextProtos: []string{"http/1.1"},
	}
	return &remote{
		pair:        pair,
		fingerprint: pki.Fingerprint(leaf),
		listener:    tls.NewListener(&trackingListener{Listener: tcp, conns: conns}, cfg),
		addr:        tcp.Addr().(*net.TCPAddr),
		conns:       conns,
	}, nil
}

// advertise lists where clients may reach a listener: its own address,
// or for one on all addresses, each of the host's (loopback last, for a
// client on this very host).
func advertise(addr *net.TCPAddr) []string {
	port := fmt.Sprint(addr.Port)
	if !addr.IP.IsUnspecified() {
		return []string{net.JoinHostPort(addr.IP.String(), port)}
	}
	ifaddrs, _ := net.InterfaceAddrs()
	var out, loopback []string
	for _, a := range ifaddrs {
		ipnet, ok := a.(*net.IPNet)
		if !ok || ipnet.IP.IsLinkLocalUnicast() || (addr.IP.To4() != nil && ipnet.IP.To4() == nil) {
			continue
		}
		hp := net.JoinHostPort(ipnet.IP.String(), port)
		if ipnet.IP.IsLoopback() {
			loopback = append(loopback, hp)
		} else {
			out = append(out, hp)
		}
	}
	return append(out, loopback...)
}

// Request context keys: the connection a request came on, and the
// trusted client that sent it.
type (
	connKey   struct{}
	clientKey struct{}
)

// healthPath is the one route that answers without a certificate.
const healthPath = api.Version + "/health"

// maxBody bounds every request body: the API's bodies are small JSON and
// YAML documents.
const maxBody = 1 << 20

// authenticate lets a request through when it came on the unix socket,
// asks for the health of the daemon or the web console's files, or comes
// from a trusted client: a certificate it trusts, or a browser's session
// cookie (whose state-changing requests carry the session's CSRF token).
// It answers 401 to a stranger and 403 to an untrusted certificate,
// except to redeem a token or log a browser in.
func (d *Daemon) authenticate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Body != nil {
			limit := int64(maxBody)
			if r.Method == http.MethodPost && r.URL.Path == uploadPath ||
				r.Method == http.MethodPut && strings.HasPrefix(r.URL.Path, api.Version+"/cluster/replicas/") {
				limit = maxUpload // an upload's or a replica's file, bounded by checkUploadSize
			}
			r.Body = http.MaxBytesReader(w, r.Body, limit)
		}
		if r.TLS == nil || public(r) {
			next.ServeHTTP(w, r)
			return
		}
		var name string
		var still func() bool
		if len(r.TLS.PeerCertificates) > 0 {
			fp := pki.Fingerprint(r.TLS.PeerCertificates[0])
			client, ok := d.trust.Trusted(fp)
			if member, isMember := d.memberByFingerprint(fp); !ok && isMember {
				// A cluster member, known by the fingerprint it recorded
				// in the cluster's store when it was admitted.
				client, ok = trust.Client{Name: "member " + member}, true
			}
			if !ok {
				admit := r.URL.Path == api.Version+"/cluster/members" && d.clusterNow() != nil
				if r.Method == http.MethodPost && (r.URL.Path == api.Version+"/trust" || admit) {
					next.ServeHTTP(w, r) // redeems a token (handleTrustJoin, handleClusterAdmit)
					return
				}
				writeError(w, fmt.Errorf("%w: this client's certificate is not trusted here (it was never added, or it was removed): ask the server's admin for a token ('polyvisor trust add NAME')", api.ErrForbidden))
				return
			}
			name = client.Name
			still = func() bool {
				_, ok := d.trust.Trusted(fp)
				_, isMember := d.memberByFingerprint(fp)
				return ok || isMember
			}
		} else {
			s, err := d.webSession(r)
			if err != nil {
				writeError(w, err)
				return
			}
			name = s.name
			r = r.WithContext(context.WithValue(r.Context(), sessionKey{}, s))
			still = func() bool { _, _, ok := d.trust.Session(s.id); return ok }
		}
		conn := trackedOf(r)
		d.remote.conns.own(conn, name)
		// Revocation closes what it finds owned; one that raced it is
		// caught here, owned but no longer trusted.
		if !still() {
			conn.Close()
			return
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), clientKey{}, name)))
	})
}

// public says whether a request needs no client: the daemon's health, the
// web console's files (they hold no secret: the data comes through the
// API), and a browser's login, which redeems a token.
func public(r *http.Request) bool {
	switch {
	case r.Method == http.MethodGet && r.URL.Path == healthPath:
		return true
	case r.Method == http.MethodGet && strings.HasPrefix(r.URL.Path, webui.Prefix) && !strings.HasPrefix(r.URL.Path, webAPIPrefix):
		return true
	case r.Method == http.MethodPost && r.URL.Path == loginPath:
		return true
	}
	return false
}

// clientName says who sent a request.
func clientName(r *http.Request) string {
	if name, ok := r.Context().Value(clientKey{}).(string); ok {
		return name
	}
	return "root (unix socket)"
}

// trackedOf is the TCP connection under a TLS request.
func trackedOf(r *http.Request) *trackedConn {
	tc, _ := r.Context().Value(connKey{}).(*tls.Conn)
	if tc == nil {
		return nil
	}
	c, _ := tc.NetConn().(*trackedConn)
	return c
}

// connTracker knows which trusted client (by name) holds which
// connections, so that removing a client closes them: its keep-alive
// connections, event streams, exec sessions and consoles alike.
type connTracker struct {
	mu     sync.Mutex
	byName map[string]map[*trackedConn]struct{}
}

func (t *connTracker) own(c *trackedConn, name string) {
	if c == nil {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if c.owner == name {
		return
	}
	if old := t.byName[c.owner]; old != nil {
		delete(old, c)
	}
	set := t.byName[name]
	if set == nil {
		set = map[*trackedConn]struct{}{}
		t.byName[name] = set
	}
	set[c] = struct{}{}
	c.owner = name
}

func (t *connTracker) forget(c *trackedConn) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if set := t.byName[c.owner]; set != nil {
		delete(set, c)
		if len(set) == 0 {
			delete(t.byName, c.owner)
		}
	}
}

// closeAll closes every connection of the named client and returns how
// many there were.
func (t *connTracker) closeAll(name string) int {
	t.mu.Lock()
	conns := make([]*trackedConn, 0, len(t.byName[name]))
	for c := range t.byName[name] {
		conns = append(conns, c)
	}
	t.mu.Unlock()
	for _, c := range conns {
		c.Close()
	}
	return len(conns)
}

// count is how many connections trusted clients hold (tests).
func (t *connTracker) count() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := 0
	for _, set := range t.byName {
		n += len(set)
	}
	return n
}

// trackingListener hands out connections that leave the tracker when
// they close, whoever closes them: net/http, or a handler that took the
// connection over.
type trackingListener struct {
	net.Listener
	conns *connTracker
}

func (l *trackingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &trackedConn{Conn: c, tracker: l.conns}, nil
}

// trackedConn is a TCP connection; owner is the name of the trusted
// client using it (guarded by the tracker's lock).
type trackedConn struct {
	net.Conn
	tracker *connTracker
	owner   string
	once    sync.Once
}

func (c *trackedConn) Close() error {
	c.once.Do(func() { c.tracker.forget(c) })
	return c.Conn.Close()
}

// handleHealth answers anyone: the daemon is up.
func (d *Daemon) handleHealth(*http.Request) (any, error) {
	return api.Health{Status: "ok"}, nil
}

// handleTrustList lists trusted clients and live tokens, never a secret.
func (d *Daemon) handleTrustList(*http.Request) (any, error) {
	return d.trust.List(), nil
}

// handleTrustToken issues a token for a client to be.
func (d *Daemon) handleTrustToken(r *http.Request) (any, error) {
	if d.remote == nil {
		return nil, fmt.Errorf("%w: this daemon does not listen on the network, so a token would lead nowhere: restart it with --listen ADDR:PORT", api.ErrNotAvailable)
	}
	var req api.TrustTokenCreate
	if err := readJSON(r, &req); err != nil {
		return nil, err
	}
	lifetime := trust.DefaultTokenLifetime
	if req.ExpiresIn != "" {
		var err error
		if lifetime, err = time.ParseDuration(req.ExpiresIn); err != nil {
			return nil, fmt.Errorf("%w: expiry %q: give a Go duration such as 30m or 24h", api.ErrInvalid, req.ExpiresIn)
		}
	}
	issue := d.trust.Issue
	if req.Web {
		issue = d.trust.IssueWeb
	}
	secret, expires, err := issue(req.Name, lifetime)
	if err != nil {
		return nil, err
	}
	d.log.Info("issued a trust token", "name", req.Name, "web", req.Web, "expires", expires.Format(time.RFC3339), "by", clientName(r))
	addrs := advertise(d.remote.addr)
	if req.Web {
		urls := make([]string, len(addrs))
		for i, a := range addrs {
			urls[i] = "https://" + a + webui.Prefix + "#/login/" + secret
		}
		return api.TrustTokenIssued{Name: req.Name, URLs: urls, ExpiresAt: expires}, nil
	}
	token := api.TrustToken{Name: req.Name, Addresses: addrs, Fingerprint: d.remote.fingerprint, Secret: secret, ExpiresAt: expires}
	return api.TrustTokenIssued{Name: req.Name, Token: token.Encode(), ExpiresAt: expires}, nil
}

// handleTrustJoin trusts the certificate a client connected with, for the
// secret of a live token.
func (d *Daemon) handleTrustJoin(r *http.Request) (any, error) {
	if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
		return nil, fmt.Errorf("%w: a token is redeemed over HTTPS with a client certificate: 'polyvisor remote add NAME TOKEN' does it", api.ErrInvalid)
	}
	var req api.TrustJoin
	if err := readJSON(r, &req); err != nil {
		return nil, err
	}
	c, err := d.trust.Redeem(req.Secret, r.TLS.PeerCertificates[0])
	if err != nil {
		d.log.Warn("refused a trust token", "from", r.RemoteAddr, "err", err)
		return nil, err
	}
	d.log.Info("trusted a client", "name", c.Name, "fingerprint", c.Fingerprint, "from", r.RemoteAddr)
	return api.TrustEntry{Name: c.Name, Kind: api.TrustKindClient, Fingerprint: c.Fingerprint, AddedAt: c.AddedAt}, nil
}

// handleTrustRemove distrusts a client, closing every connection it
// holds, or revokes a token.
func (d *Daemon) handleTrustRemove(r *http.Request) (any, error) {
	name := r.PathValue("name")
	if _, err := d.trust.Remove(name); err != nil {
		return nil, err
	}
	closed := 0
	if d.remote != nil {
		closed = d.remote.conns.closeAll(name)
	}
	d.log.Info("removed trust", "name", name, "connections-closed", closed, "by", clientName(r))
	return nil, nil
}

// serveRemote serves h on the HTTPS listener until ctx ends.
func (d *Daemon) serveRemote(ctx context.Context, h http.Handler) (*http.Server, <-chan error) {
	srv := newServer(ctx, h, readTimeout)
	// Failed handshakes (scanners, clients pinning another certificate)
	// are the client's business: debug lines, in the daemon's own log.
	srv.ErrorLog = slog.NewLogLogger(d.log.Handler(), slog.LevelDebug)
	srv.ConnContext = func(ctx context.Context, c net.Conn) context.Context {
		return context.WithValue(ctx, connKey{}, c)
	}
	served := make(chan error, 1)
	go func() {
		err := srv.Serve(d.remote.listener)
		if errors.Is(err, http.ErrServerClosed) {
			err = nil
		}
		served <- err
	}()
	return srv, served
}

// listening is where the daemon serves HTTPS, for `server info`.
func (d *Daemon) listening() (addrs []string, fingerprint string) {
	if d.remote == nil {
		return nil, ""
	}
	return advertise(d.remote.addr), d.remote.fingerprint
}
