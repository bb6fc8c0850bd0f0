package session

import (
	"net"
	"net/netip"
	"slices"

	"github.com/cyphonic/cyphonic-go/messages"
)

// Locators returns the addresses to register for sockets bound at bound:
// a socket bound to a specific address is that address; one bound to the
// wildcard is every usable address of its family in ifaddrs (global or
// private unicast, not loopback or link-local), with the socket's port.
// The result is sorted, deduplicated and at most messages.MaxAddrs long.
func Locators(bound []netip.AddrPort, ifaddrs []netip.Addr) []netip.AddrPort {
	var out []netip.AddrPort
	for _, b := range bound {
		if !b.IsValid() {
			continue
		}
		if !b.Addr().IsUnspecified() {
			out = append(out, netip.AddrPortFrom(b.Addr().Unmap(), b.Port()))
			continue
		}
		want4 := b.Addr().Unmap().Is4()
		for _, a := range ifaddrs {
			a = a.Unmap()
			if a.Is4() != want4 || !usable(a) {
				continue
			}
			out = append(out, netip.AddrPortFrom(a.WithZone(""), b.Port()))
		}
	}
	slices.SortFunc(out, func(x, y netip.AddrPort) int { return x.Compare(y) })
	out = slices.Compact(out)
	if len(out) > messages.MaxAddrs {
		out = out[:messages.MaxAddrs]
	}
	return out
}

func usable(a netip.Addr) bool {
	return a.IsValid() && !a.IsLoopback() && !a.IsLinkLocalUnicast() && !a.IsMulticast() && !a.IsUnspecified()
}

// InterfaceAddrs lists the host's interface addresses (nil on error: a node
// without them registers only what NMS observes).
func InterfaceAddrs() []netip.Addr {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil
	}
	out := make([]netip.Addr, 0, len(addrs))
	for _, a := range addrs {
		if p, err := netip.ParsePrefix(a.String()); err == nil {
			out = append(out, p.Addr())
		}
	}
	return out
}
