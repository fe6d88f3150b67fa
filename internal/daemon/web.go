package daemon

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"github.com/coder/websocket"

	"github.com/polyvisor/polyvisor/internal/stream"
	"github.com/polyvisor/polyvisor/internal/webui"
	"github.com/polyvisor/polyvisor/pkg/api"
)

// The web console's side of the daemon: a browser logs in with a one-time
// link (trust add NAME --web), which gives it a session cookie; the page
// then speaks the REST API with that cookie, and every state-changing
// request carries the session's CSRF token.

const (
	webAPIPrefix = webui.Prefix + "api/"
	loginPath    = webAPIPrefix + "login"
	// sessionCookie holds the session id: HttpOnly, Secure, SameSite=Strict.
	sessionCookie = "polyvisor_session"
	// csrfHeader carries the CSRF token on POST, PUT, PATCH and DELETE.
	csrfHeader = "X-CSRF-Token"
)

// sessionKey keys a request's web session in its context.
type sessionKey struct{}

// webSession is the session a browser's request came with.
type webSession struct {
	id, name string
	expires  time.Time
}

// csrfToken is the session's CSRF token: derived from its id, which only
// the browser's cookie holds, so that another site can neither read nor
// make it.
func csrfToken(sessionID string) string {
	sum := sha256.Sum256([]byte("polyvisor-csrf:" + sessionID))
	return hex.EncodeToString(sum[:])
}

// webSession checks a browser's request: a live session's cookie, and for
// a state-changing request the session's CSRF token and an Origin (when
// the browser sends one) of this very host.
func (d *Daemon) webSession(r *http.Request) (webSession, error) {
	cookie, err := r.Cookie(sessionCookie)
	if err != nil {
		return webSession{}, fmt.Errorf("%w: this daemon answers only clients it trusts: a certificate ('polyvisor remote add'), or a browser logged in with a link from 'polyvisor trust add NAME --web'", api.ErrUnauthenticated)
	}
	client, expires, ok := d.trust.Session(cookie.Value)
	if !ok {
		return webSession{}, fmt.Errorf("%w: the browser's session ended (it expired, was logged out or its user removed): ask for a new login link ('polyvisor trust add NAME --web')", api.ErrUnauthenticated)
	}
	switch r.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
	default:
		if !sameOrigin(r) {
			return webSession{}, fmt.Errorf("%w: a request from another site (Origin %s) is refused", api.ErrForbidden, r.Header.Get("Origin"))
		}
		if subtle.ConstantTimeCompare([]byte(r.Header.Get(csrfHeader)), []byte(csrfToken(cookie.Value))) != 1 {
			return webSession{}, fmt.Errorf("%w: the request lacks the session's CSRF token (header %s): reload the page", api.ErrForbidden, csrfHeader)
		}
	}
	return webSession{id: cookie.Value, name: client.Name, expires: expires}, nil
}

// sameOrigin says whether a request's Origin, if it has one, is the host
// it was sent to.
func sameOrigin(r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true
	}
	u, err := url.Parse(origin)
	return err == nil && u.Host == r.Host
}

// webLogin is the answer of the login and session routes.
type webLogin struct {
	Name      string    `json:"name"`
	CSRF      string    `json:"csrf"`
	ExpiresAt time.Time `json:"expiresAt"`
}

// handleLogin spends a web token's secret and opens a session.
func (d *Daemon) handleLogin(w http.ResponseWriter, r *http.Request) {
	if r.TLS == nil {
		writeError(w, fmt.Errorf("%w: a browser logs in over HTTPS (daemon --listen)", api.ErrInvalid))
		return
	}
	if !sameOrigin(r) {
		writeError(w, fmt.Errorf("%w: a login from another site is refused", api.ErrForbidden))
		return
	}
	var req api.TrustJoin
	if err := readJSON(r, &req); err != nil {
		writeError(w, err)
		return
	}
	client, id, expires, err := d.trust.Login(req.Secret)
	if err != nil {
		d.log.Warn("refused a web login", "from", r.RemoteAddr, "err", err)
		writeError(w, err)
		return
	}
	d.log.Info("a browser logged in", "name", client.Name, "from", r.RemoteAddr, "expires", expires.Format(time.RFC3339))
	http.SetCookie(w, &http.Cookie{
		Name: sessionCookie, Value: id, Path: "/", Expires: expires,
		HttpOnly: true, Secure: true, SameSite: http.SameSiteStrictMode,
	})
	writeJSON(w, http.StatusOK, webLogin{Name: client.Name, CSRF: csrfToken(id), ExpiresAt: expires})
}

// sessionOf is a request's web session, or an error for one that came
// otherwise (a certificate, the unix socket).
func sessionOf(r *http.Request) (webSession, error) {
	s, ok := r.Context().Value(sessionKey{}).(webSession)
	if !ok {
		return webSession{}, fmt.Errorf("%w: no browser session: this request came with a certificate or on the unix socket", api.ErrNotFound)
	}
	return s, nil
}

// handleSession tells the page who is logged in, and the CSRF token its
// requests carry.
func (d *Daemon) handleSession(r *http.Request) (any, error) {
	s, err := sessionOf(r)
	if err != nil {
		return nil, err
	}
	return webLogin{Name: s.name, CSRF: csrfToken(s.id), ExpiresAt: s.expires}, nil
}

// handleLogout ends the session and clears its cookie.
func (d *Daemon) handleLogout(w http.ResponseWriter, r *http.Request) {
	s, err := sessionOf(r)
	if err == nil {
		err = d.trust.EndSession(s.id)
	}
	if err != nil {
		writeError(w, err)
		return
	}
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: "", Path: "/", MaxAge: -1, HttpOnly: true, Secure: true, SameSite: http.SameSiteStrictMode})
	w.WriteHeader(http.StatusNoContent)
}

// consoleControl is a text message on the console websocket: the page's
// terminal size, or the guest's end.
type consoleControl struct {
	Type string `json:"type"` // "resize" (page to daemon) or "exit" (daemon to page)
	Cols uint16 `json:"cols,omitempty"`
	Rows uint16 `json:"rows,omitempty"`
	Code *int32 `json:"code,omitempty"`
}

// handleConsoleWS is a guest's console as a websocket, for a browser's
// terminal: binary messages carry its bytes both ways, text messages
// resize it (page to daemon) or say the guest ended (daemon to page). The
// upgrade checks Origin; the socket closes when the guest stops (and so
// when it is deleted).
func (d *Daemon) handleConsoleWS(w http.ResponseWriter, r *http.Request) {
	def, monitor, ok := d.attachConsole(w, r)
	if !ok {
		return
	}
	defer monitor.Close()
	ws, err := websocket.Accept(w, r, nil)
	if err != nil {
		return // Accept answered (403 for another origin)
	}
	defer ws.CloseNow()
	ctx, cancel := context.WithCancel(d.ctx)
	defer cancel()
	go func() {
		<-ctx.Done()
		monitor.Close() // ends the read below
	}()
	go func() {
		defer cancel()
		in := stream.NewFrameWriter(monitor)
		for {
			typ, data, err := ws.Read(ctx)
			if err != nil {
				return
			}
			if typ == websocket.MessageBinary {
				err = in.WriteFrame(stream.Stdin, data)
			} else {
				var c consoleControl
				if json.Unmarshal(data, &c) == nil && c.Type == "resize" && c.Cols > 0 && c.Rows > 0 {
					err = in.WriteFrame(stream.Resize, stream.EncodeResize(c.Rows, c.Cols))
				}
			}
			if err != nil {
				return
			}
		}
	}()
	for {
		f, err := stream.ReadFrame(monitor)
		if err != nil {
			ws.Close(websocket.StatusNormalClosure, "console closed")
			return
		}
		switch f.Type {
		case stream.Stdout:
			err = ws.Write(ctx, websocket.MessageBinary, f.Data)
		case stream.Exit:
			code, _ := stream.DecodeExit(f.Data)
			msg, _ := json.Marshal(consoleControl{Type: "exit", Code: &code})
			ws.Write(ctx, websocket.MessageText, msg)
			ws.Close(websocket.StatusNormalClosure, "the guest stopped")
			return
		}
		if err != nil {
			if !errors.Is(err, context.Canceled) {
				d.log.Debug("console websocket", "guest", def.Name, "err", err)
			}
			return
		}
	}
}
