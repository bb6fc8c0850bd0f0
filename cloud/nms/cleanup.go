package nms

import (
	"context"
	"sync"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/cyphonic/cyphonic-go/cloud/shrink"
	"github.com/cyphonic/cyphonic-go/cloud/store"
)

// Nothing stale: an ended session (expired, logged out, revoked) leaves
// the store for sure. Its ID goes into its worker's deletes set, which one
// store job at a time drains in batches; a batch the workers refuse, or
// IDs whose deletion failed, stay in the set and go again on the next
// tick. So a burst of expiries (every idle node at once) or a saturated
// store delays deletions but never drops one. What a crash left behind
// (sessions of nodes that vanished while NMS was down) the periodic sweep
// finds in the store and ends the same way.

const (
	deleteBatch    = 256 // sessions per store job
	deleteParallel = 8   // concurrent deletions within a job (bbolt batches them into one commit)
)

// deleteSession queues session id's removal from the store.
func (w *worker) deleteSession(id uint32) {
	if _, ok := w.deletes[id]; !ok {
		w.deletes[id] = struct{}{}
		w.s.pendingDeletes.Add(1)
	}
	// The caller is in Receive: the batch goes out from flushDeletes, on
	// the next tick or when the batch in flight is done, so a burst of
	// endings is one job per deleteBatch, not one per session.
}

// flushDeletes hands the next batch to the store workers unless one is on
// them already.
func (w *worker) flushDeletes(ctx actor.Context) {
	if w.deleting || len(w.deletes) == 0 {
		return
	}
	ids := make([]uint32, 0, min(len(w.deletes), deleteBatch))
	for id := range w.deletes {
		if len(ids) == deleteBatch {
			break
		}
		ids = append(ids, id)
	}
	st, log := w.s.cfg.Store, w.s.log
	err := w.s.workers.Do(ctx.Self(), func(bg context.Context) any {
		var (
			mu     sync.Mutex
			failed []uint32
			wg     sync.WaitGroup
			next   = make(chan uint32)
		)
		for range min(deleteParallel, len(ids)) {
			wg.Go(func() {
				for id := range next {
					if err := st.DeleteSession(bg, id); err != nil {
						log.Warn("nms: delete ended session, will retry", "session", id, "err", err)
						mu.Lock()
						failed = append(failed, id)
						mu.Unlock()
					}
				}
			})
		}
		for _, id := range ids {
			next <- id
		}
		close(next)
		wg.Wait()
		return deleted{done: len(ids) - len(failed), failed: failed}
	})
	if err != nil {
		w.s.Counters.DeleteRetries.Add(uint64(len(ids)))
		return // still in w.deletes: the next tick tries again
	}
	for _, id := range ids {
		delete(w.deletes, id)
	}
	w.deletes = shrink.Map(w.deletes, &w.deletesPeak)
	w.s.pendingDeletes.Add(-int64(len(ids)))
	w.deleting = true
}

func (w *worker) onDeleted(ctx actor.Context, m deleted) {
	w.deleting = false
	w.s.Counters.SessionsDeleted.Add(uint64(m.done))
	w.s.Counters.DeleteRetries.Add(uint64(len(m.failed)))
	for _, id := range m.failed {
		if _, live := w.sessions[id]; !live {
			w.deleteSession(id)
		}
	}
	w.flushDeletes(ctx)
}

// sweep reads the store's sessions every SweepInterval (one read at a
// time, on the root) for the workers to judge (onSwept).
func (r *root) sweep(ctx actor.Context, now time.Time) {
	if r.sweeping || now.Sub(r.lastSweep) < r.s.cfg.SweepInterval {
		return
	}
	st, home := r.s.cfg.Store, r.s.cfg.Home
	err := r.s.workers.Do(ctx.Self(), func(bg context.Context) any {
		var out []storedSession
		err := st.EachNode(bg, func(n store.Node) error {
			if n.Session.ID != 0 {
				out = append(out, storedSession{id: n.Session.ID, expires: n.Session.Expires.UnixNano(), updated: n.Updated.UnixNano(), home: n.HomeNMS == home})
			}
			return nil
		})
		return swept{sessions: out, err: err}
	})
	if err == nil {
		r.sweeping, r.lastSweep = true, now
	}
}

// onSwept ends, in the store, the sessions nobody can be using: those past
// their absolute expiry, and those homed at this NMS that it does not hold
// although it has run longer than SessionIdle (a live node would have sent
// a keepalive and been loaded) and whose record was not written within
// SessionIdle (a login in progress writes the record before its key
// handover reaches NMS).
// Each worker judges the sessions that shard to it (root.onSwept).
func (w *worker) onSwept(ctx actor.Context, m swept, now time.Time) {
	idle := w.s.cfg.SessionIdle
	settled := now.Sub(w.s.started) > idle
	n := 0
	for _, ss := range m.sessions {
		if se := w.sessions[ss.id]; se != nil {
			if !ss.home {
				// Another NMS took it as its home (home.go): the next
				// keepalive reads the record and makes it ours again.
				se.locKnown = false
			}
			continue // expire() ends it when its time comes
		}
		if _, queued := w.deletes[ss.id]; queued {
			continue
		}
		if now.UnixNano() > ss.expires || ss.home && settled && now.UnixNano()-ss.updated > int64(idle) {
			w.deleteSession(ss.id)
			n++
		}
	}
	if n > 0 {
		w.s.Counters.Swept.Add(uint64(n))
		w.s.log.Info("nms: sweep found sessions nobody holds", "sessions", n)
		w.flushDeletes(ctx)
	}
}
