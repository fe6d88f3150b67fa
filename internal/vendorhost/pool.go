package vendorhost

import (
	"context"
	"errors"
	"fmt"
	"sync"
)

// Pool holds the connections to the stored hosts, opened on first use and
// opened again after one is found gone. Its methods are safe for
// concurrent use.
type Pool struct {
	store   *Store
	openers map[string]Opener // by kind

	mu   sync.Mutex
	open map[string]Host
}

// NewPool returns a pool over store's hosts, opening each kind with its
// opener.
func NewPool(store *Store, openers map[string]Opener) *Pool {
	return &Pool{store: store, openers: openers, open: map[string]Host{}}
}

// Store returns the pool's store.
func (p *Pool) Store() *Store { return p.store }

// Connect opens e's host without storing anything: add checks a host
// with it before keeping it.
func (p *Pool) Connect(ctx context.Context, e Entry) (Host, error) {
	open, ok := p.openers[e.Kind]
	if !ok {
		return nil, fmt.Errorf("host %s: %w: this daemon has no driver for %s hosts", e.Name, ErrNotSupported, e.Kind)
	}
	c, err := e.Credentials()
	if err != nil {
		return nil, err
	}
	h, err := open(ctx, c)
	if err != nil {
		return nil, fmt.Errorf("host %s: %w", e.Name, err)
	}
	return h, nil
}

// Adopt keeps h as the open connection of host name (one Connect made).
func (p *Pool) Adopt(name string, h Host) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if old := p.open[name]; old != nil {
		old.Close()
	}
	p.open[name] = h
}

// Use runs fn with the connection of host name, opening it if need be. A
// connection fn finds unreachable is dropped, so that the next use opens
// it again.
func (p *Pool) Use(ctx context.Context, name string, fn func(Host) error) error {
	h, err := p.get(ctx, name)
	if err != nil {
		return err
	}
	err = fn(h)
	if errors.Is(err, ErrUnreachable) {
		p.drop(name, h)
	}
	if err != nil {
		return fmt.Errorf("host %s: %w", name, err)
	}
	return nil
}

func (p *Pool) get(ctx context.Context, name string) (Host, error) {
	p.mu.Lock()
	h := p.open[name]
	p.mu.Unlock()
	if h != nil {
		return h, nil
	}
	e, err := p.store.Get(name)
	if err != nil {
		return nil, err
	}
	h, err = p.Connect(ctx, e)
	if err != nil {
		return nil, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if other := p.open[name]; other != nil {
		h.Close() // another use opened it meanwhile
		return other, nil
	}
	p.open[name] = h
	return h, nil
}

// drop closes h, the connection of name, unless it was replaced already.
func (p *Pool) drop(name string, h Host) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.open[name] == h {
		delete(p.open, name)
	}
	h.Close()
}

// Forget closes the connection of host name, if open.
func (p *Pool) Forget(name string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if h := p.open[name]; h != nil {
		h.Close()
		delete(p.open, name)
	}
}

// Close closes every connection.
func (p *Pool) Close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for name, h := range p.open {
		h.Close()
		delete(p.open, name)
	}
}
