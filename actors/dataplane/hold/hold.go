// Package hold keeps the first packets to an overlay address that has no
// tunnel yet, while the node asks NMS who holds the address and sets the
// tunnel up, and decides when to ask: the data plane's "tunnel on the
// first packet" (DESIGN.md §7.3), as Nebula holds packets for a host it is
// still handshaking with.
//
// Everything is bounded, because what arrives here is whatever the local
// applications send (a scan of the whole overlay prefix included):
// packets per destination (PerDest) and their age (MaxAge), destinations
// held at once (MaxDests, which also bounds the lookups in flight, since a
// destination is asked about only while it is held), one lookup per
// destination per Retry, lookups overall at Lookups per Retry (a token
// bucket: NMS answers fast, so freed slots alone would let a scan ask
// thousands of times a second), and negative answers remembered for
// Negative (up to MaxNegative of them). Every packet that leaves without being
// delivered is reported as a drop, by reason.
//
// Only packets without a usable tunnel come here; the data plane's fast
// path (a route to a peer that is up) never touches the Queue.
package hold

import (
	"net/netip"
	"sync"
	"time"
)

// Config bounds a Queue. Zero fields take the defaults.
type Config struct {
	PerDest     int           // packets held per destination (default 32)
	MaxDests    int           // destinations held at once (default 32)
	MaxAge      time.Duration // a packet held longer is dropped (default 5s)
	Retry       time.Duration // a destination is looked up at most once per Retry (default 5s)
	Negative    time.Duration // "nobody holds it" is believed this long (default 30s)
	MaxNegative int           // negative answers remembered (default 1024)
	// Lookups is how many lookups may start per Retry, in a burst or
	// spread out (default MaxDests).
	Lookups int
}

// Defaults.
const (
	DefaultPerDest     = 32
	DefaultMaxDests    = 32
	DefaultMaxAge      = 5 * time.Second
	DefaultRetry       = 5 * time.Second
	DefaultNegative    = 30 * time.Second
	DefaultMaxNegative = 1024
)

func (c Config) withDefaults() Config {
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	defD := func(v *time.Duration, d time.Duration) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&c.PerDest, DefaultPerDest)
	def(&c.MaxDests, DefaultMaxDests)
	def(&c.MaxNegative, DefaultMaxNegative)
	def(&c.Lookups, c.MaxDests)
	defD(&c.MaxAge, DefaultMaxAge)
	defD(&c.Retry, DefaultRetry)
	defD(&c.Negative, DefaultNegative)
	return c
}

// Verdict is what Hold did with a packet.
type Verdict uint8

const (
	// Held: the packet waits; a lookup for its destination is in flight
	// (or not needed).
	Held Verdict = iota
	// HeldAsk: the packet waits and the caller must start the lookup now.
	HeldAsk
	// DropFull: too many packets held for the destination, or too many
	// destinations held.
	DropFull
	// DropUnknown: a recent answer said no node holds the destination.
	DropUnknown
	// DropRate: a new destination while the lookup rate is used up. Not
	// held: a held packet would take a slot without a lookup coming.
	DropRate
)

// Drops counts packets that left the queue undelivered.
type Drops struct {
	Expired int // held longer than MaxAge
	Unknown int // their destination turned out to have no holder
	Failed  int // the lookup or the tunnel failed
}

type packet struct {
	b  []byte
	at time.Time
}

type dest struct {
	pkts  []packet
	asked time.Time // last lookup started (zero: none; a peer exists)
}

// Queue is the hold queue. Safe for concurrent use; every method takes
// one short lock (callers are the TUN reader on its slow path, the peer
// actors when a tunnel comes up, and the session's answers).
type Queue struct {
	cfg Config

	mu       sync.Mutex
	dests    map[netip.Addr]*dest
	negative map[netip.Addr]time.Time // until when "nobody holds it" holds
	tokens   float64                  // lookups that may start now
	filled   time.Time                // when tokens was last topped up
}

// New makes an empty queue.
func New(cfg Config) *Queue {
	cfg = cfg.withDefaults()
	return &Queue{
		cfg:      cfg,
		dests:    make(map[netip.Addr]*dest),
		negative: make(map[netip.Addr]time.Time),
		tokens:   float64(cfg.Lookups),
	}
}

// takeToken reports whether a lookup may start now, and if so counts it.
func (q *Queue) takeToken(now time.Time) bool {
	if !q.filled.IsZero() && now.After(q.filled) {
		q.tokens += float64(now.Sub(q.filled)) / float64(q.cfg.Retry) * float64(q.cfg.Lookups)
		q.tokens = min(q.tokens, float64(q.cfg.Lookups))
	}
	if q.filled.IsZero() || now.After(q.filled) {
		q.filled = now
	}
	if q.tokens < 1 {
		return false
	}
	q.tokens--
	return true
}

// Config returns the queue's bounds, defaults applied.
func (q *Queue) Config() Config { return q.cfg }

// Hold keeps a copy of pkt for dst. ask says the caller has no peer for
// dst, so the queue should decide whether to look dst up (HeldAsk);
// without it (a peer exists and is still handshaking) only the packet is
// kept. The Drops are packets of dst that expired meanwhile.
func (q *Queue) Hold(dst netip.Addr, pkt []byte, ask bool, now time.Time) (Verdict, Drops) {
	dst = dst.Unmap()
	q.mu.Lock()
	defer q.mu.Unlock()
	var drops Drops
	if ask {
		if until, ok := q.negative[dst]; ok {
			if now.Before(until) {
				return DropUnknown, drops
			}
			delete(q.negative, dst)
		}
	}
	d := q.dests[dst]
	if d == nil {
		if len(q.dests) >= q.cfg.MaxDests {
			drops.Expired += q.sweepLocked(now)
		}
		if len(q.dests) >= q.cfg.MaxDests {
			return DropFull, drops
		}
		if ask && !q.takeToken(now) {
			return DropRate, drops
		}
		d = &dest{pkts: make([]packet, 0, 4)}
		q.dests[dst] = d
		if ask {
			d.asked = now
			d.pkts = append(d.pkts, packet{b: append([]byte(nil), pkt...), at: now})
			return HeldAsk, drops
		}
	}
	drops.Expired += d.expire(now, q.cfg.MaxAge)
	if len(d.pkts) >= q.cfg.PerDest {
		return DropFull, drops
	}
	d.pkts = append(d.pkts, packet{b: append([]byte(nil), pkt...), at: now})
	if ask && (d.asked.IsZero() || now.Sub(d.asked) >= q.cfg.Retry) && q.takeToken(now) {
		d.asked = now
		return HeldAsk, drops
	}
	return Held, drops
}

// Ask decides on a lookup of dst that holds no packet (a PTR query for
// it): DropUnknown while a recent answer says no node holds dst, DropRate
// when the lookup budget, shared with the packets' lookups, is spent, else
// HeldAsk: the caller may ask now, and a token is taken.
func (q *Queue) Ask(dst netip.Addr, now time.Time) Verdict {
	dst = dst.Unmap()
	q.mu.Lock()
	defer q.mu.Unlock()
	if until, ok := q.negative[dst]; ok {
		if now.Before(until) {
			return DropUnknown
		}
		delete(q.negative, dst)
	}
	if !q.takeToken(now) {
		return DropRate
	}
	return HeldAsk
}

// Take removes what is held for dsts (a peer's VIPs, now that its tunnel
// is up) and returns the packets still fresh, oldest first per
// destination, at most max of them (the rest count as Failed).
func (q *Queue) Take(now time.Time, max int, dsts ...netip.Addr) ([][]byte, Drops) {
	q.mu.Lock()
	defer q.mu.Unlock()
	var out [][]byte
	var drops Drops
	for _, dst := range dsts {
		dst = dst.Unmap()
		d := q.dests[dst]
		if d == nil {
			continue
		}
		delete(q.dests, dst)
		drops.Expired += d.expire(now, q.cfg.MaxAge)
		for _, p := range d.pkts {
			if len(out) >= max {
				drops.Failed++
				continue
			}
			out = append(out, p.b)
		}
	}
	return out, drops
}

// Unknown records that no node holds dst: its held packets are dropped
// (Drops.Unknown) and packets to it are refused for Negative.
func (q *Queue) Unknown(dst netip.Addr, now time.Time) Drops {
	return q.answer(dst, now, q.cfg.Negative, true)
}

// Failed records that the lookup of dst failed for now (the holder is
// offline, NMS did not answer): its held packets are dropped
// (Drops.Failed) and dst is not asked about again before Retry.
func (q *Queue) Failed(dst netip.Addr, now time.Time) Drops {
	return q.answer(dst, now, q.cfg.Retry, false)
}

func (q *Queue) answer(dst netip.Addr, now time.Time, remember time.Duration, unknown bool) Drops {
	dst = dst.Unmap()
	q.mu.Lock()
	defer q.mu.Unlock()
	var drops Drops
	if d := q.dests[dst]; d != nil {
		delete(q.dests, dst)
		drops.Expired += d.expire(now, q.cfg.MaxAge)
		if unknown {
			drops.Unknown += len(d.pkts)
		} else {
			drops.Failed += len(d.pkts)
		}
	}
	if len(q.negative) >= q.cfg.MaxNegative {
		for a, until := range q.negative {
			if !now.Before(until) {
				delete(q.negative, a)
			}
		}
	}
	if len(q.negative) >= q.cfg.MaxNegative {
		for a := range q.negative { // full of live answers: forget any one
			delete(q.negative, a)
			break
		}
	}
	q.negative[dst] = now.Add(remember)
	return drops
}

// Sweep drops expired packets everywhere and forgets destinations with
// nothing left to deliver whose lookup is past its Retry.
func (q *Queue) Sweep(now time.Time) Drops {
	q.mu.Lock()
	defer q.mu.Unlock()
	return Drops{Expired: q.sweepLocked(now)}
}

func (q *Queue) sweepLocked(now time.Time) int {
	n := 0
	for a, d := range q.dests {
		n += d.expire(now, q.cfg.MaxAge)
		if len(d.pkts) == 0 && (d.asked.IsZero() || now.Sub(d.asked) >= q.cfg.Retry) {
			delete(q.dests, a)
		}
	}
	return n
}

// Len returns the destinations and packets held.
func (q *Queue) Len() (dests, pkts int) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for _, d := range q.dests {
		pkts += len(d.pkts)
	}
	return len(q.dests), pkts
}

// expire drops the packets held longer than maxAge and returns how many.
func (d *dest) expire(now time.Time, maxAge time.Duration) int {
	i := 0
	for i < len(d.pkts) && now.Sub(d.pkts[i].at) > maxAge {
		i++
	}
	if i == 0 {
		return 0
	}
	n := copy(d.pkts, d.pkts[i:])
	clear(d.pkts[n:])
	d.pkts = d.pkts[:n]
	return i
}
