package resolver

import (
	"context"
	"sync"
)

// flightGroup joins concurrent lookups of one name into one backend call:
// resolvers send A and AAAA at once, and several applications may ask for
// the same peer, but one tunnel request is enough.
type flightGroup struct {
	mu    sync.Mutex
	calls map[string]*flight
}

type flight struct {
	done    chan struct{}
	waiters int // joined callers, for tests
	ans     Answer
	err     error
}

// do runs fn for key unless a call for key is in progress, in which case it
// waits for that call's result (or for its own ctx).
func (g *flightGroup) do(ctx context.Context, key string, fn func(context.Context, string) (Answer, error)) (Answer, error) {
	g.mu.Lock()
	if c, ok := g.calls[key]; ok {
		c.waiters++
		g.mu.Unlock()
		select {
		case <-c.done:
			return c.ans, c.err
		case <-ctx.Done():
			return Answer{}, ctx.Err()
		}
	}
	if g.calls == nil {
		g.calls = make(map[string]*flight)
	}
	c := &flight{done: make(chan struct{})}
	g.calls[key] = c
	g.mu.Unlock()

	c.ans, c.err = fn(ctx, key)
	g.mu.Lock()
	delete(g.calls, key)
	g.mu.Unlock()
	close(c.done)
	return c.ans, c.err
}

// waiting returns how many callers joined key's call in progress.
func (g *flightGroup) waiting(key string) int {
	g.mu.Lock()
	defer g.mu.Unlock()
	if c, ok := g.calls[key]; ok {
		return c.waiters
	}
	return 0
}
