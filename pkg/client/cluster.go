package client

import (
	"context"
	"io"
	"net/http"
	"net/url"

	"github.com/polyvisor/polyvisor/pkg/api"
)

// ClusterInit founds a cluster of this daemon alone.
func (c *Client) ClusterInit(ctx context.Context, req api.ClusterInit) (api.Cluster, error) {
	var out api.Cluster
	return out, c.call(ctx, http.MethodPost, api.Version+"/cluster", req, &out)
}

// Cluster lists the members as the daemon sees them.
func (c *Client) Cluster(ctx context.Context) (api.Cluster, error) {
	var out api.Cluster
	return out, c.call(ctx, http.MethodGet, api.Version+"/cluster", nil, &out)
}

// ClusterToken issues a join token for a member to be.
func (c *Client) ClusterToken(ctx context.Context, req api.ClusterTokenCreate) (api.ClusterTokenIssued, error) {
	var out api.ClusterTokenIssued
	return out, c.call(ctx, http.MethodPost, api.Version+"/cluster/tokens", req, &out)
}

// ClusterJoin joins the daemon to the cluster a token leads to.
func (c *Client) ClusterJoin(ctx context.Context, req api.ClusterJoin) (api.Cluster, error) {
	var out api.Cluster
	return out, c.call(ctx, http.MethodPost, api.Version+"/cluster/join", req, &out)
}

// ClusterRemove removes a member; force drops its guests' records too.
func (c *Client) ClusterRemove(ctx context.Context, name string, force bool) error {
	path := api.Version + "/cluster/members/" + url.PathEscape(name)
	if force {
		path += "?force=true"
	}
	return c.call(ctx, http.MethodDelete, path, nil, nil)
}

// The calls below are between members.

// ClusterAdmit asks a member to admit this daemon, for a token's secret.
func (c *Client) ClusterAdmit(ctx context.Context, req api.ClusterAdmit) (api.ClusterAdmission, error) {
	var out api.ClusterAdmission
	return out, c.call(ctx, http.MethodPost, api.Version+"/cluster/members", req, &out)
}

// ClusterLeave tells a member it was removed.
func (c *Client) ClusterLeave(ctx context.Context) error {
	return c.call(ctx, http.MethodPost, api.Version+"/cluster/leave", nil, nil)
}

// SendReplica hands a member the copy of an HA guest it keeps: body is
// the replica's archive (see the daemon's replicas.go), size its length.
func (c *Client) SendReplica(ctx context.Context, name string, body io.Reader, size int64) error {
	return c.call(ctx, http.MethodPut, api.Version+"/cluster/replicas/"+url.PathEscape(name), byteStream{r: body, size: size}, nil)
}

// PromoteReplica has a member run its replica of a guest as the guest.
func (c *Client) PromoteReplica(ctx context.Context, name string, req api.ReplicaPromote) (api.Operation, error) {
	var op api.Operation
	return op, c.call(ctx, http.MethodPost, api.Version+"/cluster/replicas/"+url.PathEscape(name)+"/promote", req, &op)
}
