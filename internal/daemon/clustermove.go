package daemon

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/polyvisor/polyvisor/internal/cluster"
	"github.com/polyvisor/polyvisor/internal/guest"
	"github.com/polyvisor/polyvisor/pkg/api"
)

// clusterMove moves one of this member's guests to member target: a
// running VM live (QEMU's migration, its disks mirrored), anything else
// cold: stopped, copied as a replica is, run there, removed here.
func (d *Daemon) clusterMove(r *http.Request, name, target string) (any, error) {
	c, err := d.memberOnly()
	if err != nil {
		return nil, err
	}
	e, err := d.guests.get(name)
	if err != nil {
		return nil, err
	}
	if target == c.local.Member {
		return nil, fmt.Errorf("%w: guest %s runs on %s already", api.ErrInvalid, name, target)
	}
	m, ok := c.member(target)
	if !ok {
		return nil, fmt.Errorf("%w: target %q: no such cluster member ('polyvisor cluster list' shows them)", api.ErrInvalid, target)
	}
	alive, err := c.reg.Alive(r.Context())
	if err != nil {
		return nil, err
	}
	if _, online := alive[target]; !online {
		return nil, fmt.Errorf("%w: target %s is offline", api.ErrNotAvailable, target)
	}
	return d.ops.startReporting(d.ctx, "move", name, func(ctx context.Context, rep *opReport) error {
		began := time.Now()
		def := e.def.Load()
		if running(def) {
			if moved, err := d.liveMove(ctx, c, e, m, rep); moved || err != nil {
				return err
			}
		}
		reason := coldReason(def.Type, running(def))
		if err := d.coldMove(ctx, c, name, m); err != nil {
			return fmt.Errorf("move %s to %s: %w", name, target, err)
		}
		rep.warn(fmt.Sprintf("moved cold (stopped, copied, started) in %s: %s", time.Since(began).Round(time.Millisecond), reason))
		rep.result(target)
		return nil
	}), nil
}

// coldReason says why a move is cold.
func coldReason(kind string, isRunning bool) string {
	switch {
	case !isRunning:
		return "the guest is stopped"
	case kind == "vm":
		return "this VM's class does not migrate live"
	}
	return "containers move cold: a live move needs CRIU checkpoints (runc checkpoint/restore), which polyvisor's container driver does not take yet"
}

// coldMove stops a guest, hands its copy to m, has m run it (started if
// it ran), then removes it here. A failure before m runs it puts the
// guest back as it was.
func (d *Daemon) coldMove(ctx context.Context, c *clusterState, name string, m cluster.Member) error {
	e, err := d.guests.get(name)
	if err != nil {
		return err
	}
	wasRunning := running(e.def.Load())
	if wasRunning {
		if err := e.acquire(); err != nil {
			return err
		}
		err := d.stopLocked(ctx, e, 30*time.Second)
		e.release()
		if err != nil {
			return err
		}
	}
	restart := func() {
		if !wasRunning {
			return
		}
		if err := e.acquire(); err == nil {
			d.startLocked(context.WithoutCancel(ctx), e, guest.IntentStart)
			e.release()
		}
	}
	if _, err := d.sendReplica(ctx, c, name, m); err != nil {
		restart()
		return err
	}
	p, found, err := c.reg.Guest(ctx, name)
	if err == nil && !found {
		err = fmt.Errorf("%w: the cluster has no record of it", api.ErrNotFound)
	}
	if err != nil {
		restart()
		return fmt.Errorf("the cluster's record of %s: %w", name, err)
	}
	next := p
	next.Member, next.Lost = m.Name, ""
	if next.Replica == m.Name {
		next.Replica, next.ReplicatedAt = "", time.Time{}
	}
	if err := c.reg.UpdateGuest(ctx, next, c.local.Member); err != nil {
		restart()
		return err
	}
	if err := d.promoteOn(ctx, c, m.Name, name, api.ReplicaPromote{Start: wasRunning, Reason: "moved from " + c.local.Member}); err != nil {
		c.reg.UpdateGuest(context.WithoutCancel(ctx), p, m.Name)
		restart()
		return err
	}
	if err := e.acquire(); err != nil {
		return err
	}
	defer e.release()
	return d.deleteLocked(ctx, e, true)
}
