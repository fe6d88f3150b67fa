// Package client is the Go client of the polyvisor REST API; the CLI uses
// it, and so can any Go program.
package client

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	// A drop-in for encoding/json whose decoder is several times as fast:
	// at 1,000 guests, decoding was most of the CLI's part of a listing.
	"github.com/segmentio/encoding/json"

	"github.com/polyvisor/polyvisor/pkg/api"
)

// Client talks to one daemon: over its unix socket, or over HTTPS to a
// remote one.
type Client struct {
	// where names the daemon in errors; fix says what to do when it
	// cannot be reached.
	where, fix string
	// dial opens a connection the API is spoken on as is: a unix socket's,
	// or a TLS connection already verified, so that plain requests, streams
	// and websockets all take the same way.
	dial func(ctx context.Context) (net.Conn, error)
	http *http.Client
	// remote is a daemon over HTTPS, whose files are not this machine's.
	remote bool
}

// New returns a client of the daemon listening on socket.
func New(socket string) *Client {
	return newClient(socket, "start it with 'polyvisor daemon' or pass --socket", func(ctx context.Context) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", socket)
	})
}

// dialTimeout bounds a TCP connect and TLS handshake to a remote daemon.
const dialTimeout = 10 * time.Second

// NewRemote returns a client of the daemon serving HTTPS at address
// (HOST:PORT), speaking TLS as cfg says (pki.PinnedConfig: the daemon
// known by its fingerprint, this client by its certificate).
func NewRemote(address string, cfg *tls.Config) *Client {
	d := tls.Dialer{NetDialer: &net.Dialer{Timeout: dialTimeout}, Config: cfg}
	c := newClient(address, "check the address, and that its daemon runs with --listen", func(ctx context.Context) (net.Conn, error) {
		return d.DialContext(ctx, "tcp", address)
	})
	c.remote = true
	return c
}

func newClient(where, fix string, dial func(ctx context.Context) (net.Conn, error)) *Client {
	transport := &http.Transport{
		DialContext:  func(ctx context.Context, _, _ string) (net.Conn, error) { return dial(ctx) },
		MaxIdleConns: 4,
	}
	return &Client{where: where, fix: fix, dial: dial, http: &http.Client{Transport: transport}}
}

// apiError is an error answered by the daemon, restoring its sentinel so
// errors.Is works on the client side too.
type apiError struct {
	msg      string
	sentinel error
}

func (e *apiError) Error() string { return e.msg }
func (e *apiError) Unwrap() error { return e.sentinel }

// ErrUnreachable is a daemon that could not be reached at all: no
// connection, or no TLS session with the certificate pinned for it.
var ErrUnreachable = errors.New("cannot reach the polyvisor daemon")

// unreachable explains a failed dial in one line with the fix.
func (c *Client) unreachable(err error) error {
	return fmt.Errorf("%w at %s: %s (%v)", ErrUnreachable, c.where, c.fix, unwrapDial(err))
}

func unwrapDial(err error) error {
	var op *net.OpError
	if errors.As(err, &op) && op.Err != nil {
		return op.Err
	}
	return err
}

// byteStream is a request body sent as it is read: a file's bytes, of a
// length the daemon is told first.
type byteStream struct {
	r    io.Reader
	size int64
}

// request sends one API call; body is JSON-encoded unless it is a []byte
// (YAML) or a byteStream (bytes).
func (c *Client) request(ctx context.Context, method, path string, body any) (*http.Response, error) {
	var reader io.Reader
	contentType := "application/json"
	length := int64(-1)
	switch b := body.(type) {
	case nil:
	case []byte: // already encoded (guest.yaml)
		reader, contentType = bytes.NewReader(b), "application/yaml"
	case byteStream:
		reader, contentType, length = b.r, "application/octet-stream", b.size
	default:
		data, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		reader = bytes.NewReader(data)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://polyvisor"+path, reader)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", contentType)
	}
	if length >= 0 {
		req.ContentLength = length
	}
	resp, err := c.http.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, c.unreachable(err)
	}
	if resp.StatusCode >= 300 {
		defer resp.Body.Close()
		return nil, decodeError(resp)
	}
	return resp, nil
}

func decodeError(resp *http.Response) error {
	var e api.Error
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	if json.Unmarshal(data, &e) != nil || e.Error == "" {
		return fmt.Errorf("daemon answered %s: %s", resp.Status, strings.TrimSpace(string(data)))
	}
	return &apiError{msg: e.Error, sentinel: api.Sentinel(e.Kind)}
}

// call sends a request and decodes the JSON answer into out (if not nil).
func (c *Client) call(ctx context.Context, method, path string, body, out any) error {
	resp, err := c.request(ctx, method, path, body)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if out == nil {
		io.Copy(io.Discard, resp.Body)
		return nil
	}
	data, err := readBody(resp, method, path)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("decode %s %s: %w", method, path, err)
	}
	return nil
}

// readBody reads an answer whole into one buffer of the size the daemon
// announced: a decoder reading as it goes grows and copies its buffer
// (about twice the answer's size, for a listing of 1,000 guests), and in
// a process that has just started, every page of memory it touches first
// costs a fault.
func readBody(resp *http.Response, method, path string) ([]byte, error) {
	buf := bytes.NewBuffer(make([]byte, 0, max(resp.ContentLength, 0)+bytes.MinRead))
	if _, err := buf.ReadFrom(resp.Body); err != nil {
		return nil, fmt.Errorf("read %s %s: %w", method, path, err)
	}
	return buf.Bytes(), nil
}

// Server returns the daemon's own description.
func (c *Client) Server(ctx context.Context) (api.ServerInfo, error) {
	var s api.ServerInfo
	return s, c.call(ctx, http.MethodGet, api.Version, nil, &s)
}

// HostCheck canary-tests every class on the daemon's host.
func (c *Client) HostCheck(ctx context.Context) (api.HostCheck, error) {
	var h api.HostCheck
	return h, c.call(ctx, http.MethodGet, api.Version+"/host/check", nil, &h)
}

// Classes lists the daemon's drivers, what each can do and its verdict.
func (c *Client) Classes(ctx context.Context) ([]api.Class, error) {
	var cs []api.Class
	return cs, c.call(ctx, http.MethodGet, api.Version+"/classes", nil, &cs)
}

// Guests lists every guest.
func (c *Client) Guests(ctx context.Context) ([]api.Guest, error) {
	var gs []api.Guest
	return gs, c.call(ctx, http.MethodGet, api.Version+"/guests", nil, &gs)
}

// GuestSummaries lists every guest as `list` shows it: a fraction of the
// whole guests' JSON, to encode, send and decode.
func (c *Client) GuestSummaries(ctx context.Context) ([]api.GuestSummary, error) {
	var gs []api.GuestSummary
	return gs, c.call(ctx, http.MethodGet, api.Version+"/guests?view="+api.ViewSummary, nil, &gs)
}

// GuestsJSON lists every guest as the daemon encoded it: a JSON array of
// api.Guest. For callers that print the listing, or need a few fields of
// it, without decoding every guest whole: at 1,000 guests that decode
// takes longer than the daemon's answer.
func (c *Client) GuestsJSON(ctx context.Context) (json.RawMessage, error) {
	// Not checked here: whoever decodes or indents it checks it once.
	return c.getRaw(ctx, api.Version+"/guests")
}

// getRaw answers a GET's body as the daemon sent it.
func (c *Client) getRaw(ctx context.Context, path string) ([]byte, error) {
	resp, err := c.request(ctx, http.MethodGet, path, nil)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	return readBody(resp, http.MethodGet, path)
}

// Guest describes one guest.
func (c *Client) Guest(ctx context.Context, name string) (api.Guest, error) {
	var g api.Guest
	return g, c.call(ctx, http.MethodGet, guestPath(name), nil, &g)
}

// CreateGuest starts creating (and, with req.Start, launching) a guest.
func (c *Client) CreateGuest(ctx context.Context, req api.GuestCreate) (api.Operation, error) {
	var op api.Operation
	return op, c.call(ctx, http.MethodPost, api.Version+"/guests", req, &op)
}

// ChangeState starts, stops or restarts a guest.
func (c *Client) ChangeState(ctx context.Context, name string, req api.StateChange) (api.Operation, error) {
	var op api.Operation
	return op, c.call(ctx, http.MethodPut, guestPath(name)+"/state", req, &op)
}

// DeleteGuest removes a guest; force stops it first if it runs.
func (c *Client) DeleteGuest(ctx context.Context, name string, force bool) (api.Operation, error) {
	path := guestPath(name)
	if force {
		path += "?force=1"
	}
	var op api.Operation
	return op, c.call(ctx, http.MethodDelete, path, nil, &op)
}

// Config returns a guest's definition as YAML.
func (c *Client) Config(ctx context.Context, name string) ([]byte, error) {
	resp, err := c.request(ctx, http.MethodGet, guestPath(name)+"/config", nil)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	return io.ReadAll(resp.Body)
}

// SetConfig changes settable keys of a guest.
func (c *Client) SetConfig(ctx context.Context, name string, change api.ConfigChange) (api.ConfigResult, error) {
	var r api.ConfigResult
	return r, c.call(ctx, http.MethodPatch, guestPath(name)+"/config", change, &r)
}

// ConsoleLog copies a guest's saved console log to w.
func (c *Client) ConsoleLog(ctx context.Context, name string, w io.Writer) error {
	resp, err := c.request(ctx, http.MethodGet, guestPath(name)+"/console/log", nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, err = io.Copy(w, resp.Body)
	return err
}

// Templates lists the built templates.
func (c *Client) Templates(ctx context.Context) ([]api.Template, error) {
	var ts []api.Template
	return ts, c.call(ctx, http.MethodGet, api.Version+"/templates", nil, &ts)
}

// Template describes one template.
func (c *Client) Template(ctx context.Context, name string) (api.Template, error) {
	var t api.Template
	return t, c.call(ctx, http.MethodGet, api.Version+"/templates/"+url.PathEscape(name), nil, &t)
}

// BuildTemplate starts building a template.
func (c *Client) BuildTemplate(ctx context.Context, req api.TemplateBuild) (api.Operation, error) {
	var op api.Operation
	return op, c.call(ctx, http.MethodPost, api.Version+"/templates", req, &op)
}

// DeleteTemplate removes an unused template.
func (c *Client) DeleteTemplate(ctx context.Context, name string) error {
	return c.call(ctx, http.MethodDelete, api.Version+"/templates/"+url.PathEscape(name), nil, nil)
}

// Networks lists the managed networks.
func (c *Client) Networks(ctx context.Context) ([]api.Network, error) {
	var ns []api.Network
	return ns, c.call(ctx, http.MethodGet, api.Version+"/networks", nil, &ns)
}

// Network describes one network.
func (c *Client) Network(ctx context.Context, name string) (api.Network, error) {
	var n api.Network
	return n, c.call(ctx, http.MethodGet, api.Version+"/networks/"+url.PathEscape(name), nil, &n)
}

// CreateNetwork makes a network and brings it up.
func (c *Client) CreateNetwork(ctx context.Context, req api.NetworkCreate) (api.Network, error) {
	var n api.Network
	return n, c.call(ctx, http.MethodPost, api.Version+"/networks", req, &n)
}

// DeleteNetwork removes a network no guest uses.
func (c *Client) DeleteNetwork(ctx context.Context, name string) error {
	return c.call(ctx, http.MethodDelete, api.Version+"/networks/"+url.PathEscape(name), nil, nil)
}

// Operation returns an operation's current state.
func (c *Client) Operation(ctx context.Context, id string) (api.Operation, error) {
	var op api.Operation
	return op, c.call(ctx, http.MethodGet, api.Version+"/operations/"+id, nil, &op)
}

// Wait blocks until the operation ends and returns its error, if any.
// With onProgress, it is called with each state seen, about five times a
// second; the daemon still answers the moment the operation ends.
func (c *Client) Wait(ctx context.Context, op api.Operation, onProgress func(api.Operation)) error {
	_, err := c.WaitResult(ctx, op, onProgress)
	return err
}

// WaitResult is Wait, returning the finished operation too (its result
// and warnings).
func (c *Client) WaitResult(ctx context.Context, op api.Operation, onProgress func(api.Operation)) (api.Operation, error) {
	wait := "30"
	if onProgress != nil {
		wait = "0.2"
	}
	for op.Status == api.OpRunning {
		if onProgress != nil {
			onProgress(op)
		}
		if err := c.call(ctx, http.MethodGet, api.Version+"/operations/"+op.ID+"/wait?timeout="+wait, nil, &op); err != nil {
			return op, err
		}
	}
	if onProgress != nil {
		onProgress(op)
	}
	if op.Status == api.OpFailure {
		return op, &apiError{msg: op.Error, sentinel: api.Sentinel(op.ErrorKind)}
	}
	return op, nil
}

func guestPath(name string) string { return api.Version + "/guests/" + url.PathEscape(name) }

// ReplaceConfig sends a whole edited guest.yaml.
func (c *Client) ReplaceConfig(ctx context.Context, name string, yamlDoc []byte) (api.ConfigResult, error) {
	var r api.ConfigResult
	return r, c.call(ctx, http.MethodPut, guestPath(name)+"/config", yamlDoc, &r)
}

// Metrics returns the daemon's Prometheus exposition (GET /metrics) as
// text.
func (c *Client) Metrics(ctx context.Context) (string, error) {
	data, err := c.getRaw(ctx, "/metrics")
	return string(data), err
}
