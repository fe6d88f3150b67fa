package e2e

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/polyvisor/polyvisor/internal/testenv"
	"github.com/polyvisor/polyvisor/pkg/api"
)

// consoleSocket opens a guest's console websocket (the web console's) on
// the daemon's unix socket.
func consoleSocket(t *testing.T, ctx context.Context, d *testenv.Daemon, name string) *websocket.Conn {
	t.Helper()
	ws, _, err := websocket.Dial(ctx, "ws://polyvisor"+api.Version+"/guests/"+name+"/console/ws", &websocket.DialOptions{HTTPClient: d.HTTPClient()})
	if err != nil {
		t.Fatalf("console websocket of %s: %v", name, err)
	}
	return ws
}

// typeAndRead sends a line to the console and reads until want shows.
func typeAndRead(t *testing.T, ctx context.Context, ws *websocket.Conn, line, want string) {
	t.Helper()
	resize, _ := json.Marshal(map[string]any{"type": "resize", "cols": 100, "rows": 30})
	if err := ws.Write(ctx, websocket.MessageText, resize); err != nil {
		t.Fatal(err)
	}
	if err := ws.Write(ctx, websocket.MessageBinary, []byte(line+"\n")); err != nil {
		t.Fatal(err)
	}
	var seen strings.Builder
	for !strings.Contains(seen.String(), want) {
		typ, data, err := ws.Read(ctx)
		if err != nil {
			t.Fatalf("reading the console for %q: %v; it showed %q", want, err, seen.String())
		}
		if typ == websocket.MessageBinary {
			seen.Write(data)
		}
	}
}

// The console websocket carries keys in and the screen out, for a
// container and for a TCG VM; it ends when the guest is deleted.
func TestConsoleWebsocketOfAContainerAndAVM(t *testing.T) {
	requireRoot(t)
	d := env.main
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	c := launch(t, d, "busybox", "ws-console")
	// A page of another site cannot open it.
	if _, resp, err := websocket.Dial(ctx, "ws://polyvisor"+api.Version+"/guests/"+c.Name+"/console/ws", &websocket.DialOptions{
		HTTPClient: d.HTTPClient(), HTTPHeader: http.Header{"Origin": {"https://evil.example"}},
	}); err == nil || resp == nil || resp.StatusCode != http.StatusForbidden {
		t.Fatalf("a console upgrade from another origin: %v (%v), want 403", err, resp)
	}
	ws := consoleSocket(t, ctx, d, c.Name)
	typeAndRead(t, ctx, ws, "echo hello-$((6*7))", "hello-42")

	d.Must(t, "delete", "--force", c.Name)
	ended := make(chan error, 1)
	go func() {
		for {
			if _, _, err := ws.Read(ctx); err != nil {
				ended <- err
				return
			}
		}
	}()
	select {
	case <-ended:
	case <-time.After(30 * time.Second):
		t.Fatal("the console websocket of a deleted guest is still open 30 s later")
	}

	requireVMTemplates(t)
	vm := launch(t, d, "busybox", "ws-vm", "--type", "vm")
	vws := consoleSocket(t, ctx, d, vm.Name)
	defer vws.CloseNow()
	typeAndRead(t, ctx, vws, "echo vm-$((6*7))", "vm-42")
}
