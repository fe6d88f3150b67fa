package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/coder/websocket"

	"github.com/polyvisor/polyvisor/internal/events"
	"github.com/polyvisor/polyvisor/pkg/api"
)

// lifecycle publishes that guest name went through action.
func (d *Daemon) lifecycle(action, name string) {
	d.events.Publish(api.Event{Type: api.EventLifecycle, Time: time.Now().UTC(), Action: action, Guest: name})
}

// operationEvent publishes an operation as it stands.
func (d *Daemon) operationEvent(op api.Operation) {
	d.events.Publish(api.Event{Type: api.EventOperation, Time: op.UpdatedAt, Action: op.Status, Operation: &op})
}

// eventWriteTimeout bounds one event's write to a subscriber that stopped
// reading: it is dropped rather than held.
const eventWriteTimeout = 10 * time.Second

// handleEvents streams events over a websocket, JSON text messages, until
// the client goes, the daemon stops, or the client falls so far behind
// that it is cut off (closed with a reason that says so). ?type= takes a
// comma-separated list of event types; none means all.
func (d *Daemon) handleEvents(w http.ResponseWriter, r *http.Request) {
	var types []string
	if t := r.URL.Query().Get("type"); t != "" {
		types = strings.Split(t, ",")
		for _, typ := range types {
			if !slices.Contains(api.EventTypes, typ) {
				writeError(w, fmt.Errorf("%w: type %q: use lifecycle, operation, or both separated by a comma", api.ErrInvalid, typ))
				return
			}
		}
	}
	// Subscribed before the upgrade is answered: a client whose dial
	// returned misses nothing that happens after.
	sub := d.events.Subscribe(types)
	defer sub.Close()
	// Accept checks the Origin header against the request's host: a page
	// of another site cannot open the stream in a browser.
	conn, err := websocket.Accept(w, r, nil)
	if err != nil {
		return // Accept has answered
	}
	defer conn.CloseNow()
	// The client sends nothing; CloseRead notices when it goes.
	ctx := conn.CloseRead(r.Context())
	for {
		select {
		case e := <-sub.Events():
			if err := writeEvent(ctx, conn, e); err != nil {
				return
			}
		case <-sub.Done():
			if errors.Is(sub.Err(), events.ErrTooSlow) {
				conn.Close(websocket.StatusPolicyViolation, events.ErrTooSlow.Error())
			}
			return
		case <-ctx.Done():
			conn.Close(websocket.StatusGoingAway, "daemon stopping")
			return
		}
	}
}

func writeEvent(ctx context.Context, conn *websocket.Conn, e api.Event) error {
	data, err := json.Marshal(e)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, eventWriteTimeout)
	defer cancel()
	return conn.Write(ctx, websocket.MessageText, data)
}
