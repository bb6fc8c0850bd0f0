package path

import (
	"fmt"
	"net/netip"
	"strconv"
)

// Kind is the shape of a path between two nodes.
type Kind uint8

const (
	// NoPath: one of the nodes has no usable address at all.
	NoPath Kind = iota
	// Direct: at least one side can be reached at an address known now
	// (global, or on the same site); the other side's mapping is either
	// known or learnt from its first packet.
	Direct
	// HolePunch: both sides are behind NAT and must probe each other's
	// public mapping at the same time so each NAT admits the other.
	HolePunch
	// Relay: packets go through the TRS, which maps relay tokens to the
	// nodes' endpoints.
	Relay
)

func (k Kind) String() string {
	switch k {
	case NoPath:
		return "none"
	case Direct:
		return "direct"
	case HolePunch:
		return "hole-punch"
	case Relay:
		return "relay"
	}
	return "kind(" + strconv.Itoa(int(k)) + ")"
}

// Side names which node must send first.
type Side uint8

const (
	// BothSides probe at once (hole punching, or simply harmless).
	BothSides Side = iota
	// SideA must send first; B answers the source address it sees.
	SideA
	// SideB must send first; A answers the source address it sees.
	SideB
)

func (s Side) String() string {
	switch s {
	case BothSides:
		return "both"
	case SideA:
		return "a"
	case SideB:
		return "b"
	}
	return "side(" + strconv.Itoa(int(s)) + ")"
}

// Decision is the path NMS directs a pair of nodes onto.
type Decision struct {
	Kind Kind
	// AEndpoints is where A sends to reach B, best first; BEndpoints is
	// where B sends to reach A. A nil list means "wait for the peer's first
	// authenticated packet and answer its source address" (the peer's NAT
	// mapping toward us cannot be known in advance). Both are nil for
	// Relay: NMS hands out the TRS address and tokens instead.
	AEndpoints, BEndpoints []netip.AddrPort
	// Family is the address family of the path (4 or 6). For a relay
	// across families (IPv4-only to IPv6-only) it is 0: each side reaches
	// the TRS over the family it has.
	Family int
	// Initiator is the side that must send first.
	Initiator Side
	// FallbackRelay marks decisions that rest on something the locators
	// cannot show (an unknown NAT type, a symmetric mapping learnt from the
	// first packet, a site inferred from a shared public address). NMS
	// should allocate a relay session up front so the nodes can fall back
	// when probing fails without another signaling round trip.
	FallbackRelay bool
	// Reason explains the decision for logs and `cyphonic status`.
	Reason string
}

// NeedsRelayTicket reports whether NMS allocates a relay session for the
// pair: for every path there is, not only the relay itself. What the
// locators show is the mapping, never a NAT's filtering: a router without
// an input firewall (plain masquerade) lets the two sides' crossing punch
// packets take each other's mappings, and a global address can sit behind
// a stateful firewall. So a direct or punched path may fail however sure
// the decision is, and a node holding its ticket falls back to the TRS
// after a short deadline without another round trip to NMS. The cost is one
// TRS entry, which dies a couple of minutes after its nodes stop binding
// (they bind only while they have no session or use the relay).
func (d Decision) NeedsRelayTicket() bool { return d.Kind != NoPath }

// rank orders decisions from worst to best: the kind first (a path without
// the relay beats one through it), then certainty.
func (d Decision) rank() int {
	r := 0
	switch d.Kind {
	case Direct:
		r = 6
	case HolePunch:
		r = 4
	case Relay:
		r = 2
	}
	if !d.FallbackRelay && d.Kind != NoPath {
		r++
	}
	return r
}

// mirror swaps the roles of A and B, so each rule is written once.
func (d Decision) mirror() Decision {
	d.AEndpoints, d.BEndpoints = d.BEndpoints, d.AEndpoints
	switch d.Initiator {
	case SideA:
		d.Initiator = SideB
	case SideB:
		d.Initiator = SideA
	}
	return d
}

// Choose picks the path between a and b.
//
// Each address family both nodes can use is judged on its own and the best
// result wins; on a tie IPv6 is preferred (no NAT state to keep alive). So
// two nodes with global IPv6 go direct over IPv6 whatever their IPv4 NATs
// are. Without a common family the TRS bridges IPv4 and IPv6.
func Choose(a, b Locator) Decision {
	var best Decision
	found := false
	for _, fam := range [...]int{6, 4} {
		as, aok := a.family(fam)
		bs, bok := b.family(fam)
		if !aok || !bok {
			continue
		}
		d := decide(fam, as, bs)
		if !found || d.rank() > best.rank() {
			best, found = d, true
		}
	}
	if found {
		return best
	}
	if a.reachable() && b.reachable() {
		return Decision{Kind: Relay, Reason: fmt.Sprintf("%s and %s share no IP version; the TRS bridges IPv4 and IPv6", a.FQDN, b.FQDN)}
	}
	return Decision{Kind: NoPath, Reason: fmt.Sprintf("no usable address for %s", unreachableName(a, b))}
}

// Upgrade reports whether a pair that was relayed (prev) can now leave the
// relay given their current locators, e.g. after one node re-registered
// from behind a friendlier NAT or gained IPv6. A pair already off the relay
// is never "upgraded": moving a working direct path would only risk it.
func Upgrade(prev Decision, a, b Locator) bool {
	if prev.Kind != Relay {
		return false
	}
	next := Choose(a, b)
	return next.Kind == Direct || next.Kind == HolePunch
}

func unreachableName(a, b Locator) string {
	if !a.reachable() {
		return a.FQDN
	}
	return b.FQDN
}

// decide applies the rules within one address family.
func decide(fam int, a, b side) Decision {
	switch {
	case a.nat == None && b.nat == None:
		return Decision{
			Kind: Direct, Family: fam,
			AEndpoints: []netip.AddrPort{b.observed},
			BEndpoints: []netip.AddrPort{a.observed},
			Reason:     fmt.Sprintf("%s and %s both have global IPv%d addresses", a.fqdn, b.fqdn, fam),
		}
	case a.nat == None:
		return oneGlobal(fam, a, b)
	case b.nat == None:
		return oneGlobal(fam, b, a).mirror()
	}
	if a.observed.Addr() == b.observed.Addr() {
		if d, ok := sameSite(fam, a, b); ok {
			return d
		}
	}
	switch {
	case a.nat == EndpointDependent || b.nat == EndpointDependent:
		// A symmetric NAT gives the peer a mapping nobody can predict,
		// and the peer (behind its own NAT) cannot accept an unsolicited
		// first packet: no direct path without port guessing, which we
		// do not do.
		return Decision{
			Kind: Relay, Family: fam,
			Reason: fmt.Sprintf("%s (%v) and %s (%v): endpoint-dependent NAT behind NAT needs the relay", a.fqdn, a.nat, b.fqdn, b.nat),
		}
	case a.nat == EndpointIndependent && b.nat == EndpointIndependent:
		return Decision{
			Kind: HolePunch, Family: fam,
			AEndpoints: []netip.AddrPort{b.observed},
			BEndpoints: []netip.AddrPort{a.observed},
			Reason:     fmt.Sprintf("%s and %s are both behind endpoint-independent NAT: both probe the observed mappings", a.fqdn, b.fqdn),
		}
	default:
		// At least one side Unknown, neither symmetric as far as we know.
		// Hole punching costs a few probes and works for every
		// non-symmetric NAT; the relay catches the rest.
		return Decision{
			Kind: HolePunch, Family: fam,
			AEndpoints:    []netip.AddrPort{b.observed},
			BEndpoints:    []netip.AddrPort{a.observed},
			FallbackRelay: true,
			Reason:        fmt.Sprintf("%s (%v) and %s (%v): NAT type unknown, try hole punching, relay on failure", a.fqdn, a.nat, b.fqdn, b.nat),
		}
	}
}

// oneGlobal decides for a pair where g has a global address and n is behind
// a NAT of any type. n's first packet to g always gets through (nothing
// filters in front of g) and opens n's NAT toward g; g answers the source
// address that packet came from. That works even for a symmetric NAT,
// because g learns the mapping n's NAT chose *for g* from the packet itself
// (peers roam on the first authenticated packet anyway), so nothing has to
// be predicted. Hence Direct, with n as the initiator unless n's mapping is
// known to be the one g will see (endpoint-independent), in which case both
// may probe at once.
func oneGlobal(fam int, g, n side) Decision {
	d := Decision{
		Kind: Direct, Family: fam,
		AEndpoints: []netip.AddrPort{n.observed},
		BEndpoints: []netip.AddrPort{g.observed},
		Initiator:  SideB,
	}
	switch n.nat {
	case EndpointIndependent:
		d.Initiator = BothSides
		d.Reason = fmt.Sprintf("%s is global and %s's endpoint-independent mapping is the one it will see: both probe", g.fqdn, n.fqdn)
	case EndpointDependent:
		d.AEndpoints = nil
		d.FallbackRelay = true
		d.Reason = fmt.Sprintf("%s is global; %s (endpoint-dependent NAT) sends first and %s answers the mapping its packet arrives from", g.fqdn, n.fqdn, g.fqdn)
	default:
		d.FallbackRelay = true
		d.Reason = fmt.Sprintf("%s is global; %s (NAT type unknown) sends first and %s answers the mapping its packet arrives from", g.fqdn, n.fqdn, g.fqdn)
	}
	return d
}

// sameSite handles two NATed nodes with the same public address, i.e.
// behind the same NAT: they reach each other on their local addresses,
// then through the NAT's hairpin. A shared public address can also be a
// carrier-grade NAT in front of separate sites, where the local addresses
// lead nowhere, so the relay stays ready. ok is false when either side has
// nothing to offer, leaving the general rules to decide.
func sameSite(fam int, a, b side) (Decision, bool) {
	toB, toA := b.siteEndpoints(fam), a.siteEndpoints(fam)
	if len(toB) == 0 || len(toA) == 0 {
		return Decision{}, false
	}
	return Decision{
		Kind: Direct, Family: fam,
		AEndpoints:    toB,
		BEndpoints:    toA,
		FallbackRelay: true,
		Reason:        fmt.Sprintf("%s and %s share the public address %v: same site, local addresses first", a.fqdn, b.fqdn, a.observed.Addr()),
	}, true
}
