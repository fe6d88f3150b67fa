package client

import (
	"context"
	"fmt"
	"io"

	"github.com/polyvisor/polyvisor/internal/stream"
	"github.com/polyvisor/polyvisor/pkg/api"
)

// Run runs a command in a guest without a terminal, feeding it stdin (nil
// for none) and copying its output, and returns its exit code.
func (c *Client) Run(ctx context.Context, name string, command []string, stdin io.Reader, stdout, stderr io.Writer) (int, error) {
	conn, err := c.Exec(ctx, name, api.ExecRequest{Command: command})
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	out := stream.NewFrameWriter(conn)
	go func() {
		if stdin != nil {
			buf := make([]byte, 64<<10)
			for {
				n, err := stdin.Read(buf)
				if n > 0 && out.WriteFrame(stream.Stdin, buf[:n]) != nil {
					return
				}
				if err != nil {
					break
				}
			}
		}
		out.WriteFrame(stream.CloseStdin, nil)
	}()
	code, err := stream.CopySession(conn, stdout, stderr)
	if err != nil {
		if ctx.Err() != nil {
			return 0, ctx.Err()
		}
		return 0, fmt.Errorf("exec in %s: %w", name, err)
	}
	return code, nil
}
