package dataplane

import (
	"math"
	"net/netip"
	"slices"
	"time"

	"github.com/cyphonic/cyphonic-go/messages"
)

// Hole punching through plain masquerade (issue 10).
//
// Linux conntrack, behind every masquerade router without an input
// firewall, breaks the simultaneous punch: when the peer's first packet
// reaches our router before our own first packet has left it, the router
// keeps an UNREPLIED entry for it whose reply tuple is the mapping our
// packet would get, and masquerade gives our packet another source port.
// The peer then aims at a mapping that leads nowhere, and so do we.
//
// So a direct endpoint is first primed (see primes: every direct route,
// punched or not): one init goes to it with a TTL (IPv6: hop limit) that
// carries it through every NAT of our side and no further (primerttl.go
// learns it from the path: 2 behind a home router, 3 behind a home router
// and a CGN), from the same socket. It makes our mappings toward the peer
// and dies at the first router beyond, before it can reach the peer's NAT.
// Full inits to that endpoint wait until the peer has primed its own
// mapping too; then each side's packets arrive at the other's router as
// replies of a mapping that router already holds.
//
// How long that is (primeWait): NMS answers the side that asked only once
// the peer has acknowledged its Direction, and the peer acknowledges only
// after its primer is queued ahead of the acknowledgement on the same
// socket. So a path that came as the answer to our own request (Open, not
// OpenThen) finds the peer's mapping primed already: our primer goes, and
// the full init right behind it, with no wait. The side that was directed
// onto a punched path cannot know when the asker hears its answer (a lost
// answer is retransmitted a second later), so it sends full inits only
// once the asker's init has come through its primed mapping (primer.heard;
// the tie-break then resends ours at once if ours wins), and primes again
// on every retry meanwhile. On a direct path, where the peer may not
// initiate at all, the directed side holds its full inits PrimeWait.
// answerFresh bounds how long after the answer the peer's primer is taken
// to hold: it left an entry its router forgets after 30 s unreplied
// (conntrack's UDP default).

// DefaultPrimeWait is how long full inits wait behind the primer.
const DefaultPrimeWait = 300 * time.Millisecond

// answerFresh is how long after NMS's answer to our request the peer's
// primer is taken to be in place (see above).
const answerFresh = 10 * time.Second

// maxPrimed bounds the endpoints one peer actor remembers having primed;
// NMS names at most messages.MaxAddrs at a time, so only a peer that keeps
// moving gets near it, and then the oldest knowledge is simply dropped.
const maxPrimed = 4 * messages.MaxAddrs

// primeAction is what the next init does toward one endpoint.
type primeAction int

const (
	primeFull  primeAction = iota // send it as is
	primeFirst                    // send it as the primer (low TTL)
	primeHold                     // primed too recently: hold it back
)

// untilHeard is the wait of a side that was directed onto a punched path
// it did not ask for: its full inits wait until the peer is heard from
// that endpoint, however long that takes (see primeWait).
const untilHeard = time.Duration(math.MaxInt64)

// primer remembers when each punched endpoint of one attempt series was
// primed, and whether the peer has been heard from it since. The zero
// value is ready.
type primer struct {
	at map[netip.AddrPort]primedAt
}

type primedAt struct {
	at    time.Time
	heard bool // an init came from the endpoint: its NAT is open toward us
}

// action says what an init to ep does at now with the given wait.
func (pr *primer) action(ep netip.AddrPort, now time.Time, wait time.Duration) primeAction {
	e, ok := pr.at[ep]
	switch {
	case !ok:
		if pr.at == nil || len(pr.at) >= maxPrimed {
			pr.at = make(map[netip.AddrPort]primedAt, messages.MaxAddrs)
		}
		pr.at[ep] = primedAt{at: now}
		return primeFirst
	case e.heard:
	case wait == untilHeard || now.Sub(e.at) < wait:
		return primeHold
	}
	return primeFull
}

// heard records that the peer's packet came from ep: full inits to it
// need wait no longer. Unknown endpoints are ignored.
func (pr *primer) heard(ep netip.AddrPort) {
	if e, ok := pr.at[ep]; ok {
		e.heard = true
		pr.at[ep] = e
	}
}

// primeOnly primes our NAT mapping toward each direct endpoint of a path
// on which only the peer initiates (a direct path NMS gave one
// initiator): before our acknowledgement of the Direction goes out, so
// that the peer's first init, sent on NMS's answer, arrives at our NAT as
// the reply of a mapping it already holds. Without it an init from a
// global peer to a node behind plain masquerade is dropped at that node's
// router (nothing maps it), or, if the node is asking too, leaves the
// UNREPLIED entry that remaps the node's mapping. Having no init of its
// own, the primer is an empty datagram: one that does reach a peer is
// counted there as malformed and otherwise ignored.
func (p *peerActor) primeOnly(info *messages.PathInfo, now time.Time) {
	for _, ep := range info.Endpoints {
		if !ep.IsValid() || !p.d.canSend(ep) {
			continue
		}
		hops, ok := p.primes(info, peerRoute{Addr: ep})
		if !ok || p.primed.action(ep, now, 0) != primeFirst {
			continue
		}
		p.sendPrimer([]byte{}, ep, hops)
		p.d.log.Debug("peer: primer (the peer initiates)", "peer", p.h.FQDN, "endpoint", ep, "ttl", hops)
	}
}

// resendInit sends our pending init once more, at once, by the route the
// peer's init m just came, when the tie-break drops that init for ours
// (we initiate too and our name is the smaller). Our init may have gone
// out before the peer could receive it: on a relay, a directed side sends
// its first init the moment it hears of the path, before the asker holds
// the ticket and has bound it, and the TRS drops that init (its peer side
// unknown); on a punched path it may have died at a NAT not yet open. The
// peer's init shows the route carries to the peer now, so without this
// the pair would wait a HandshakeRetry (1 s) for our next init. Once per
// init of ours, and only by the relay or to an endpoint NMS gave us: an
// init is not authenticated, and must not make us send to an address of
// its choosing.
func (p *peerActor) resendInit(m *answeredInit) {
	if p.iniResent || p.iniPkt == nil {
		return
	}
	info := p.h.Info()
	r := peerRoute{Addr: m.From}
	switch {
	case m.Relayed:
		var ok bool
		if r, ok = p.d.relayRoute(info.Relay); !ok {
			return
		}
	case !slices.Contains(info.Endpoints, m.From):
		return
	}
	p.iniResent = true
	buf := make([]byte, messages.RelayHeaderLen+len(p.iniPkt))
	copy(buf[messages.RelayHeaderLen:], p.iniPkt)
	if !p.d.sendFramed(buf, r) {
		p.h.Stats.Drops.Add(QueueFull, 1)
	}
}

// primeDue tells the peer actor that endpoints it primed may now get full
// inits.
type primeDue struct{}

// primes reports whether inits to r are primed first, and with which TTL:
// any direct route, when priming is on. Not only those of a hole-punched
// path: on a direct path to a node behind plain masquerade both sides
// send at once too (a global node and one behind an endpoint-independent
// NAT), and the global side's early init would leave the same UNREPLIED
// entry at the other's router. That remaps the NATed node's mapping
// toward us, and worse, Linux masquerade then gives that remapped port to
// later connections of the same socket (it reuses an existing mapping of
// the source before the socket's own port), so a punch to a third node
// later aims at a mapping NMS observed that no longer holds. For a path
// only we initiate the wait costs a directed side up to PrimeWait for
// nothing; the asker never waits.
//
// And only from behind a NAT (primerHops): a primer from a node with a
// global address meets its first router one hop out, so any TTL that
// passes it could carry the primer into the peer's NAT, the very packet
// priming must keep from getting there first.
func (p *peerActor) primes(info *messages.PathInfo, r peerRoute) (hops int, ok bool) {
	if info.Kind == messages.PathRelay || r.Relay || p.d.timing.PrimeWait <= 0 {
		return 0, false
	}
	return p.d.primerHops(r.Addr)
}

// cgnat is RFC 6598's shared address space, a carrier-grade NAT's inside.
var cgnat = netip.MustParsePrefix("100.64.0.0/10")

// privateSource reports whether src is an address only a NAT lets out.
func privateSource(src netip.Addr) bool {
	return src.IsPrivate() || cgnat.Contains(src)
}

// primeWait is how long full inits wait behind a primer now.
//
//   - None while NMS's answer to our request is fresh (the peer has
//     primed), or while a session is up (a rekey or a recovery on a path
//     that has carried data).
//   - On a punched path we were directed onto: until the peer is heard
//     from the endpoint (untilHeard). Both sides initiate there, so the
//     asker's init comes, and it comes through our primed mapping; our
//     full init must not reach the asker's NAT before the asker has
//     primed, and when that is depends on when NMS's answer reaches it,
//     which no fixed wait covers (a lost answer is retransmitted a
//     second later). Meanwhile each retry primes again (sendInit), and
//     the relay fallback starts on its own deadline as always.
//   - PrimeWait otherwise (a direct path the peer may or may not
//     initiate on).
func (p *peerActor) primeWait(info *messages.PathInfo, now time.Time) time.Duration {
	if at := p.h.answeredAt(); p.cur != nil || !at.IsZero() && now.Sub(at) < answerFresh {
		return 0
	}
	if info.Kind == messages.PathHolePunch {
		return untilHeard
	}
	return p.d.timing.PrimeWait
}

// sendPrimer queues pkt to ep with the primer's TTL.
func (p *peerActor) sendPrimer(pkt []byte, ep netip.AddrPort, hops int) {
	if !p.d.out.PushControl(controlPkt{Pkt: pkt, To: ep, HopLimit: uint8(hops)}) {
		p.h.Stats.Drops.Add(QueueFull, 1)
	}
	p.h.Stats.Primers.Add(1)
}

// sendInit sends the init pkt (with RelayHeaderLen bytes of headroom in
// buf) to r: as a primer, held back, or as is. It reports whether a full
// init to r is still to come on a timer (onPrimeDue sends it).
func (p *peerActor) sendInit(info *messages.PathInfo, buf []byte, r peerRoute, now time.Time) (held bool) {
	if hops, ok := p.primes(info, r); ok {
		wait := p.primeWait(info, now)
		switch p.primed.action(r.Addr, now, wait) {
		case primeFirst:
			p.sendPrimer(buf[messages.RelayHeaderLen:], r.Addr, hops)
			p.d.log.Debug("peer: punch primer", "peer", p.h.FQDN, "endpoint", r.Addr, "ttl", hops, "hold", wait)
			if wait == untilHeard {
				return false // the peer's init releases it, not a timer
			}
			if wait > 0 {
				return true
			}
			// The full init follows in the same queue, so it leaves our
			// NAT after the primer.
		case primeHold:
			if wait == untilHeard {
				// Keep our mapping primed (a primer may be lost) until
				// the peer's init comes through it.
				p.sendPrimer(buf[messages.RelayHeaderLen:], r.Addr, hops)
				return false
			}
			return true
		}
	}
	if !p.d.sendFramed(buf, r) {
		p.h.Stats.Drops.Add(QueueFull, 1)
	}
	return false
}

// schedulePrimeDue arranges a primeDue once PrimeWait has passed (one
// timer at a time; a later init that is held finds it running).
func (p *peerActor) schedulePrimeDue() {
	if p.primeTimer != nil || p.self == nil {
		return
	}
	root, self := p.root, p.self
	p.primeTimer = time.AfterFunc(p.d.timing.PrimeWait, func() { root.Send(self, primeDue{}) })
}

// onPrimeDue sends the current init at full TTL to the routes whose
// primer has had its PrimeWait, rather than making them wait for the next
// retry.
func (p *peerActor) onPrimeDue() {
	p.primeTimer = nil
	if p.stopping || p.cur != nil || p.ini == nil || p.iniPkt == nil {
		return
	}
	info := p.h.Info()
	now := time.Now()
	held := false
	for _, r := range p.candidates(&info, now) {
		if _, ok := p.primes(&info, r); !ok {
			continue // went out with the init
		}
		buf := make([]byte, messages.RelayHeaderLen+len(p.iniPkt))
		copy(buf[messages.RelayHeaderLen:], p.iniPkt)
		held = p.sendInit(&info, buf, r, now) || held
	}
	if held {
		p.schedulePrimeDue()
	}
}
