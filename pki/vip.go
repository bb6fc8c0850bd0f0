package pki

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
)

// The overlay's VIP prefixes: the CA allocates node VIPs from them (a CA
// directory records its own in issued.json) and AS announces them to the
// nodes, which route them into their TUN devices. The ULA's global ID
// spells "cypho" (RFC 4193 wants it random; a fixed default, as
// Tailscale's fd7a:115c:a1e0::/48, keeps every default overlay's
// addresses recognisable).
var (
	DefaultVIP6 = netip.MustParsePrefix("fd63:7970:686f::/48")
	DefaultVIP4 = netip.MustParsePrefix("100.64.0.0/10")
)

// ErrVIPExhausted: the prefixes have no address pair left.
var ErrVIPExhausted = errors.New("pki: VIP prefixes exhausted")

// VIPPair returns allocation number n's addresses: the n-th of each prefix.
// Number 0 (the prefix's own address) and IPv4's last address are never
// used.
func VIPPair(p6, p4 netip.Prefix, n uint64) (vip6, vip4 netip.Addr, err error) {
	if !p6.Addr().Is6() || p6.Addr().Is4In6() || !p4.Addr().Is4() || p4.Bits() > 30 || p6.Bits() > 126 {
		return netip.Addr{}, netip.Addr{}, fmt.Errorf("pki: VIP prefixes %s, %s unusable", p6, p4)
	}
	size := uint64(1)<<(32-p4.Bits()) - 2
	if h6 := 128 - p6.Bits(); h6 < 62 {
		size = min(size, uint64(1)<<h6-2)
	}
	if n == 0 || n > size {
		return netip.Addr{}, netip.Addr{}, fmt.Errorf("%w (%s, %s: %d pairs)", ErrVIPExhausted, p6, p4, size)
	}
	b6 := p6.Masked().Addr().As16()
	lo := binary.BigEndian.Uint64(b6[8:])
	hi := binary.BigEndian.Uint64(b6[:8])
	sum := lo + n
	if sum < lo {
		hi++
	}
	binary.BigEndian.PutUint64(b6[:8], hi)
	binary.BigEndian.PutUint64(b6[8:], sum)
	b4 := p4.Masked().Addr().As4()
	binary.BigEndian.PutUint32(b4[:], binary.BigEndian.Uint32(b4[:])+uint32(n))
	return netip.AddrFrom16(b6), netip.AddrFrom4(b4), nil
}
