package client

import (
	"context"
	"net/http"
	"net/url"

	"github.com/polyvisor/polyvisor/pkg/api"
)

// Hosts lists the vendor hosts the daemon manages, with their guest counts.
func (c *Client) Hosts(ctx context.Context) ([]api.VendorHost, error) {
	var hosts []api.VendorHost
	return hosts, c.call(ctx, http.MethodGet, api.Version+"/hosts", nil, &hosts)
}

// AddHost has the daemon connect to a vendor host and keep it.
func (c *Client) AddHost(ctx context.Context, req api.VendorHostAdd) (api.VendorHost, error) {
	var h api.VendorHost
	return h, c.call(ctx, http.MethodPost, api.Version+"/hosts", req, &h)
}

// RemoveHost forgets a vendor host; its guests stay on it.
func (c *Client) RemoveHost(ctx context.Context, name string) error {
	return c.call(ctx, http.MethodDelete, api.Version+"/hosts/"+url.PathEscape(name), nil, nil)
}

// HostGuests lists every vendor host's guests.
func (c *Client) HostGuests(ctx context.Context) (api.HostGuests, error) {
	var out api.HostGuests
	return out, c.call(ctx, http.MethodGet, api.Version+"/hosts/guests", nil, &out)
}

// MoveGuest starts moving a vendor host's guest (HOST:NAME) here.
func (c *Client) MoveGuest(ctx context.Context, name string, req api.GuestMove) (api.Operation, error) {
	var op api.Operation
	return op, c.call(ctx, http.MethodPost, guestPath(name)+"/move", req, &op)
}

// HostImport starts deploying an appliance on the daemon's host to a vendor host.
func (c *Client) HostImport(ctx context.Context, host string, req api.Import) (api.Operation, error) {
	var op api.Operation
	return op, c.call(ctx, http.MethodPost, api.Version+"/hosts/"+url.PathEscape(host)+"/imports", req, &op)
}
