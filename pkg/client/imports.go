package client

import (
	"context"
	"io"
	"net/http"
	"net/url"

	"github.com/segmentio/encoding/json"

	"github.com/polyvisor/polyvisor/pkg/api"
)

// Import starts importing a file another product made.
func (c *Client) Import(ctx context.Context, req api.Import) (api.Operation, error) {
	var op api.Operation
	return op, c.call(ctx, http.MethodPost, api.Version+"/imports", req, &op)
}

// Export starts writing a stopped guest out in another product's format.
func (c *Client) Export(ctx context.Context, name string, req api.Export) (api.Operation, error) {
	var op api.Operation
	return op, c.call(ctx, http.MethodPost, guestPath(name)+"/export", req, &op)
}

// Remote reports whether the client talks to a daemon over the network,
// whose files are not this machine's.
func (c *Client) Remote() bool { return c.remote }

// ImportUpload sends a file of this machine to the daemon, which imports
// it as req says (req.Path is left out): the way to import into a remote
// daemon. body is the file's bytes, size their count (sent as
// Content-Length, which the daemon needs).
func (c *Client) ImportUpload(ctx context.Context, filename string, body io.Reader, size int64, req api.Import) (api.Operation, error) {
	req.Path = ""
	opts, err := json.Marshal(req)
	if err != nil {
		return api.Operation{}, err
	}
	q := url.Values{"filename": {filename}, "options": {string(opts)}}
	var op api.Operation
	return op, c.call(ctx, http.MethodPost, api.Version+"/imports/upload?"+q.Encode(), byteStream{r: body, size: size}, &op)
}
