// Package hops learns how many router hops separate a node from the public
// internet: the TTL (IPv6: hop limit) a hole-punch primer needs so that it
// passes every NAT of the node's own side and dies at the first router
// beyond them (actors/dataplane/punch.go).
//
// Probe sends a few UDP datagrams toward a public address (the cloud) with
// TTL 1, 2, … and reads the ICMP time-exceeded answers from the sockets'
// error queues (IP_RECVERR): a Linux NAPT router translates such an ICMP
// error back to the inside host like any reply of the connection it
// belongs to, so a node behind a home router and a carrier-grade NAT hears
// both of them and the first public router beyond. Choose turns what came
// back into the primer's TTL. Both are plain functions; the data plane
// runs Probe off its actors and caches Choose's answer per local address.
package hops

import (
	"net/netip"
	"slices"
)

// Fallback is the primer TTL when the path taught nothing: a NAT that is
// the node's first hop (a home LAN, a Docker bridge, a VPS behind its
// provider's NAT gateway), where a TTL-2 primer passes the router and
// expires at the next.
const Fallback = 2

// MaxTTL is the highest TTL Probe sends by default: a home router, a CGN
// and a few private-addressed routers of the access network.
const MaxTTL = 8

// Hop is what one probe of a given TTL heard back.
type Hop struct {
	TTL int
	// From is the router that sent ICMP time exceeded for the probe (or
	// the host that answered it, when Reached); invalid: nothing came.
	From netip.Addr
	// Reached: the probe got to the destination, which answered (port
	// unreachable) rather than a router on the way.
	Reached bool
}

// Private reports whether a is an address no public router would answer
// from: RFC 1918, RFC 6598's shared space (a CGN's inside), ULA, or a
// loopback or link-local address. The routers up to our outermost NAT
// answer from such addresses (their inside interfaces, toward us).
func Private(a netip.Addr) bool {
	a = a.Unmap()
	return a.IsPrivate() || cgnat.Contains(a) || a.IsLoopback() || a.IsLinkLocalUnicast()
}

// cgnat is RFC 6598's shared address space, a carrier-grade NAT's inside.
var cgnat = netip.MustParsePrefix("100.64.0.0/10")

// Choose returns the primer TTL the hops call for, and whether a public
// router's answer confirmed it.
//
// The first hop that answers from a public address is beyond our
// outermost NAT; the primer must pass every hop before it and die there.
// A hop that stayed silent right before it may be that outermost NAT as
// well as a public router, so the TTL is one more than the last hop known
// to be private: passing too few of our NATs only loses the punch (the
// relay catches it), passing one public router too many could carry the
// primer into the peer's NAT, where it does the harm priming prevents.
//
// When private hops answered and nothing public did, the TTL is the same,
// unconfirmed: the routers beyond a CGN are the ones most likely to stay
// silent, since a CGN's one public address is shared by all its customers
// and Linux routers send at most about one time exceeded per second to
// any one destination. Without any private hop (every router before the
// first public one silent, or the first router answering from a public
// address), or when the destination itself is inside our own network,
// the path says nothing: Fallback.
func Choose(hops []Hop) (ttl int, confirmed bool) {
	hs := slices.Clone(hops)
	slices.SortFunc(hs, func(a, b Hop) int { return a.TTL - b.TTL })
	lastPrivate := 0
	for _, h := range hs {
		if h.TTL < 1 || !h.From.IsValid() {
			continue
		}
		if !Private(h.From) {
			if lastPrivate == 0 {
				return Fallback, false
			}
			return lastPrivate + 1, true
		}
		if h.Reached {
			// The destination is inside our own network: nothing
			// beyond it was probed.
			return Fallback, false
		}
		lastPrivate = h.TTL
	}
	if lastPrivate == 0 {
		return Fallback, false
	}
	return lastPrivate + 1, false
}
