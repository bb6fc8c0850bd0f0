package resolver

import (
	"context"
	"errors"
	"net/netip"
	"strconv"
	"strings"
)

// ReverseBackend is what a Backend also implements to answer PTR queries
// for overlay addresses (VIPs): Reverse returns the FQDN holding addr,
// ErrUnknownName for an overlay address nobody known holds (NXDOMAIN), or
// ErrNotOverlay for an address outside the overlay (forwarded upstream).
type ReverseBackend interface {
	Reverse(ctx context.Context, addr netip.Addr) (string, error)
}

// ErrNotOverlay: a reverse name outside the overlay's prefixes.
var ErrNotOverlay = errors.New("resolver: not an overlay address")

// parseReverse reads the address of a reverse-lookup name
// ("2.0.64.100.in-addr.arpa.", or 32 nibbles under "ip6.arpa."), lower
// case with the trailing dot. Partial names (a zone, not an address) and
// anything malformed are not addresses.
func parseReverse(name string) (netip.Addr, bool) {
	switch {
	case strings.HasSuffix(name, ".in-addr.arpa."):
		labels := strings.Split(strings.TrimSuffix(name, ".in-addr.arpa."), ".")
		if len(labels) != 4 {
			return netip.Addr{}, false
		}
		var b [4]byte
		for i, l := range labels {
			// Canonical decimal only: "01" or "+1" would alias one address.
			n, err := strconv.ParseUint(l, 10, 8)
			if err != nil || strconv.FormatUint(n, 10) != l {
				return netip.Addr{}, false
			}
			b[3-i] = byte(n)
		}
		return netip.AddrFrom4(b), true
	case strings.HasSuffix(name, ".ip6.arpa."):
		labels := strings.Split(strings.TrimSuffix(name, ".ip6.arpa."), ".")
		if len(labels) != 32 {
			return netip.Addr{}, false
		}
		var b [16]byte
		for i, l := range labels {
			if len(l) != 1 {
				return netip.Addr{}, false
			}
			n, err := strconv.ParseUint(l, 16, 8)
			if err != nil {
				return netip.Addr{}, false
			}
			nib := 31 - i // labels run from the last nibble to the first
			if nib%2 == 0 {
				b[nib/2] |= byte(n) << 4
			} else {
				b[nib/2] |= byte(n)
			}
		}
		return netip.AddrFrom16(b), true
	}
	return netip.Addr{}, false
}
