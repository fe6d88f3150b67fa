package daemon

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/polyvisor/polyvisor/pkg/api"
)

// operation is one long-running request.
type operation struct {
	mu   sync.Mutex
	op   api.Operation
	done chan struct{}
}

// operations tracks long-running requests by id, like incus: a request
// answers at once with an id, and clients poll or wait on it.
type operations struct {
	mu  sync.Mutex
	ops map[string]*operation
	wg  sync.WaitGroup
	// notify hears of each operation as it begins, moves on (at most
	// every progressEvery, or at a new phase) and ends.
	notify func(api.Operation)
}

func newOperations(notify func(api.Operation)) *operations {
	return &operations{ops: map[string]*operation{}, notify: notify}
}

// progressEvery bounds how often one operation's progress is told to
// notify: an import reports every percent.
const progressEvery = 250 * time.Millisecond

// keepFinished is how long a finished operation can still be looked up.
const keepFinished = 10 * time.Minute

// start runs fn in the background under ctx (the daemon's lifetime) and
// returns the operation describing it.
func (o *operations) start(ctx context.Context, kind, resource string, fn func(ctx context.Context, progress func(api.Progress)) error) api.Operation {
	return o.startReporting(ctx, kind, resource, func(ctx context.Context, r *opReport) error {
		return fn(ctx, r.progress)
	})
}

// opReport is how a running operation tells its clients how far it got,
// what it could not carry over, and what it made.
type opReport struct {
	op     *operation
	notify func(api.Operation)
	told   time.Time // when progress was last told to notify; op.mu guards it
}

func (r *opReport) progress(p api.Progress) {
	r.op.mu.Lock()
	now := time.Now().UTC()
	tell := p.Phase != r.op.op.Progress.Phase || now.Sub(r.told) >= progressEvery
	if tell {
		r.told = now
	}
	r.op.op.Progress, r.op.op.UpdatedAt = p, now
	r.op.mu.Unlock()
	if tell {
		r.notify(r.op.snapshot())
	}
}

func (r *opReport) warn(warning string) {
	r.op.mu.Lock()
	defer r.op.mu.Unlock()
	r.op.op.Warnings = append(r.op.op.Warnings, warning)
}

func (r *opReport) result(name string) {
	r.op.mu.Lock()
	defer r.op.mu.Unlock()
	r.op.op.Result = name
}

// startReporting is start for an operation that also reports warnings and
// its result.
func (o *operations) startReporting(ctx context.Context, kind, resource string, fn func(ctx context.Context, r *opReport) error) api.Operation {
	return o.startReportingAs(ctx, newOperationID(), kind, resource, fn)
}

// newOperationID makes an operation's id, for a caller that names the
// operation before it starts it (a guest's busy error does).
func newOperationID() string {
	id := make([]byte, 8)
	rand.Read(id)
	return hex.EncodeToString(id)
}

// startReportingAs is startReporting with the operation's id given.
func (o *operations) startReportingAs(ctx context.Context, id, kind, resource string, fn func(ctx context.Context, r *opReport) error) api.Operation {
	now := time.Now().UTC()
	op := &operation{
		op:   api.Operation{ID: id, Kind: kind, Resource: resource, Status: api.OpRunning, CreatedAt: now, UpdatedAt: now},
		done: make(chan struct{}),
	}
	o.mu.Lock()
	o.prune(now)
	o.ops[op.op.ID] = op
	o.mu.Unlock()
	notify := o.notify
	if notify == nil {
		notify = func(api.Operation) {}
	}
	notify(op.snapshot())
	o.wg.Add(1)
	go func() {
		defer o.wg.Done()
		err := fn(ctx, &opReport{op: op, notify: notify})
		op.mu.Lock()
		op.op.Status, op.op.UpdatedAt = api.OpSuccess, time.Now().UTC()
		if err != nil {
			op.op.Status, op.op.Error, op.op.ErrorKind = api.OpFailure, err.Error(), api.Kind(err)
		}
		op.mu.Unlock()
		notify(op.snapshot())
		close(op.done)
	}()
	return op.snapshot()
}

// prune forgets operations that finished long ago; o.mu is held.
func (o *operations) prune(now time.Time) {
	for id, op := range o.ops {
		s := op.snapshot()
		if s.Status != api.OpRunning && now.Sub(s.UpdatedAt) > keepFinished {
			delete(o.ops, id)
		}
	}
}

func (op *operation) snapshot() api.Operation {
	op.mu.Lock()
	defer op.mu.Unlock()
	s := op.op
	s.Warnings = slices.Clone(op.op.Warnings)
	return s
}

func (o *operations) get(id string) (*operation, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	op, ok := o.ops[id]
	if !ok {
		return nil, fmt.Errorf("operation %s: %w", id, api.ErrNotFound)
	}
	return op, nil
}

// wait blocks until the operation ends, ctx ends, or timeout passes.
func (o *operations) wait(ctx context.Context, id string, timeout time.Duration) (api.Operation, error) {
	op, err := o.get(id)
	if err != nil {
		return api.Operation{}, err
	}
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-op.done:
	case <-t.C:
	case <-ctx.Done():
	}
	return op.snapshot(), nil
}

// inFlight counts the operations still running.
func (o *operations) inFlight() int {
	o.mu.Lock()
	ops := make([]*operation, 0, len(o.ops))
	for _, op := range o.ops {
		ops = append(ops, op)
	}
	o.mu.Unlock()
	n := 0
	for _, op := range ops {
		if op.snapshot().Status == api.OpRunning {
			n++
		}
	}
	return n
}
