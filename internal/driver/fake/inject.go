package fake

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// SetFail makes method fail with err from now on; nil clears it.
func (d *Driver) SetFail(method string, err error) {
	d.host.mu.Lock()
	defer d.host.mu.Unlock()
	if err == nil {
		delete(d.fail, method)
		return
	}
	d.fail[method] = err
}

// Gate holds the next call of a method open until Release: a test races a
// second request against an operation that is known to be under way.
type Gate struct {
	entered chan struct{}
	release chan struct{}
	once    sync.Once
}

// Entered is closed once the held call has begun.
func (g *Gate) Entered() <-chan struct{} { return g.entered }

// Release lets the held call go on. It may be called more than once.
func (g *Gate) Release() { g.once.Do(func() { close(g.release) }) }

// Hold makes the next call of method wait, once it has begun, until the
// returned gate is released (or the call's context ends).
func (d *Driver) Hold(method string) *Gate {
	g := &Gate{entered: make(chan struct{}), release: make(chan struct{})}
	d.host.mu.Lock()
	defer d.host.mu.Unlock()
	d.holds[method] = g
	return g
}

// Calls says how many times method was called.
func (d *Driver) Calls(method string) int {
	d.host.mu.Lock()
	defer d.host.mu.Unlock()
	return d.calls[method]
}

// call counts a call of method, then applies its hold, delay and failure.
func (d *Driver) call(ctx context.Context, method string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("fake %s: %w", method, err)
	}
	d.host.mu.Lock()
	d.calls[method]++
	g := d.holds[method]
	delete(d.holds, method)
	delay := d.delay[method]
	d.host.mu.Unlock()
	if g != nil {
		close(g.entered)
		select {
		case <-g.release:
		case <-ctx.Done():
			return fmt.Errorf("fake %s: %w", method, ctx.Err())
		}
	}
	if delay > 0 {
		t := time.NewTimer(delay)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
			return fmt.Errorf("fake %s: %w", method, ctx.Err())
		}
	}
	d.host.mu.Lock()
	defer d.host.mu.Unlock()
	if err := d.fail[method]; err != nil {
		return fmt.Errorf("fake %s: %w", method, err)
	}
	return nil
}
