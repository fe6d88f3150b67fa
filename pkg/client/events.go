package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strings"

	"github.com/coder/websocket"

	"github.com/polyvisor/polyvisor/pkg/api"
)

// maxEventSize bounds one event message: an operation's event is well
// under a kilobyte, its warnings included.
const maxEventSize = 1 << 20

// EventStream is a subscription to the daemon's events.
type EventStream struct {
	conn *websocket.Conn
}

// Events subscribes to the daemon's events of types (none: all of them).
func (c *Client) Events(ctx context.Context, types ...string) (*EventStream, error) {
	path := api.Version + "/events"
	if len(types) > 0 {
		path += "?type=" + url.QueryEscape(strings.Join(types, ","))
	}
	conn, resp, err := websocket.Dial(ctx, "ws://polyvisor"+path, &websocket.DialOptions{HTTPClient: c.http})
	if err != nil {
		if resp != nil && resp.StatusCode >= 300 {
			defer resp.Body.Close()
			return nil, decodeError(resp)
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, c.unreachable(err)
	}
	conn.SetReadLimit(maxEventSize)
	return &EventStream{conn: conn}, nil
}

// Next waits for the next event. It fails when ctx ends, when the daemon
// stops, or when the daemon cut the subscription off for reading too
// slowly (the error says so; subscribe again).
func (s *EventStream) Next(ctx context.Context) (api.Event, error) {
	var e api.Event
	typ, data, err := s.conn.Read(ctx)
	if err != nil {
		var closed websocket.CloseError
		switch {
		case ctx.Err() != nil:
			return e, ctx.Err()
		case errors.As(err, &closed) && closed.Reason != "":
			return e, fmt.Errorf("event stream closed by the daemon: %s", closed.Reason)
		case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.As(err, &closed):
			return e, errors.New("event stream ended: the daemon stopped")
		}
		return e, fmt.Errorf("event stream: %w", err)
	}
	if typ != websocket.MessageText {
		return e, errors.New("event stream: the daemon sent a binary message")
	}
	if err := json.Unmarshal(data, &e); err != nil {
		return e, fmt.Errorf("event stream: %w", err)
	}
	return e, nil
}

// Close ends the subscription.
func (s *EventStream) Close() error {
	return s.conn.Close(websocket.StatusNormalClosure, "")
}
