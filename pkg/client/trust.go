package client

import (
	"context"
	"net/http"
	"net/url"

	"github.com/polyvisor/polyvisor/pkg/api"
)

// Health asks whether the daemon is up; it needs no trust.
func (c *Client) Health(ctx context.Context) (api.Health, error) {
	var h api.Health
	return h, c.call(ctx, http.MethodGet, api.Version+"/health", nil, &h)
}

// TrustList lists the clients the daemon trusts and its live tokens.
func (c *Client) TrustList(ctx context.Context) ([]api.TrustEntry, error) {
	var list []api.TrustEntry
	return list, c.call(ctx, http.MethodGet, api.Version+"/trust", nil, &list)
}

// IssueTrustToken makes a one-time token for a client to be.
func (c *Client) IssueTrustToken(ctx context.Context, req api.TrustTokenCreate) (api.TrustTokenIssued, error) {
	var issued api.TrustTokenIssued
	return issued, c.call(ctx, http.MethodPost, api.Version+"/trust/tokens", req, &issued)
}

// RedeemTrustToken has the daemon trust the certificate this client
// connects with, for a token's secret.
func (c *Client) RedeemTrustToken(ctx context.Context, secret string) (api.TrustEntry, error) {
	var entry api.TrustEntry
	return entry, c.call(ctx, http.MethodPost, api.Version+"/trust", api.TrustJoin{Secret: secret}, &entry)
}

// RemoveTrust distrusts a client (closing its connections) or revokes a
// token.
func (c *Client) RemoveTrust(ctx context.Context, name string) error {
	return c.call(ctx, http.MethodDelete, api.Version+"/trust/"+url.PathEscape(name), nil, nil)
}
