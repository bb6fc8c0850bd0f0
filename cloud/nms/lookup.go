package nms

import "time"

// Store lookups of sessions this NMS does not hold.
//
// A sealed packet names its session in the clear; a worker that does not
// hold that session looks it up in the store (another cloud process's
// login, or a session from before a restart: any process serves any
// session). That read happens before anything about the packet is
// authenticated, so anyone can cause one with a random session ID. Left
// alone, a flood of such packets fills the store queue that registrations,
// keepalives from new mappings and tunnel requests need, and costs a
// shared Redis a read each. Each worker therefore runs its lookups through
// a lookupGate:
//
//   - a token bucket bounds the lookups a second (Config.LookupRate over
//     the workers), so a flood costs the store a bounded number of reads;
//   - a bound on the lookups in flight (Config.LookupsInFlight over the
//     workers) keeps them to a share of the store queue, whatever the
//     store's speed, so authenticated work always finds room; a second
//     packet for an ID already being looked up waits for nothing and is
//     dropped (its node retransmits);
//   - a negative cache remembers for a short while (Config.UnknownSessionTTL)
//     the IDs the store did not know, bounded in size, so a packet repeated
//     with one unknown ID costs a read per TTL, not one per copy.
//
// What is dropped is counted by reason (Counters.LookupRate,
// LookupInFlight, UnknownSession) and the node, if there is one, retransmits.
//
// The negative cache cannot lock out a node that logs in at another
// process for longer than one retransmission: the AS writes the session to
// the store (PutNode) before it hands the keys over and answers the login,
// and a node sends nothing sealed before that answer, so the node's own
// first packet always finds the session. Only a lookup that started before
// the write (an attacker who saw the ID in the login's challenge, or a
// random ID that happened to hit) can cache it as unknown; an entry stands
// for the TTL counted from when its lookup started, and the TTL is at most
// the retry schedule's first wait, so it has lapsed by the node's first
// retransmission. A session handed over to this NMS clears its entry.
type lookupGate struct {
	rate, burst float64 // tokens a second, at most burst
	maxInFlight int
	ttl         int64 // ns
	maxUnknown  int

	tokens   float64
	last     int64 // when tokens was computed (ns), if primed
	primed   bool
	inFlight map[uint32]int64 // IDs being looked up -> when the lookup started
	unknown  map[uint32]int64 // IDs the store did not know -> until when that stands
}

// lookupVerdict is what the gate says about a packet of an unknown session.
type lookupVerdict uint8

const (
	lookupGo       lookupVerdict = iota // look it up (started is recorded)
	lookupUnknown                       // the store did not know it a moment ago
	lookupInFlight                      // too many lookups in flight, or this one already is
	lookupRate                          // out of tokens
)

// maxUnknownPerWorker bounds each worker's negative cache.
const maxUnknownPerWorker = 4096

func newLookupGate(rate float64, maxInFlight int, ttl time.Duration) *lookupGate {
	return &lookupGate{
		rate: rate, burst: max(1, rate/4), maxInFlight: max(1, maxInFlight), ttl: int64(ttl), maxUnknown: maxUnknownPerWorker,
		inFlight: map[uint32]int64{}, unknown: map[uint32]int64{},
	}
}

// admit decides whether a packet of session id, which the worker does not
// hold, may be looked up now; lookupGo records the lookup as in flight
// (done must follow). Times are monotonic nanoseconds (Service.mono): a
// wall clock stepped back must not make a negative entry last.
func (g *lookupGate) admit(id uint32, now int64) lookupVerdict {
	if until, ok := g.unknown[id]; ok {
		if now < until {
			return lookupUnknown
		}
		delete(g.unknown, id)
	}
	if _, ok := g.inFlight[id]; ok || len(g.inFlight) >= g.maxInFlight {
		return lookupInFlight
	}
	if !g.primed {
		g.tokens, g.last, g.primed = g.burst, now, true
	} else if d := now - g.last; d > 0 {
		g.tokens = min(g.burst, g.tokens+float64(d)/float64(time.Second)*g.rate)
		g.last = now
	}
	if g.tokens < 1 {
		return lookupRate
	}
	g.tokens--
	g.inFlight[id] = now
	return lookupGo
}

// done records the store's answer for a lookup admit let through: unknown
// when the store holds no such session (not for a failed read, which says
// nothing).
func (g *lookupGate) done(id uint32, unknown bool, now int64) {
	started, ok := g.inFlight[id]
	if !ok {
		return
	}
	delete(g.inFlight, id)
	if !unknown || now >= started+g.ttl {
		return
	}
	if len(g.unknown) >= g.maxUnknown {
		g.expire(now)
	}
	if len(g.unknown) >= g.maxUnknown {
		for k := range g.unknown { // full of live entries: any one goes
			delete(g.unknown, k)
			break
		}
	}
	g.unknown[id] = started + g.ttl
}

// known clears id's negative entry: the session is held here now.
func (g *lookupGate) known(id uint32) { delete(g.unknown, id) }

// expire drops the negative entries that have lapsed.
func (g *lookupGate) expire(now int64) {
	for id, until := range g.unknown {
		if now >= until {
			delete(g.unknown, id)
		}
	}
}
