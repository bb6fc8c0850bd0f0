package as

import (
	"math"
	"net/netip"
	"sync"
	"time"

	"github.com/cyphonic/cyphonic-go/cloud/shrink"
)

// Admission control for login packets, which anyone can send and which
// cost the AS a certificate check and three X25519 operations. It is plain
// logic with the clock passed in; the AS calls it from its socket readers
// (before a packet is copied or reaches an actor) and from its root actor.

// bucket is a token bucket: rate tokens a second, at most burst.
type bucket struct {
	tokens float64
	last   time.Time
}

func (b *bucket) take(now time.Time, rate, burst float64) bool {
	if b.last.IsZero() {
		b.tokens, b.last = burst, now
	} else if d := now.Sub(b.last); d > 0 {
		b.tokens = min(burst, b.tokens+d.Seconds()*rate)
		b.last = now
	}
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// level is how many tokens the bucket holds at now.
func (b *bucket) level(now time.Time, rate, burst float64) float64 {
	if b.last.IsZero() {
		return burst
	}
	return min(burst, b.tokens+max(now.Sub(b.last), 0).Seconds()*rate)
}

// full reports whether the bucket has refilled: it then says no more than
// a missing entry, and can be forgotten.
func (b *bucket) full(now time.Time, rate, burst float64) bool {
	return b.level(now, rate, burst) >= burst
}

// LimitConfig sizes a limiter. Zero fields take defaults.
type LimitConfig struct {
	// PerSource is what one source (an IPv4 address, an IPv6 /64) may send
	// a second under load, and Burst how many at once. Default 2 and 10: a
	// node sends about a dozen packets in a login's 12 s.
	PerSource, Burst float64
	// Logins is the global budget of login packets a second that get to the
	// Diffie-Hellman, and LoginBurst how many at once. Default 2000 and
	// 256 (above what two cores complete: the budget bounds the CPU a
	// flood can take, it is not the capacity).
	Logins, LoginBurst float64
	// Sources bounds the per-source table (default 16384). Sources beyond
	// it share one bucket: a spoofed flood costs a bounded table, and
	// then competes with itself.
	Sources int
}

func (c *LimitConfig) defaults() {
	if c.PerSource <= 0 {
		c.PerSource = 2
	}
	if c.Burst < 1 {
		c.Burst = 10
	}
	if c.Logins <= 0 {
		c.Logins = 2000
	}
	if c.LoginBurst < 1 {
		c.LoginBurst = 256
	}
	if c.Sources <= 0 {
		c.Sources = 16384
	}
}

// limiter is a per-source token bucket in front of a global one. It is
// safe for concurrent use.
type limiter struct {
	cfg      LimitConfig
	mu       sync.Mutex
	sources  map[netip.Addr]*bucket
	peak     shrink.Peak // of sources, since it was last rebuilt
	overflow bucket      // the sources that found the table full
	global   bucket
	swept    time.Time
	// loadedUntil: per-source limits are enforced until then.
	loadedUntil time.Time
	// rate is the smoothed rate of admitted logins at rateAt (loginRate).
	rate   float64
	rateAt time.Time
}

func newLimiter(cfg LimitConfig) *limiter {
	cfg.defaults()
	return &limiter{cfg: cfg, sources: make(map[netip.Addr]*bucket)}
}

// sourceKey is what one source is: an IPv4 address, or an IPv6 /64 (one
// host gets a whole /64 and can pick any address in it).
func sourceKey(a netip.Addr) netip.Addr {
	a = a.Unmap()
	if a.Is4() {
		return a
	}
	p, _ := a.Prefix(64)
	return p.Addr()
}

// allow decides on one packet from from; login says it is a login packet
// (one that would cost a DH), which also takes from the global budget;
// busy says the AS holds many pending logins.
//
// Every source is metered, but its bucket is enforced only while the AS
// is under load (logins admitted at over half the budget, smoothed over
// about a second, or the budget spent, or busy, within the last loadHold),
// as WireGuard does: otherwise many nodes behind one NAT address
// logging in at once (a site after a power cut) would be throttled for
// nothing. Under load each flooding source is held to its share - and
// having been metered all along, a flooder's bucket is already empty when
// the load begins - so a node sending from its own address still finds
// budget left.
func (l *limiter) allow(from netip.Addr, login, busy bool, now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if busy || l.global.level(now, l.cfg.Logins, l.cfg.LoginBurst) < 1 || l.loginRate(now) > l.cfg.Logins/2 {
		l.loadedUntil = now.Add(loadHold)
	}
	ok := l.source(sourceKey(from), login, now).take(now, l.cfg.PerSource, l.cfg.Burst)
	if !ok && now.Before(l.loadedUntil) {
		return false
	}
	if !login {
		return true
	}
	if !l.global.take(now, l.cfg.Logins, l.cfg.LoginBurst) {
		return false
	}
	l.rate, l.rateAt = l.loginRate(now)+1/rateTau.Seconds(), now
	return true
}

// rateTau is the time constant of the login rate that signals load: about
// a second of logins, so that legitimate logins arriving in clumps (a
// burst of nodes, retransmissions in step) do not read as load when their
// rate is far below the budget. (The bucket's level was the sign before:
// at 526 logins/s, a quarter of the budget, clumps of 128 above the refill
// put the AS under load, and every login paid a cookie round trip.) A
// flood still shows at once: it empties the bucket.
const rateTau = time.Second

// loginRate is the smoothed rate of logins admitted to the Diffie-Hellman
// at now (an exponentially weighted average, time constant rateTau).
func (l *limiter) loginRate(now time.Time) float64 {
	d := now.Sub(l.rateAt)
	if d <= 0 {
		return l.rate
	}
	return l.rate * math.Exp(-d.Seconds()/rateTau.Seconds())
}

// sweepEvery is how often the per-source table drops refilled buckets
// even when it is not full (sweep): a scan of at most Sources entries.
const sweepEvery = 10 * time.Second

// loadHold is how long the AS counts as under load after the last sign of
// it: long enough that a flood held to its share cannot, by looking quiet
// for a moment, get the whole budget again.
const loadHold = 10 * time.Second

// overShare takes a token from the bucket of a source the table holds and
// reports whether it had none left; a source the table does not hold is
// not over its share, and is not added (the caller has not yet seen proof
// that the packet comes from it).
func (l *limiter) overShare(from netip.Addr, now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	b, ok := l.sources[sourceKey(from)]
	return ok && !b.take(now, l.cfg.PerSource, l.cfg.Burst)
}

// underLoad reports whether per-source limits are being enforced.
func (l *limiter) underLoad(now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return now.Before(l.loadedUntil)
}

// source is k's bucket. A source that finds the table full shares the
// overflow bucket - unless it is a login's (evict): under load a login
// reaches the limiter only with a cookie's proof of its source, which a
// spoofed flood cannot give, so it takes the place of an arbitrary entry
// (most likely one of the unproven sources the flood put there) rather
// than share a bucket the flood has emptied.
func (l *limiter) source(k netip.Addr, evict bool, now time.Time) *bucket {
	if b, ok := l.sources[k]; ok {
		return b
	}
	if len(l.sources) >= l.cfg.Sources && now.Sub(l.swept) >= 100*time.Millisecond {
		// Sweep at most ten times a second: a table full of live buckets
		// must not cost a scan per packet.
		l.sweepLocked(now)
	}
	if len(l.sources) >= l.cfg.Sources {
		if !evict {
			return &l.overflow
		}
		for a := range l.sources { // Go's map order: an arbitrary entry
			delete(l.sources, a)
			break
		}
	}
	b := &bucket{}
	l.sources[k] = b
	return b
}

// sweep drops the buckets that have refilled (they carry no information:
// a new one starts full). The AS's root calls it every sweepEvery, so that
// the sources of a burst that is over leave the table, and its memory goes
// with them (the map is rebuilt once far below its peak), rather than
// waiting for the table to fill.
func (l *limiter) sweep(now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.sweepLocked(now)
}

func (l *limiter) sweepLocked(now time.Time) {
	l.swept = now
	for a, b := range l.sources {
		if b.full(now, l.cfg.PerSource, l.cfg.Burst) {
			delete(l.sources, a)
		}
	}
	l.sources = shrink.Map(l.sources, &l.peak)
}

// tracked is the size of the per-source table.
func (l *limiter) tracked() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.sources)
}

// window counts admissions over the last ttl, in slots, and refuses one
// that would make more than max: with every admitted entry living at most
// ttl, no more than max are ever alive, with no timer per entry. It is
// safe for concurrent use.
type window struct {
	mu     sync.Mutex
	width  time.Duration
	counts []int // ring of slots; one more than ttl/width so a slot is forgotten only once all its entries expired
	slot   int64 // the current slot's number
	total  int
	max    int
}

const windowSlots = 10

func newWindow(ttl time.Duration, limit int) *window {
	return &window{width: max(ttl/windowSlots, time.Millisecond), counts: make([]int, windowSlots+1), max: limit}
}

func (w *window) advance(now time.Time) {
	cur := now.UnixNano() / int64(w.width)
	if cur <= w.slot {
		return
	}
	n := int64(len(w.counts))
	for s := w.slot + 1; s <= cur && s <= w.slot+n; s++ {
		i := s % n
		w.total -= w.counts[i]
		w.counts[i] = 0
	}
	w.slot = cur
}

func (w *window) admit(now time.Time) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.advance(now)
	if w.total >= w.max {
		return false
	}
	w.counts[w.slot%int64(len(w.counts))]++
	w.total++
	return true
}

func (w *window) count(now time.Time) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.advance(now)
	return w.total
}
