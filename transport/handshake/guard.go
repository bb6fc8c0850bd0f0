package handshake

import (
	"fmt"
	"sync"
	"time"
)

// ReplayGuard remembers, per identity, the newest msg1 timestamp of a
// confirmed session, so a recorded msg1 cannot be replayed to make a
// responder set up (and switch to) a stale session. It is safe for concurrent
// use.
//
// Check a msg1 on arrival; Commit only once the initiator has proven its key
// (its first data packet opened on the new session). Committing on arrival
// would let anyone who forges a msg1 with a future timestamp lock the real
// peer out, because IX's msg1 is not authenticated.
type ReplayGuard struct {
	mu     sync.Mutex
	latest map[string]int64 // identity -> newest committed timestamp (Unix ns)
	limit  int
}

// NewReplayGuard bounds the guard to limit identities; when full, the identity
// with the oldest timestamp is forgotten (its entry matters least: its clock
// has moved on the furthest from any replay an attacker could still hold).
func NewReplayGuard(limit int) *ReplayGuard {
	return &ReplayGuard{latest: make(map[string]int64), limit: max(limit, 1)}
}

// Check returns an ErrReplay error if ts is not newer than the last committed
// timestamp for identity.
func (g *ReplayGuard) Check(identity string, ts time.Time) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if last, ok := g.latest[identity]; ok && ts.UnixNano() <= last {
		return fmt.Errorf("handshake: %s: %w", identity, ErrReplay)
	}
	return nil
}

// Commit records ts for identity if it is newer than what is recorded.
func (g *ReplayGuard) Commit(identity string, ts time.Time) {
	g.mu.Lock()
	defer g.mu.Unlock()
	n := ts.UnixNano()
	if last, ok := g.latest[identity]; ok {
		g.latest[identity] = max(last, n)
		return
	}
	if len(g.latest) >= g.limit {
		oldest, first := "", true
		for id, t := range g.latest {
			if first || t < g.latest[oldest] {
				oldest, first = id, false
			}
		}
		delete(g.latest, oldest)
	}
	g.latest[identity] = n
}
