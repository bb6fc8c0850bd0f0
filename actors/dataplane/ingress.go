package dataplane

import (
	"bytes"
	"hash/maphash"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cyphonic/cyphonic-go/messages"
	"github.com/cyphonic/cyphonic-go/transport/cookie"
)

// Handshake ingress: what stands between the socket readers and the
// handshake work, so that no packet from the network reaches an unbounded
// queue or costs a Diffie-Hellman unless the node can afford it.
//
//	reader: init  -> mac1? -> busy? -> (no mac2: cookie reply) -> inits queue -> worker: respond -> peer actor
//	reader: resp / cookie reply -> known pending index? -> replies queue -> worker: finish / takeCookie -> peer actor
//
// The reader does only what is cheap (a BLAKE2s, a table lookup); the
// queues are bounded and drop, counted, when full; the workers are a few
// goroutines, so handshakes can use at most that many cores and never run
// on a peer actor (which stamps the peer's outbound data). Busy means the
// init queue is past busyDepth, or the inits admitted without a cookie
// exceed the rate budget, or a peer recently refused an init for want of
// pending slots: then an init is run only with a valid mac2, i.e. from a
// sender that receives at its source address, and each source address is
// rate limited.
const (
	initQueueDepth  = 256 // inits waiting for a worker
	replyQueueDepth = 64  // handshake responses and cookie replies waiting for a worker
	busyDepth       = initQueueDepth / 8
	// DefaultHandshakeRate is the inits per second run without a cookie
	// (each costs a certificate check and three X25519, ~0.3 ms).
	DefaultHandshakeRate = 500
	// cookieReplyRate bounds the cookie replies per second: the socket
	// writer sends control packets before data, so a flood of replies must
	// not crowd out the tunnels.
	cookieReplyRate = 5000
	// perSourceReplyRate and perSourceReplyBurst bound cookie replies per
	// source address and port (an initiator needs one per Lifetime).
	perSourceReplyRate  = 10
	perSourceReplyBurst = 10
	// perSourceRate and perSourceBurst bound the cookie-proven inits run
	// per source address (WireGuard's figures); sourceTableSize is the
	// number of buckets the sources hash into.
	perSourceRate   = 20
	perSourceBurst  = 5
	sourceTableSize = 4096
	// busyHold: how long a refused init keeps the node busy.
	busyHold = 2 * time.Second
	// unknownRate bounds the unknown-index answers per second, and
	// perSourceUnknownRate and perSourceUnknownBurst per source address
	// and port: a sender that lost its peer needs one (it recovers on the
	// first), and spoofed data must not make us a reflector.
	unknownRate           = 1000
	perSourceUnknownRate  = 2
	perSourceUnknownBurst = 2
)

// HandshakeStats count the handshake ingress's work (drops are in Drops).
type HandshakeStats struct {
	InitsRun      uint64 // inits that reached the DH (admitted by a worker)
	CookieReplies uint64 // cookie replies sent
	Responses     uint64 // handshake responses and cookie replies processed
	CookiesIn     uint64 // of them, cookie replies (a busy peer answered our init)
}

type hsJob struct {
	resp  *rawResponse
	ckRcv uint32 // cookie reply: receiver index
	ck    []byte // cookie reply body
}

type ingress struct {
	checker *cookie.Checker
	inits   chan *rawInit
	replies chan hsJob
	global  *dropCounters

	budget    bucket        // inits run without a cookie
	cookieOut bucket        // cookie replies sent
	sources   sourceLimiter // cookie-proven inits run, per source address
	// replySources bounds cookie replies per source address and port: a
	// reply is cheap, but the socket writer sends control packets first.
	replySources sourceLimiter
	// unknownOut and unknownSources bound unknown-index answers (answerUnknown).
	unknownOut     bucket
	unknownSources sourceLimiter
	busyUntil      atomic.Int64 // Unix ns

	initsRun, cookieReplies, responses, cookiesIn atomic.Uint64
}

func newIngress(self string, rate int, global *dropCounters) *ingress {
	if rate <= 0 {
		rate = DefaultHandshakeRate
	}
	now := time.Now()
	return &ingress{
		checker:        cookie.NewChecker(self, nil),
		inits:          make(chan *rawInit, initQueueDepth),
		replies:        make(chan hsJob, replyQueueDepth),
		global:         global,
		budget:         newBucket(float64(rate), float64(max(rate/10, 1)), now),
		cookieOut:      newBucket(cookieReplyRate, cookieReplyRate/10, now),
		sources:        newSourceLimiter(perSourceRate, perSourceBurst),
		replySources:   newSourceLimiter(perSourceReplyRate, perSourceReplyBurst),
		unknownOut:     newBucket(unknownRate, unknownRate/10, now),
		unknownSources: newSourceLimiter(perSourceUnknownRate, perSourceUnknownBurst),
	}
}

func (g *ingress) stats() HandshakeStats {
	return HandshakeStats{InitsRun: g.initsRun.Load(), CookieReplies: g.cookieReplies.Load(),
		Responses: g.responses.Load(), CookiesIn: g.cookiesIn.Load()}
}

// setBusy makes every init need a cookie for busyHold: a peer refused one
// because its pending handshakes are full.
func (g *ingress) setBusy() { g.busyUntil.Store(time.Now().Add(busyHold).UnixNano()) }

// onInit admits an init packet (its MAC trailer included) or drops it,
// counted. reply sends a cookie reply (the caller frames it for a relay).
func (d *Dataplane) onInit(p *packet, pkt []byte, token messages.RelayToken) {
	g := d.hs
	body, _, err := messages.SplitInitTrailer(pkt)
	if err != nil {
		g.global.Add(reasonFor(err), 1)
		return
	}
	h, msg, err := messages.ParseHandshake(body)
	if err != nil {
		g.global.Add(reasonFor(err), 1)
		return
	}
	if !g.checker.CheckMAC1(pkt) {
		g.global.Add(HandshakeMAC, 1)
		return
	}
	now := time.Now()
	// mac2 only matters when busy (and costs two more BLAKE2s), except
	// that a peer keeps sending it for the cookie's lifetime: an init that
	// carries one is checked, so a proven source keeps its standing.
	_, trailer, _ := messages.SplitInitTrailer(pkt)
	proven := false
	if !isZero(trailer[cookie.MACLen:]) {
		proven = g.checker.CheckMAC2(pkt, p.From, now)
	}
	busy := len(g.inits) >= busyDepth || now.UnixNano() < g.busyUntil.Load()
	if !busy && !proven && !g.budget.take(now) {
		busy = true
	}
	if busy {
		if !proven {
			d.sendCookie(pkt, h.Sender, p, token, now)
			return
		}
		if !g.sources.take(netip.AddrPortFrom(p.From.Addr(), 0), now) {
			g.global.Add(HandshakeRate, 1)
			return
		}
	}
	ri := &rawInit{Msg: bytes.Clone(msg), Sender: h.Sender, From: p.From, Relayed: p.Relayed, SourceProven: proven, WireLen: len(pkt)}
	select {
	case g.inits <- ri:
	default:
		g.global.Add(HandshakeQueue, 1)
	}
}

// sendCookie answers an init with a cookie reply instead of running it.
// A relayed init's source is TRS: its cookie binds to TRS's address (every
// relayed initiator shares it, and the per-source limits), and the reply
// goes back under the relay token the init came with, which names our side.
func (d *Dataplane) sendCookie(pkt []byte, sender uint32, p *packet, token messages.RelayToken, now time.Time) {
	g := d.hs
	g.global.Add(HandshakeBusy, 1)
	// Per source first: a flood from one address (or one it claims) gets a
	// few replies a second, and the global bound covers spread sources.
	if !g.replySources.take(p.From, now) || !g.cookieOut.take(now) {
		g.global.Add(HandshakeRate, 1)
		return
	}
	hr := 0
	if p.Relayed {
		hr = messages.RelayHeaderLen
	}
	buf := make([]byte, hr+messages.CookieReplyHeaderLen, hr+messages.CookieReplyLen)
	if p.Relayed {
		messages.PutRelayHeader(buf, token)
	}
	messages.PutCookieReplyHeader(buf[hr:], sender)
	buf, err := g.checker.Reply(buf, pkt, p.From, now)
	if err != nil {
		d.log.Warn("handshake: cookie reply", "err", err)
		return
	}
	if !d.out.PushControl(controlPkt{Pkt: buf, To: p.From}) {
		g.global.Add(QueueFull, 1)
		return
	}
	g.cookieReplies.Add(1)
}

// answerUnknown answers a data packet whose receiver index names no
// session with an unknown-index message (messages.UnknownIndex): after a
// restart we have lost every session, and the sender would otherwise go on
// sending into the void until its DeadAfter. The answer echoes the
// packet's index and counter (the sender checks them: lost), is
// smaller than the packet, keeps no state, and is rate limited per source
// and in all. A relayed packet's answer goes back under the token it came
// with, which names our side at TRS.
func (d *Dataplane) answerUnknown(p *packet, h messages.DataHeader, token messages.RelayToken) {
	g, now := d.hs, time.Now()
	if !g.unknownSources.take(p.From, now) || !g.unknownOut.take(now) {
		g.global.Add(BadUnknownIndex, 1)
		return
	}
	hr := 0
	if p.Relayed {
		hr = messages.RelayHeaderLen
	}
	buf := make([]byte, hr+messages.UnknownIndexLen)
	if p.Relayed {
		messages.PutRelayHeader(buf, token)
	}
	messages.UnknownIndex{Receiver: h.Receiver, Counter: h.Counter}.Put(buf[hr:])
	if !d.out.PushControl(controlPkt{Pkt: buf, To: p.From}) {
		g.global.Add(QueueFull, 1)
	}
}

// onReply queues a handshake response or cookie reply for a worker if it
// names one of our pending initiator sessions.
func (d *Dataplane) onReply(job hsJob, receiver uint32) {
	s := d.tables.Session(receiver)
	if s == nil || s.Pipe == nil || s.Key != nil {
		d.global.Add(UnknownIndex, 1)
		return
	}
	select {
	case d.hs.replies <- job:
	default:
		d.global.Add(HandshakeQueue, 1)
	}
}

// routineHandshake runs handshakes from the ingress queues until done.
// Responses first: they complete a handshake we started.
func (d *Dataplane) routineHandshake() {
	g := d.hs
	for {
		select {
		case <-d.done:
			return
		case j := <-g.replies:
			d.runReply(j)
			continue
		default:
		}
		select {
		case <-d.done:
			return
		case j := <-g.replies:
			d.runReply(j)
		case ri := <-g.inits:
			if d.respond(ri) {
				g.initsRun.Add(1)
			}
		}
	}
}

func (d *Dataplane) runReply(j hsJob) {
	d.hs.responses.Add(1)
	if j.resp != nil {
		d.finish(j.resp)
		return
	}
	d.hs.cookiesIn.Add(1)
	d.takeCookie(j.ckRcv, j.ck)
}

// bucket is a token bucket. Not safe for concurrent use alone: the
// readers of both sockets share one, so each has its lock.
type bucket struct {
	mu     sync.Mutex
	rate   float64 // tokens per second
	burst  float64
	tokens float64
	last   time.Time
}

func newBucket(rate, burst float64, now time.Time) bucket {
	return bucket{rate: rate, burst: burst, tokens: burst, last: now}
}

func (b *bucket) take(now time.Time) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.takeLocked(now)
}

func (b *bucket) takeLocked(now time.Time) bool {
	if dt := now.Sub(b.last).Seconds(); dt > 0 {
		b.tokens = min(b.burst, b.tokens+dt*b.rate)
		b.last = now
	}
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// sourceLimiter is a token bucket per source (address and port; callers
// zero the port to limit by address), in a fixed table: a source's bucket
// is chosen by a hash keyed with a random seed, so the table never grows,
// an unauthenticated packet never adds an entry, and an attacker cannot
// aim its sources at a given peer's bucket. Sources that share a bucket
// share its rate; a flood from spoofed random sources drains every bucket,
// which the global bounds (queue, budget, reply rate) then cover.
type sourceLimiter struct {
	seed        maphash.Seed
	rate, burst float64
	mu          sync.Mutex
	tab         []slot
}

// slot is one bucket of the table (tokens and the last refill).
type slot struct {
	tokens float64
	last   int64 // Unix ns; 0: never used (full)
}

func newSourceLimiter(rate, burst float64) sourceLimiter {
	return sourceLimiter{seed: maphash.MakeSeed(), rate: rate, burst: burst, tab: make([]slot, sourceTableSize)}
}

func (l *sourceLimiter) take(a netip.AddrPort, now time.Time) bool {
	a16 := a.Addr().Unmap().As16()
	var key [18]byte
	copy(key[:], a16[:])
	key[16], key[17] = byte(a.Port()>>8), byte(a.Port())
	i := maphash.Bytes(l.seed, key[:]) % uint64(len(l.tab))
	l.mu.Lock()
	defer l.mu.Unlock()
	sl := &l.tab[i]
	n := now.UnixNano()
	switch {
	case sl.last == 0:
		sl.tokens = l.burst
	case n > sl.last:
		sl.tokens = min(l.burst, sl.tokens+float64(n-sl.last)/1e9*l.rate)
	}
	sl.last = max(sl.last, n)
	if sl.tokens < 1 {
		return false
	}
	sl.tokens--
	return true
}

func isZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}
