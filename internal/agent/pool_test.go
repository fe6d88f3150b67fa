package agent

import (
	"context"
	"errors"
	"testing"
)

func TestPoolKeepsOneLiveConnectionPerGuest(t *testing.T) {
	var p Pool
	dials := 0
	port := newGuest(t)
	dialPort := func(ctx context.Context) (*Client, error) {
		dials++
		return Dial(ctx, port.Socket)
	}
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	c1, err := p.Get(ctx, "a", dialPort)
	if err != nil {
		t.Fatal(err)
	}
	c2, err := p.Get(ctx, "a", dialPort)
	if err != nil || c2 != c1 || dials != 1 {
		t.Fatalf("second Get: %v, same connection %v, %d dials; want the kept one", err, c2 == c1, dials)
	}
	// A connection that broke is dialled again.
	c1.Close()
	c3, err := p.Get(ctx, "a", dialPort)
	if err != nil || c3 == c1 || dials != 2 {
		t.Fatalf("Get after a break: %v, new connection %v, %d dials", err, c3 != c1, dials)
	}
	// A dial that fails says why, and keeps nothing.
	refused := errors.New("no socket")
	if _, err := p.Get(ctx, "b", func(context.Context) (*Client, error) { return nil, refused }); !errors.Is(err, refused) {
		t.Fatalf("Get with a failing dial: %v", err)
	}
	p.DropAll()
	if err := c3.Ping(ctx); err == nil {
		t.Error("a dropped connection still answers")
	}
}
