package store

import (
	"encoding/binary"
	"fmt"
	"math"
	"net/netip"
)

// vipPool maps allocation numbers 1, 2, 3... to address pairs: number n is
// the n-th address of each prefix. One counter for both families keeps the
// pair allocation a single atomic increment in either backend. Offset 0
// (the prefix's own address) and the last one (IPv4's broadcast form) are
// never handed out.
type vipPool struct {
	p6, p4 netip.Prefix
	size   uint64 // usable numbers: 1..size
}

func newVIPPool(c Config) (vipPool, error) {
	c = c.withDefaults()
	p6, p4 := c.VIP6, c.VIP4
	if !p6.Addr().Is6() || p6.Addr().Is4In6() || p6.Bits() > 126 || p6.Masked() != p6 {
		return vipPool{}, fmt.Errorf("store: VIP6 prefix %s: want a masked IPv6 prefix of /126 or shorter", p6)
	}
	if !p4.Addr().Is4() || p4.Bits() > 30 || p4.Masked() != p4 {
		return vipPool{}, fmt.Errorf("store: VIP4 prefix %s: want a masked IPv4 prefix of /30 or shorter", p4)
	}
	return vipPool{p6: p6, p4: p4, size: min(hostCount(128-p6.Bits()), hostCount(32-p4.Bits()))}, nil
}

// hostCount is the number of usable offsets in a block of hostBits bits,
// capped far beyond any real overlay so it fits a uint64 (and Redis's
// signed 64-bit INCR).
func hostCount(hostBits int) uint64 {
	if hostBits >= 62 {
		return math.MaxInt64 / 2
	}
	return 1<<hostBits - 2
}

// at returns the pair for allocation number n (1 <= n <= size).
func (p vipPool) at(n uint64) (vip6, vip4 netip.Addr, err error) {
	if n == 0 || n > p.size {
		return netip.Addr{}, netip.Addr{}, fmt.Errorf("store: %w (%s, %s: %d addresses)", ErrVIPExhausted, p.p6, p.p4, p.size)
	}
	b6 := p.p6.Addr().As16()
	lo := binary.BigEndian.Uint64(b6[8:])
	hi := binary.BigEndian.Uint64(b6[:8])
	sum := lo + n
	if sum < lo {
		hi++
	}
	binary.BigEndian.PutUint64(b6[:8], hi)
	binary.BigEndian.PutUint64(b6[8:], sum)

	b4 := p.p4.Addr().As4()
	binary.BigEndian.PutUint32(b4[:], binary.BigEndian.Uint32(b4[:])+uint32(n))
	return netip.AddrFrom16(b6), netip.AddrFrom4(b4), nil
}
