package client

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"

	"github.com/polyvisor/polyvisor/pkg/api"
)

// upgradeProtocol must match the daemon's.
const upgradeProtocol = "polyvisor-stream"

// Exec starts a command in a guest and returns the framed stream
// (internal/stream) of its session.
func (c *Client) Exec(ctx context.Context, name string, req api.ExecRequest) (io.ReadWriteCloser, error) {
	body, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	return c.upgrade(ctx, http.MethodPost, guestPath(name)+"/exec", body)
}

// Console attaches to a guest's console and returns its framed stream.
func (c *Client) Console(ctx context.Context, name string) (io.ReadWriteCloser, error) {
	return c.upgrade(ctx, http.MethodGet, guestPath(name)+"/console", nil)
}

// upgrade sends a request asking for a protocol switch on a connection of
// its own, and hands the raw connection over once the daemon agrees.
func (c *Client) upgrade(ctx context.Context, method, path string, body []byte) (io.ReadWriteCloser, error) {
	conn, err := c.dial(ctx)
	if err != nil {
		return nil, c.unreachable(err)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://polyvisor"+path, bytes.NewReader(body))
	if err != nil {
		conn.Close()
		return nil, err
	}
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", upgradeProtocol)
	req.Header.Set("Content-Type", "application/json")
	if err := req.Write(conn); err != nil {
		conn.Close()
		return nil, c.unreachable(err)
	}
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, req)
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		defer conn.Close()
		return nil, decodeError(resp)
	}
	return &upgradedConn{Reader: br, Conn: conn}, nil
}

// upgradedConn reads through the buffer that may already hold frames.
type upgradedConn struct {
	*bufio.Reader
	net.Conn
}

func (u *upgradedConn) Read(p []byte) (int, error) { return u.Reader.Read(p) }
