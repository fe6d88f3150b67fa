package client

import (
	"context"
	"net/http"
	"net/url"

	"github.com/polyvisor/polyvisor/pkg/api"
)

// Snapshots lists a guest's snapshots, oldest first.
func (c *Client) Snapshots(ctx context.Context, name string) ([]api.Snapshot, error) {
	var list []api.Snapshot
	return list, c.call(ctx, http.MethodGet, guestPath(name)+"/snapshots", nil, &list)
}

// CreateSnapshot starts taking snapshot snap of a guest, running or not.
func (c *Client) CreateSnapshot(ctx context.Context, name, snap string) (api.Operation, error) {
	var op api.Operation
	return op, c.call(ctx, http.MethodPost, guestPath(name)+"/snapshots", api.SnapshotCreate{Name: snap}, &op)
}

// RestoreSnapshot starts putting a stopped guest's disks back to snapshot snap.
func (c *Client) RestoreSnapshot(ctx context.Context, name, snap string) (api.Operation, error) {
	var op api.Operation
	return op, c.call(ctx, http.MethodPost, snapshotPath(name, snap)+"/restore", nil, &op)
}

// DeleteSnapshot starts deleting snapshot snap of a guest.
func (c *Client) DeleteSnapshot(ctx context.Context, name, snap string) (api.Operation, error) {
	var op api.Operation
	return op, c.call(ctx, http.MethodDelete, snapshotPath(name, snap), nil, &op)
}

// CopyGuest starts copying guest src to a new, stopped guest dst.
func (c *Client) CopyGuest(ctx context.Context, src, dst string) (api.Operation, error) {
	var op api.Operation
	return op, c.call(ctx, http.MethodPost, guestPath(src)+"/copy", api.GuestCopy{Name: dst}, &op)
}

func snapshotPath(name, snap string) string {
	return guestPath(name) + "/snapshots/" + url.PathEscape(snap)
}
