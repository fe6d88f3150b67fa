package daemon

import (
	"context"
	"encoding/json"
	"time"

	"github.com/polyvisor/polyvisor/internal/cluster"
)

// publishState keeps this member's state in the cluster's store: its
// guests' definitions, its template catalogue and its networks, written
// in transactions whenever they change (checked every two seconds). The
// member's own disk keeps what it needs to run its guests while the
// store cannot be reached.
func (d *Daemon) publishState(ctx context.Context, c *clusterState) {
	published := map[string]string{}
	for {
		if err := d.publishStateOnce(ctx, c, published); err != nil && ctx.Err() == nil {
			d.log.Debug("this member's state is not published yet", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(2 * time.Second):
		}
	}
}

// publishStateOnce writes what changed since published, and records it
// there.
func (d *Daemon) publishStateOnce(ctx context.Context, c *clusterState, published map[string]string) error {
	member := c.local.Member
	want := map[string]string{}
	for _, e := range d.guests.entries() {
		def := e.def.Load()
		if data, err := def.Marshal(); err == nil {
			want[cluster.StateKey(member, "guests", def.Name)] = string(data)
		}
	}
	if templates, err := d.templates.List(); err == nil {
		for _, t := range templates {
			if data, err := json.Marshal(t); err == nil {
				want[cluster.StateKey(member, "templates", t.ID)] = string(data)
			}
		}
	}
	for _, n := range d.networks.List() {
		if data, err := json.Marshal(n); err == nil {
			want[cluster.StateKey(member, "networks", n.Name)] = string(data)
		}
	}
	puts := map[string]string{}
	for k, v := range want {
		if published[k] != v {
			puts[k] = v
		}
	}
	var deletes []string
	for k := range published {
		if _, ok := want[k]; !ok {
			deletes = append(deletes, k)
		}
	}
	if len(puts) == 0 && len(deletes) == 0 {
		return nil
	}
	if err := c.reg.PublishState(ctx, puts, deletes); err != nil {
		return err
	}
	clear(published)
	for k, v := range want {
		published[k] = v
	}
	return nil
}
