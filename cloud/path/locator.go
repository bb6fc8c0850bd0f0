package path

import "net/netip"

// Locator is what the cloud knows about where a node is: the public
// mappings it observed on the node's registration, the local addresses the
// node declared, and the NAT type derived from them (see Classify).
type Locator struct {
	FQDN string
	// Observed4 and Observed6 are the node's public mappings as the cloud
	// saw them (the source address of its registration); zero if none.
	Observed4, Observed6 netip.AddrPort
	// Locals are the addresses the node declared for its sockets. They are
	// used to reach a node from behind the same NAT.
	Locals []netip.AddrPort
	// NAT4 is the NAT type on the node's IPv4 path.
	NAT4 NATType
	// NAT6 is the NAT type on the node's IPv6 path. IPv6 is assumed to have
	// no NAT unless told: the zero value (Unknown) is read as None, because
	// NAT66 is rare and treating every IPv6 node as unknown would push
	// global pairs onto hole punching for nothing.
	NAT6             NATType
	HasIPv4, HasIPv6 bool
}

// side is one locator seen through one address family: the facts the rules
// need, already normalised.
type side struct {
	fqdn     string
	observed netip.AddrPort
	nat      NATType
	locals   []netip.AddrPort
}

// family returns the locator's view of address family fam (4 or 6) and
// whether the node is usable there: it must claim the family and the cloud
// must have observed a mapping in it (without one there is nothing a peer
// could be told to send to).
func (l Locator) family(fam int) (side, bool) {
	has, obs, nat := l.HasIPv4, normalize(l.Observed4), l.NAT4
	if fam == 6 {
		has, obs, nat = l.HasIPv6, normalize(l.Observed6), l.NAT6
		if nat == Unknown {
			nat = None
		}
	}
	if !has || !validEndpoint(obs) || obs.Addr().Is4() != (fam == 4) {
		return side{}, false
	}
	// A mapping equal to a declared address is proof of no NAT, whatever
	// the classification said (it may predate a move to a global address).
	if containsEndpoint(l.Locals, obs) {
		nat = None
	}
	return side{fqdn: l.FQDN, observed: obs, nat: nat, locals: l.Locals}, true
}

// reachable reports whether the node is usable in at least one family.
func (l Locator) reachable() bool {
	_, ok4 := l.family(4)
	_, ok6 := l.family(6)
	return ok4 || ok6
}

// siteEndpoints lists where a peer on the same site can reach s in family
// fam, best first: its declared local addresses, then its public mapping
// (through the NAT's hairpin) unless the NAT is endpoint-dependent, whose
// mapping toward the peer cannot be predicted.
func (s side) siteEndpoints(fam int) []netip.AddrPort {
	var out []netip.AddrPort
	for _, l := range s.locals {
		l = normalize(l)
		a := l.Addr()
		if !validEndpoint(l) || a.Is4() != (fam == 4) || a.IsLoopback() || a.IsMulticast() ||
			(a.Is6() && a.IsLinkLocalUnicast()) || l == s.observed || containsEndpoint(out, l) {
			continue
		}
		out = append(out, l)
	}
	if s.nat != EndpointDependent {
		out = append(out, s.observed)
	}
	return out
}
