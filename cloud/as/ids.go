package as

import (
	"context"
	"sync"
	"time"
)

// Session IDs are 32 bits, chosen at random by the challenge (the node
// learns its ID there, inside the handshake, and every sealed packet
// names it). A random ID collides with a live session once in 2^32 /
// sessions logins (one in ~4,300 at a million), and PutNode, the atomic
// claim, refuses it only at the commit, when the node already holds it:
// the login failed and the node had to log in again. So the AS draws its
// IDs ahead of the logins and has the store check them in batches
// (store.FreeSessionIDs: one read per idBatch IDs, on the store workers,
// never per login packet, and nothing written for logins not yet proven).
// An ID can still be taken between the check and the commit only by
// another login choosing the same ID meanwhile: one in 2^32 per
// concurrent login, where PutNode still refuses it. If the pool is empty
// (a burst beyond it, or the store down) a login gets an unchecked random
// ID, as before, and is counted (Counters.UncheckedIDs).
const (
	idBatch = 256 // IDs checked per store read
	idLow   = 128 // a refill is asked for below this many
	// idMaxAge bounds how long a checked ID waits in the pool, so that its
	// check stays recent (sessions of other processes come and go).
	idMaxAge = 30 * time.Second
)

// idPool holds session IDs the store reported free. Safe for concurrent
// use: the login workers take from it, a store worker fills it.
type idPool struct {
	mu      sync.Mutex
	ids     []uint32
	checked time.Time // when ids were checked
	filling bool      // a refill is on the store workers
	draw    func() uint32
}

// take returns an ID for a challenge: one the store reported free
// (checked), else a random one; refill says a refill should be started
// (the caller starts it: fill).
func (p *idPool) take(now time.Time) (id uint32, checked, refill bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if now.Sub(p.checked) > idMaxAge {
		p.ids = p.ids[:0]
	}
	refill = len(p.ids) <= idLow && !p.filling
	if refill {
		p.filling = true
	}
	if n := len(p.ids); n > 0 {
		id = p.ids[n-1]
		p.ids = p.ids[:n-1]
		return id, true, refill
	}
	return p.draw(), false, refill
}

// candidates draws a batch of random IDs for the store to check.
func (p *idPool) candidates() []uint32 {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]uint32, idBatch)
	for i := range out {
		out[i] = p.draw()
	}
	return out
}

// fill replaces the pool with the IDs checked at checked (the older ones
// are older checks), or, on err, just ends the refill.
func (p *idPool) fill(free []uint32, checked time.Time, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.filling = false
	if err != nil {
		return
	}
	p.ids, p.checked = free, checked
}

// refillIDs has the store check a batch of candidates, on the store
// workers. A refused job (the workers saturated) leaves the pool to be
// refilled at a later login.
func (s *Service) refillIDs() {
	ids, st := s.ids.candidates(), s.cfg.Store
	err := s.workers.Do(nil, func(bg context.Context) any {
		now := time.Now()
		free, err := st.FreeSessionIDs(bg, ids)
		if err != nil {
			s.log.Debug("as: session IDs not checked", "err", err)
		}
		s.ids.fill(free, now, err)
		return nil
	})
	if err != nil {
		s.ids.fill(nil, time.Time{}, err)
	}
}

// sessionID chooses the session ID a challenge names: checked against the
// store, and held by no other login pending here.
func (s *Service) sessionID() uint32 {
	for try := 0; ; try++ {
		id, checked, refill := s.ids.take(time.Now())
		if refill {
			s.refillIDs()
		}
		if _, taken := s.bySession.Get(sessionKey(id)); !taken || try == 3 {
			if !checked {
				s.Counters.UncheckedIDs.Add(1)
			}
			return id
		}
	}
}
