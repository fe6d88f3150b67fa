package daemon

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/polyvisor/polyvisor/pkg/api"
	"github.com/polyvisor/polyvisor/pkg/client"
)

// serveUnix serves the harness's daemon on a unix socket of the test's
// with the daemon's own server and its deadlines (readTimeout given), and
// returns a client of it.
func (h *harness) serveUnix(readTimeout time.Duration) *client.Client {
	h.t.Helper()
	socket := filepath.Join(h.t.TempDir(), "api.sock")
	l, err := net.Listen("unix", socket)
	if err != nil {
		h.t.Fatal(err)
	}
	srv := newServer(h.t.Context(), h.d.routes(), readTimeout)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(l) }()
	h.t.Cleanup(func() {
		srv.Close()
		<-served
	})
	return client.New(socket)
}

// The stream tells a subscriber each step of a guest's life, in order,
// and how each operation ended; a subscriber of lifecycle events alone
// hears no operation.
func TestEventStreamFollowsAGuestsLife(t *testing.T) {
	h := newHarness(t)
	c := h.serveUnix(readTimeout)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	all, err := c.Events(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer all.Close()
	life, err := c.Events(ctx, api.EventLifecycle)
	if err != nil {
		t.Fatal(err)
	}
	defer life.Close()
	if info, err := c.Server(ctx); err != nil || info.EventSubscribers != 2 {
		t.Fatalf("server info with two streams open: %+v, %v", info, err)
	}

	h.create("web", true)
	h.mustRun(http.MethodPut, "/guests/web/state", api.StateChange{Action: "stop"})
	h.mustRun(http.MethodDelete, "/guests/web", nil)

	want := []string{api.GuestCreated, api.GuestStarted, api.GuestStopped, api.GuestDeleted}
	var got []string
	for len(got) < len(want) {
		e, err := life.Next(ctx)
		if err != nil {
			t.Fatalf("lifecycle events so far %v: %v", got, err)
		}
		if e.Type != api.EventLifecycle || e.Guest != "web" || e.Time.IsZero() {
			t.Fatalf("lifecycle subscriber got %+v", e)
		}
		got = append(got, e.Action)
	}
	if !slices.Equal(got, want) {
		t.Errorf("lifecycle events %v, want %v", got, want)
	}

	// The other subscriber hears the same, between each operation's
	// beginning and its end.
	var ops, lifecycle []string
	for len(lifecycle) < len(want) || len(ops) < 6 {
		e, err := all.Next(ctx)
		if err != nil {
			t.Fatalf("events so far %v %v: %v", ops, lifecycle, err)
		}
		switch e.Type {
		case api.EventLifecycle:
			lifecycle = append(lifecycle, e.Action)
		case api.EventOperation:
			if e.Operation == nil || e.Operation.Resource != "web" || e.Action != e.Operation.Status {
				t.Fatalf("operation event %+v", e)
			}
			ops = append(ops, e.Operation.Kind+" "+e.Action)
		}
	}
	if !slices.Equal(lifecycle, want) {
		t.Errorf("lifecycle events beside the operations %v, want %v", lifecycle, want)
	}
	wantOps := []string{"launch running", "launch success", "stop running", "stop success", "delete running", "delete success"}
	if !slices.Equal(ops, wantOps) {
		t.Errorf("operation events %v, want %v", ops, wantOps)
	}
	// A client that goes takes its subscription with it.
	all.Close()
	life.Close()
	h.waitFor("the streams' subscriptions end", func() bool {
		info, err := c.Server(ctx)
		return err == nil && info.EventSubscribers == 0
	})
}

// An unknown type is refused with the field and the fix, before any
// upgrade.
func TestEventStreamRefusesAnUnknownType(t *testing.T) {
	h := newHarness(t)
	c := h.serveUnix(readTimeout)
	_, err := c.Events(t.Context(), "lifecycle", "gossip")
	if err == nil || !strings.Contains(err.Error(), `type "gossip"`) {
		t.Errorf("subscribing to gossip: %v", err)
	}
}

// A page of another site cannot open the stream: the upgrade checks the
// Origin header against the host.
func TestEventStreamRefusesAnotherOrigin(t *testing.T) {
	h := newHarness(t)
	srv := httptest.NewServer(h.d.routes())
	defer srv.Close()
	if status := upgradeFromAnotherOrigin(t, http.DefaultClient, srv.URL); status != http.StatusForbidden {
		t.Errorf("upgrade from another origin answered %d, want 403", status)
	}
}

// upgradeFromAnotherOrigin asks the daemon at base for the event stream
// as a page of another site would, and returns the status it answers.
func upgradeFromAnotherOrigin(t *testing.T, hc *http.Client, base string) int {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, base+api.Version+"/events", nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range map[string]string{
		"Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13",
		"Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==", "Origin": "https://evil.example",
	} {
		req.Header.Set(k, v)
	}
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// A stream is long-lived: the server's deadline on reading a request does
// not end it once it is upgraded.
func TestEventStreamOutlivesTheReadTimeout(t *testing.T) {
	h := newHarness(t)
	const short = 100 * time.Millisecond
	c := h.serveUnix(short)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	stream, err := c.Events(ctx, api.EventLifecycle)
	if err != nil {
		t.Fatal(err)
	}
	defer stream.Close()
	time.Sleep(5 * short)
	h.create("late", false)
	e, err := stream.Next(ctx)
	if err != nil || e.Action != api.GuestCreated || e.Guest != "late" {
		t.Fatalf("event after the read timeout: %+v, %v", e, err)
	}
}
