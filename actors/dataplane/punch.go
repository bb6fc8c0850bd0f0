package dataplane

import (
	"net"
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
// punched or not): one init goes to it with a TTL
// (IPv6: hop limit) of punchHopLimit, from the same socket. It leaves our
// NAT, which makes our mapping toward the peer, and dies at the first
// router beyond, before it can reach the peer's NAT. Only after PrimeWait
// do full inits go to that endpoint; by then the peer, told about the
// path at about the same moment, has primed its own mapping too, and each
// side's packets arrive at the other's router as replies of a mapping
// that router already holds. PrimeWait covers the time between the two
// sides hearing of the path (NMS tells the peer, then answers the asker);
// if it is exceeded the punch may still fail, and the relay fallback
// catches it as before.
//
// The wait is needed only while the peer may not have heard of the path.
// NMS answers the side that asked only once the peer has acknowledged its
// Direction, and the peer acknowledges only after its primer is queued
// ahead of the acknowledgement on the same socket. So a path that came as
// the answer to our own request (Open, not OpenThen) finds the peer's
// mapping primed already: our primer goes, and the full init right behind
// it, with no wait; the side that was directed holds its full inits, and
// the asker's init usually opens the tunnel first. answerFresh bounds how
// long after the answer that holds: the peer's primer left an entry its
// router forgets after 30 s unreplied (conntrack's UDP default).
//
// punchHopLimit 2 fits a node whose NAT is its first hop (a home LAN, a
// Docker bridge, a VPS behind its provider's NAT gateway): the primer
// passes that router and expires at the next one. A node further from its
// NAT primes nothing, and its punch is what it was without priming.
const punchHopLimit = 2

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

// primer remembers when each punched endpoint of one attempt series was
// primed. The zero value is ready.
type primer struct {
	at map[netip.AddrPort]time.Time
}

// action says what an init to ep does at now with the given wait.
func (pr *primer) action(ep netip.AddrPort, now time.Time, wait time.Duration) primeAction {
	at, ok := pr.at[ep]
	switch {
	case !ok:
		if pr.at == nil || len(pr.at) >= maxPrimed {
			pr.at = make(map[netip.AddrPort]time.Time, messages.MaxAddrs)
		}
		pr.at[ep] = now
		return primeFirst
	case now.Sub(at) < wait:
		return primeHold
	}
	return primeFull
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
		r := peerRoute{Addr: ep}
		if !ep.IsValid() || !p.d.canSend(ep) || !p.primes(info, r) {
			continue
		}
		if p.primed.action(ep, now, 0) != primeFirst {
			continue
		}
		if !p.d.out.PushControl(controlPkt{Pkt: []byte{}, To: ep, HopLimit: punchHopLimit}) {
			p.h.Stats.Drops.Add(QueueFull, 1)
		}
		p.h.Stats.Primers.Add(1)
		p.d.log.Debug("peer: primer (the peer initiates)", "peer", p.h.FQDN, "endpoint", ep)
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

// primes reports whether inits to r are primed first: any direct route,
// when priming is on. Not only those of a hole-punched path: on a direct
// path to a node behind plain masquerade both sides send at once too (a
// global node and one behind an endpoint-independent NAT), and the global
// side's early init would leave the same UNREPLIED entry at the other's
// router. That remaps the NATed node's mapping toward us, and worse,
// Linux masquerade then gives that remapped port to later connections of
// the same socket (it reuses an existing mapping of the source before the
// socket's own port), so a punch to a third node later aims at a mapping
// NMS observed that no longer holds. For a path only we initiate the
// wait costs a directed side up to PrimeWait for nothing; the asker never
// waits.
//
// And only from behind a NAT (natted): a primer from a node with a global
// address meets its first router one hop out, not two, so TTL 2 would
// carry it into the peer's NAT, the very packet priming must keep from
// getting there first.
func (p *peerActor) primes(info *messages.PathInfo, r peerRoute) bool {
	return info.Kind != messages.PathRelay && !r.Relay && p.d.timing.PrimeWait > 0 && natted(r.Addr)
}

// cgnat is RFC 6598's shared address space, a carrier-grade NAT's inside.
var cgnat = netip.MustParsePrefix("100.64.0.0/10")

// natted reports whether the address the kernel would send from toward ep
// is a private one (RFC 1918, RFC 6598, a ULA), so that a NAT sits between
// us and ep. It asks the kernel by connecting a throwaway UDP socket,
// which sends nothing; a failure counts as not NATed (no primer, the old
// behaviour).
func natted(ep netip.AddrPort) bool {
	c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(ep))
	if err != nil {
		return false
	}
	defer c.Close()
	src := c.LocalAddr().(*net.UDPAddr).AddrPort().Addr().Unmap()
	return privateSource(src)
}

// privateSource reports whether src is an address only a NAT lets out.
func privateSource(src netip.Addr) bool {
	return src.IsPrivate() || cgnat.Contains(src)
}

// primeWait is how long full inits wait behind a primer now: none while
// NMS's answer to our request is fresh (the peer has primed), PrimeWait
// otherwise.
func (p *peerActor) primeWait(now time.Time) time.Duration {
	if at := p.h.answeredAt(); !at.IsZero() && now.Sub(at) < answerFresh {
		return 0
	}
	return p.d.timing.PrimeWait
}

// sendInit sends the init pkt (with RelayHeaderLen bytes of headroom in
// buf) to r: as a primer, held back, or as is. It reports whether a full
// init to r is still to come (onPrimeDue sends it).
func (p *peerActor) sendInit(info *messages.PathInfo, buf []byte, r peerRoute, now time.Time) (held bool) {
	if p.primes(info, r) {
		wait := p.primeWait(now)
		switch p.primed.action(r.Addr, now, wait) {
		case primeFirst:
			if !p.d.out.PushControl(controlPkt{Pkt: buf[messages.RelayHeaderLen:], To: r.Addr, HopLimit: punchHopLimit}) {
				p.h.Stats.Drops.Add(QueueFull, 1)
			}
			p.h.Stats.Primers.Add(1)
			p.d.log.Debug("peer: punch primer", "peer", p.h.FQDN, "endpoint", r.Addr, "hold", wait)
			if wait > 0 {
				return true
			}
			// The full init follows in the same queue, so it leaves our
			// NAT after the primer.
		case primeHold:
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
		if !p.primes(&info, r) {
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
