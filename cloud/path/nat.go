package path

import (
	"net/netip"

	"github.com/cyphonic/cyphonic-go/messages"
)

// NATType describes how a node's NAT maps its UDP socket to public
// addresses, in the RFC 4787 vocabulary. It decides whether a mapping the
// cloud observed is also the one a peer will see. It is the wire's type,
// so a classification travels to the node and into the store unconverted.
type NATType = messages.NATType

// The classifications, by their RFC 4787 names.
const (
	// Unknown means the node has not given the cloud enough observations
	// (the second observation point has not seen it yet).
	Unknown = messages.NATUnknown
	// None means the node's socket is bound to a global address: the
	// observed mapping is one of its own addresses.
	None = messages.NATNone
	// EndpointIndependent ("cone") NAT reuses one public mapping for every
	// destination, so the mapping seen by the cloud is the one a peer sees.
	EndpointIndependent = messages.NATEndpointIndependent
	// EndpointDependent ("symmetric") NAT allocates a new mapping per
	// destination, so the mapping seen by the cloud is useless to a peer.
	EndpointDependent = messages.NATSymmetric
)

// Classify derives a node's NAT type from two observations of the same
// socket made by two different cloud addresses (NMS and a second port or the
// TRS). local holds the addresses the node declared for that socket.
//
// A mapping equal to a local address means no NAT. Otherwise equal
// observations mean the NAT kept one mapping for two destinations
// (endpoint-independent); different ones mean it did not
// (endpoint-dependent). Without a valid second observation of the same
// family the answer is Unknown rather than a guess.
func Classify(local []netip.AddrPort, observedByPrimary, observedByAlt netip.AddrPort) NATType {
	primary := normalize(observedByPrimary)
	if !validEndpoint(primary) {
		return Unknown
	}
	if containsEndpoint(local, primary) {
		return None
	}
	alt := normalize(observedByAlt)
	if !validEndpoint(alt) || alt.Addr().Is4() != primary.Addr().Is4() {
		return Unknown
	}
	if alt == primary {
		return EndpointIndependent
	}
	return EndpointDependent
}

// normalize unmaps IPv4-mapped IPv6 addresses (as dual-stack sockets report
// IPv4 peers) so that the same endpoint always compares equal.
func normalize(ap netip.AddrPort) netip.AddrPort {
	if !ap.IsValid() {
		return netip.AddrPort{}
	}
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

// validEndpoint reports whether ap can be sent to: a real address and a
// non-zero port.
func validEndpoint(ap netip.AddrPort) bool {
	return ap.IsValid() && ap.Port() != 0 && !ap.Addr().IsUnspecified()
}

func containsEndpoint(list []netip.AddrPort, ap netip.AddrPort) bool {
	for _, l := range list {
		if normalize(l) == ap {
			return true
		}
	}
	return false
}
