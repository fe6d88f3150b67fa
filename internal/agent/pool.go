package agent

import (
	"context"
	"sync"
)

// Pool keeps one agent connection per guest for a driver, dialled on
// first use and after a break: after a daemon restart, the first exec
// reconnects. It is safe for concurrent use; the zero Pool is ready.
type Pool struct {
	mu    sync.Mutex
	conns map[string]*Client
}

// Get returns the guest's connection, dialling it with dial when there is
// none. A kept connection must answer a ping within ctx first: an agent
// that died, froze or went hostile since would otherwise hold every later
// call forever. A broken one (the guest rebooted, say) is dialled again.
func (p *Pool) Get(ctx context.Context, guest string, dial func(context.Context) (*Client, error)) (*Client, error) {
	p.mu.Lock()
	c := p.conns[guest]
	p.mu.Unlock()
	if c != nil {
		err := c.Ping(ctx)
		if err == nil {
			return c, nil
		}
		p.Drop(guest)
		if ctx.Err() != nil {
			return nil, err
		}
	}
	c, err := dial(ctx)
	if err != nil {
		return nil, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if old := p.conns[guest]; old != nil { // another caller dialled meanwhile
		c.Close()
		return old, nil
	}
	if p.conns == nil {
		p.conns = map[string]*Client{}
	}
	p.conns[guest] = c
	return c, nil
}

// Drop forgets and closes the guest's connection, if any.
func (p *Pool) Drop(guest string) {
	p.mu.Lock()
	c := p.conns[guest]
	delete(p.conns, guest)
	p.mu.Unlock()
	if c != nil {
		c.Close()
	}
}

// DropAll forgets and closes every connection, as a daemon that ends
// does.
func (p *Pool) DropAll() {
	p.mu.Lock()
	conns := p.conns
	p.conns = nil
	p.mu.Unlock()
	for _, c := range conns {
		c.Close()
	}
}
