package path

import (
	"net/netip"
	"testing"
)

// palette holds endpoints the fuzzer combines, chosen so that collisions
// (same site, observed == local, mapped forms, zero values) are common.
var palette = []netip.AddrPort{
	{},
	ap("192.168.1.10:41641"),
	ap("192.168.1.11:41641"),
	ap("198.51.100.1:60001"),
	ap("198.51.100.1:60002"),
	ap("203.0.113.20:41641"),
	ap("[::ffff:198.51.100.1]:60001"),
	ap("[2001:db8:a::10]:41641"),
	ap("[2001:db8:b::20]:41641"),
	ap("[fe80::1]:41641"),
	ap("127.0.0.1:41641"),
	ap("0.0.0.0:0"),
	ap("198.51.100.1:0"),
}

// locatorFrom builds a Locator from fuzz bytes, consuming what it uses.
func locatorFrom(fqdn string, data []byte) (Locator, []byte) {
	next := func() byte {
		if len(data) == 0 {
			return 0
		}
		b := data[0]
		data = data[1:]
		return b
	}
	pick := func() netip.AddrPort { return palette[int(next())%len(palette)] }
	l := Locator{FQDN: fqdn}
	flags := next()
	l.HasIPv4, l.HasIPv6 = flags&1 != 0, flags&2 != 0
	l.NAT4, l.NAT6 = NATType(flags>>2&7), NATType(flags>>5&7)
	l.Observed4, l.Observed6 = pick(), pick()
	for n := next() % 4; n > 0; n-- {
		l.Locals = append(l.Locals, pick())
	}
	return l, data
}

// FuzzChoose checks that Choose never panics, never depends on argument
// order, and only hands out endpoints a node can send to.
func FuzzChoose(f *testing.F) {
	f.Add([]byte{0x05, 3, 3, 1, 1, 0x05, 4, 4, 1, 2})
	f.Add([]byte{0x0d, 3, 0, 1, 1, 0x06, 0, 8, 1, 8})
	f.Add([]byte{0xff, 6, 7, 3, 1, 2, 9, 0xfe, 5, 8, 2, 10, 11})
	f.Fuzz(func(t *testing.T, data []byte) {
		a, rest := locatorFrom("a", data)
		b, _ := locatorFrom("b", rest)
		d := Choose(a, b)
		if r := Choose(b, a).mirror(); !sameDecision(d, r) {
			t.Fatalf("asymmetric:\n%+v\n%+v", d, r)
		}
		switch d.Kind {
		case NoPath, Relay:
			if d.AEndpoints != nil || d.BEndpoints != nil {
				t.Fatalf("%v with endpoints: %+v", d.Kind, d)
			}
		case Direct, HolePunch:
			if d.Family != 4 && d.Family != 6 {
				t.Fatalf("family %d: %+v", d.Family, d)
			}
			for _, e := range append(append([]netip.AddrPort(nil), d.AEndpoints...), d.BEndpoints...) {
				if !validEndpoint(e) || e.Addr().Is4() != (d.Family == 4) || e.Addr().Is4In6() {
					t.Fatalf("bad endpoint %v: %+v", e, d)
				}
			}
			if (d.Initiator != SideB && len(d.AEndpoints) == 0) || (d.Initiator != SideA && len(d.BEndpoints) == 0) {
				t.Fatalf("a side that must send has nowhere to send: %+v", d)
			}
		default:
			t.Fatalf("unknown kind %v", d.Kind)
		}
		if d.Reason == "" {
			t.Fatal("empty reason")
		}
	})
}
