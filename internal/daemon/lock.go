package daemon

import (
	"context"
	"fmt"

	"github.com/polyvisor/polyvisor/internal/guest"
	"github.com/polyvisor/polyvisor/pkg/api"
)

// Every operation that changes a guest holds its entry while it acts, and
// acts only on a guest still in the table: one that waited its turn may
// find the guest deleted meanwhile. Short lifecycle operations (start,
// stop, config, delete) wait for each other in turn. A long one (export,
// snapshot, copy: minutes, for a large guest) claims the guest when it is
// requested; any request that meets the claim is refused at once with
// api.ErrBusy, naming the operation to wait for, instead of hanging.

// busyLocked is the refusal while a long operation has or awaits the
// guest; e.mu is held.
func (e *entry) busyLocked() error {
	if e.long == nil {
		return nil
	}
	return fmt.Errorf("guest %s is %w: %s in progress (operation %s); wait for it or try again", e.def.Load().Name, api.ErrBusy, e.long.kind, e.long.id)
}

// busy refuses at once while a long operation has or awaits the guest.
func (e *entry) busy() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.busyLocked()
}

// acquire waits for the guest's turn, refused once a long operation
// claims it (also while waiting).
func (e *entry) acquire() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	for {
		if err := e.busyLocked(); err != nil {
			return err
		}
		if !e.held {
			e.held = true
			return nil
		}
		e.turn.Wait()
	}
}

// acquireAlways waits for the guest's turn even behind a long operation:
// the watcher releases a guest that ended once whatever held it is done.
func (e *entry) acquireAlways() {
	e.mu.Lock()
	defer e.mu.Unlock()
	for e.held {
		e.turn.Wait()
	}
	e.held = true
}

// release gives the guest back to whoever waits.
func (e *entry) release() {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.held = false
	e.releases.Add(1)
	e.turn.Broadcast()
}

// claimLong marks the guest busy with a long operation, or refuses if
// another has it.
func (e *entry) claimLong(kind, id string) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if err := e.busyLocked(); err != nil {
		return err
	}
	e.long = &longOp{kind: kind, id: id}
	// Short operations waiting for their turn now give up.
	e.turn.Broadcast()
	return nil
}

// endLong ends a long operation's claim.
func (e *entry) endLong() {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.long = nil
	e.turn.Broadcast()
}

// lockGuest takes the guest for an operation that changes it: it waits
// its turn (refused while a long operation has the guest) and checks the
// guest is still in the table. It returns the current definition; the
// caller releases e.
func (d *Daemon) lockGuest(e *entry) (*guest.Definition, error) {
	if err := e.acquire(); err != nil {
		return nil, err
	}
	def, err := d.current(e)
	if err != nil {
		e.release()
		return nil, err
	}
	return def, nil
}

// startShort runs fn as an operation of kind that takes the guest in its
// turn; a request that meets a long operation is refused at once.
func (d *Daemon) startShort(e *entry, kind, resource string, fn func(ctx context.Context) error) (api.Operation, error) {
	if err := e.busy(); err != nil {
		return api.Operation{}, err
	}
	return d.ops.start(d.ctx, kind, resource, func(ctx context.Context, _ func(api.Progress)) error {
		if _, err := d.lockGuest(e); err != nil {
			return err
		}
		defer e.release()
		return fn(ctx)
	}), nil
}

// startLong claims the guest for a long operation of kind and runs fn as
// that operation once the operations before it are done; requests that
// meet the claim meanwhile are refused as busy. abandon, if not nil, undoes
// what the caller prepared for fn (a copy's reserved name) when fn does
// not run: the claim is refused, or the guest was deleted before its turn.
func (d *Daemon) startLong(e *entry, kind, resource string, abandon func(), fn func(ctx context.Context, r *opReport) error) (api.Operation, error) {
	if abandon == nil {
		abandon = func() {}
	}
	id := newOperationID()
	if err := e.claimLong(kind, id); err != nil {
		abandon()
		return api.Operation{}, err
	}
	return d.ops.startReportingAs(d.ctx, id, kind, resource, func(ctx context.Context, r *opReport) error {
		defer e.endLong()
		e.acquireAlways() // the operations queued before the claim go first
		defer e.release()
		if _, err := d.current(e); err != nil {
			abandon()
			return err
		}
		return fn(ctx, r)
	}), nil
}
