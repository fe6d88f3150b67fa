package client

import (
	"context"
	"net/http"

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
