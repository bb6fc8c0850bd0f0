package netlab

import (
	"errors"
	"fmt"
	"net/netip"
	"regexp"
)

// The address plan. Public addresses come only from documentation ranges
// (RFC 5737, RFC 3849) so nothing a test does can reach a real network.
var (
	internet4  = netip.MustParsePrefix("198.51.100.0/24")
	internet4b = netip.MustParsePrefix("203.0.113.0/25") // secondary global addresses
	internet6  = netip.MustParsePrefix("2001:db8::/64")
	internet6b = netip.MustParsePrefix("2001:db8:1::/64")  // secondary global addresses
	routed4    = netip.MustParsePrefix("203.0.113.128/25") // cut into /28 LANs of sites without NAT
)

// maxRouted4Sites is how many /28s fit in routed4.
const maxRouted4Sites = 8

// ErrAddressSpace means a segment or the plan ran out of addresses.
var ErrAddressSpace = errors.New("netlab: address space exhausted")

// ErrName means a host or site name is unusable: names are 1-8 characters
// of [a-z0-9] starting with a letter, unique in a Bed, and not "inet".
var ErrName = errors.New("netlab: invalid name")

// namePattern keeps names short enough that "cyXXXX-" + name and "v-" + name
// fit IFNAMSIZ (15 characters) and are safe in paths and nft rules.
var namePattern = regexp.MustCompile(`^[a-z][a-z0-9]{0,7}$`)

// nsPattern matches every namespace this package can create; the stale
// sweep touches nothing else.
var nsPattern = regexp.MustCompile(`^cy[0-9a-f]{4}-[a-z][a-z0-9]{0,7}$`)

// internetName names the internet namespace; no host or site may take it.
const internetName = "inet"

func validName(name string) error {
	if !namePattern.MatchString(name) || name == internetName {
		return fmt.Errorf("%w: %q (want [a-z][a-z0-9]{0,7}, not %q)", ErrName, name, internetName)
	}
	return nil
}

// nth returns the n-th address of p (n=1 is the gateway). It refuses the
// network address, an IPv4 broadcast address and anything outside p.
func nth(p netip.Prefix, n int) (netip.Addr, error) {
	if !p.IsValid() || n < 1 {
		return netip.Addr{}, fmt.Errorf("%w: address %d of %s", ErrAddressSpace, n, p)
	}
	hostBits := p.Addr().BitLen() - p.Bits()
	if hostBits < 63 {
		limit := uint64(1) << hostBits
		if p.Addr().Is4() {
			limit-- // broadcast
		}
		if uint64(n) >= limit {
			return netip.Addr{}, fmt.Errorf("%w: address %d of %s", ErrAddressSpace, n, p)
		}
	}
	b := p.Masked().Addr().AsSlice()
	carry := uint64(n)
	for i := len(b) - 1; i >= 0 && carry > 0; i-- {
		sum := uint64(b[i]) + carry&0xff
		b[i] = byte(sum)
		carry = carry>>8 + sum>>8
	}
	a, _ := netip.AddrFromSlice(b)
	return a, nil
}

// lan is one layer-2 segment: the internet's bridge or a site's LAN bridge.
type lan struct {
	v4, v6   netip.Prefix // invalid when the family is absent
	v4b, v6b netip.Prefix // secondary prefixes; only the internet has them
}

func internetLAN() lan {
	return lan{v4: internet4, v6: internet6, v4b: internet4b, v6b: internet6b}
}

// siteLAN plans site number index (1-based); routedIndex is its number
// (1-based) among sites whose IPv4 LAN is routed rather than NATed.
func siteLAN(index, routedIndex int, opts SiteOpts) (lan, error) {
	var l lan
	if index < 1 || index > 255 {
		return l, fmt.Errorf("%w: site %d", ErrAddressSpace, index)
	}
	if opts.IPv4 {
		if opts.NAT != NATNone {
			l.v4 = netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(index), 0, 0}), 24)
		} else {
			if routedIndex < 1 || routedIndex > maxRouted4Sites {
				return l, fmt.Errorf("%w: more than %d IPv4 sites without NAT", ErrAddressSpace, maxRouted4Sites)
			}
			r := routed4.Addr().As4()
			r[3] += byte(16 * (routedIndex - 1))
			l.v4 = netip.PrefixFrom(netip.AddrFrom4(r), 28)
		}
	}
	if opts.IPv6 {
		var a [16]byte
		if opts.NAT66 && opts.NAT != NATNone {
			a[0] = 0xfd // fd00:0:0:<index>::/64, ULA masqueraded at the router
			a[6], a[7] = byte(index>>8), byte(index)
		} else {
			// 2001:db8:<0x100+index>::/64, routed global space.
			a[0], a[1], a[2], a[3] = 0x20, 0x01, 0x0d, 0xb8
			a[4], a[5] = byte((0x100+index)>>8), byte(0x100+index)
		}
		l.v6 = netip.PrefixFrom(netip.AddrFrom16(a), 64)
	}
	return l, nil
}

// gateway is the router's address on a prefix.
func gateway(p netip.Prefix) netip.Addr {
	a, _ := nth(p, 1)
	return a
}
