package path

import (
	"net/netip"
	"reflect"
	"testing"
)

var ap = netip.MustParseAddrPort

func eps(s ...string) []netip.AddrPort {
	if len(s) == 0 {
		return nil
	}
	out := make([]netip.AddrPort, len(s))
	for i, v := range s {
		out[i] = ap(v)
	}
	return out
}

// global4 is a node whose socket is bound to a global IPv4 address.
func global4(fqdn, addr string) Locator {
	return Locator{FQDN: fqdn, Observed4: ap(addr), Locals: eps(addr), NAT4: None, HasIPv4: true}
}

// natted4 is a node behind an IPv4 NAT.
func natted4(fqdn, local, observed string, nat NATType) Locator {
	l := Locator{FQDN: fqdn, Observed4: ap(observed), NAT4: nat, HasIPv4: true}
	if local != "" {
		l.Locals = eps(local)
	}
	return l
}

// global6 is an IPv6-only node with a global address.
func global6(fqdn, addr string) Locator {
	return Locator{FQDN: fqdn, Observed6: ap(addr), Locals: eps(addr), HasIPv6: true}
}

// dual merges an IPv4 locator and an IPv6 locator of the same node.
func dual(v4, v6 Locator) Locator {
	v4.Observed6, v4.NAT6, v4.HasIPv6 = v6.Observed6, v6.NAT6, v6.HasIPv6
	v4.Locals = append(append([]netip.AddrPort(nil), v4.Locals...), v6.Locals...)
	return v4
}

const (
	aLAN   = "192.168.1.10:41641"
	bLAN   = "10.0.0.20:41641"
	aMap   = "198.51.100.1:60001"
	bMap   = "203.0.113.1:50002"
	aPub4  = "198.51.100.10:41641"
	bPub4  = "203.0.113.20:41641"
	aPub6  = "[2001:db8:a::10]:41641"
	bPub6  = "[2001:db8:b::20]:41641"
	site   = "198.51.100.1"
	aSite  = "192.168.1.10:41641"
	bSite  = "192.168.1.11:41641"
	aSiteM = site + ":60001"
	bSiteM = site + ":60002"
)

func TestChoose(t *testing.T) {
	type want struct {
		kind      Kind
		family    int
		toB, toA  []netip.AddrPort
		initiator Side
		fallback  bool
	}
	// nat66 puts a node's IPv6 behind an endpoint-dependent NAT66.
	nat66 := func(l Locator, observed string) Locator {
		l.Observed6, l.NAT6 = ap(observed), EndpointDependent
		return l
	}
	tests := []struct {
		name string
		a, b Locator
		want want
	}{
		{
			name: "global IPv4 both",
			a:    global4("a", aPub4), b: global4("b", bPub4),
			want: want{kind: Direct, family: 4, toB: eps(bPub4), toA: eps(aPub4)},
		},
		{
			name: "global IPv6 both",
			a:    global6("a", aPub6), b: global6("b", bPub6),
			want: want{kind: Direct, family: 6, toB: eps(bPub6), toA: eps(aPub6)},
		},
		{
			name: "dual-stack, IPv4 behind cone NAT: IPv6 direct wins",
			a:    dual(natted4("a", aLAN, aMap, EndpointIndependent), global6("a", aPub6)),
			b:    dual(natted4("b", bLAN, bMap, EndpointIndependent), global6("b", bPub6)),
			want: want{kind: Direct, family: 6, toB: eps(bPub6), toA: eps(aPub6)},
		},
		{
			name: "dual-stack, global on both families: tie goes to IPv6",
			a:    dual(global4("a", aPub4), global6("a", aPub6)),
			b:    dual(global4("b", bPub4), global6("b", bPub6)),
			want: want{kind: Direct, family: 6, toB: eps(bPub6), toA: eps(aPub6)},
		},
		{
			name: "dual-stack, IPv4 symmetric both: IPv6 rescues",
			a:    dual(natted4("a", aLAN, aMap, EndpointDependent), global6("a", aPub6)),
			b:    dual(natted4("b", bLAN, bMap, EndpointDependent), global6("b", bPub6)),
			want: want{kind: Direct, family: 6, toB: eps(bPub6), toA: eps(aPub6)},
		},
		{
			name: "dual-stack to IPv4-only: IPv4 rules apply",
			a:    dual(natted4("a", aLAN, aMap, EndpointIndependent), global6("a", aPub6)),
			b:    natted4("b", bLAN, bMap, EndpointIndependent),
			want: want{kind: HolePunch, family: 4, toB: eps(bMap), toA: eps(aMap)},
		},
		{
			name: "IPv6 told symmetric both: IPv4 hole punch beats IPv6 relay",
			a:    nat66(dual(natted4("a", aLAN, aMap, EndpointIndependent), global6("a", aPub6)), "[2001:db8:ffff::1]:60001"),
			b:    nat66(dual(natted4("b", bLAN, bMap, EndpointIndependent), global6("b", bPub6)), "[2001:db8:eeee::1]:60002"),
			want: want{kind: HolePunch, family: 4, toB: eps(bMap), toA: eps(aMap)},
		},
		{
			name: "same NAT, cone: local addresses first, hairpin second",
			a:    natted4("a", aSite, aSiteM, EndpointIndependent),
			b:    natted4("b", bSite, bSiteM, EndpointIndependent),
			want: want{kind: Direct, family: 4, toB: eps(bSite, bSiteM), toA: eps(aSite, aSiteM), fallback: true},
		},
		{
			name: "same NAT, symmetric: local addresses only",
			a:    natted4("a", aSite, aSiteM, EndpointDependent),
			b:    natted4("b", bSite, bSiteM, EndpointDependent),
			want: want{kind: Direct, family: 4, toB: eps(bSite), toA: eps(aSite), fallback: true},
		},
		{
			name: "same NAT, cone, no locals declared: hairpin only",
			a:    natted4("a", "", aSiteM, EndpointIndependent),
			b:    natted4("b", "", bSiteM, EndpointIndependent),
			want: want{kind: Direct, family: 4, toB: eps(bSiteM), toA: eps(aSiteM), fallback: true},
		},
		{
			name: "same NAT, symmetric, no locals: relay",
			a:    natted4("a", "", aSiteM, EndpointDependent),
			b:    natted4("b", "", bSiteM, EndpointDependent),
			want: want{kind: Relay, family: 4},
		},
		{
			name: "same NAT skips loopback, link-local v6, other-family and duplicate locals",
			a: func() Locator {
				l := natted4("a", aSite, aSiteM, EndpointIndependent)
				l.Locals = eps("127.0.0.1:41641", "[fe80::1]:41641", "[2001:db8::1]:41641", aSite, "[::ffff:192.168.1.10]:41641", "0.0.0.0:41641")
				return l
			}(),
			b:    natted4("b", bSite, bSiteM, EndpointIndependent),
			want: want{kind: Direct, family: 4, toB: eps(bSite, bSiteM), toA: eps(aSite, aSiteM), fallback: true},
		},
		{
			name: "cone one side, global the other",
			a:    natted4("a", aLAN, aMap, EndpointIndependent), b: global4("b", bPub4),
			want: want{kind: Direct, family: 4, toB: eps(bPub4), toA: eps(aMap)},
		},
		{
			name: "global one side, cone the other (mirror)",
			a:    global4("a", aPub4), b: natted4("b", bLAN, bMap, EndpointIndependent),
			want: want{kind: Direct, family: 4, toB: eps(bMap), toA: eps(aPub4)},
		},
		{
			name: "cone both",
			a:    natted4("a", aLAN, aMap, EndpointIndependent), b: natted4("b", bLAN, bMap, EndpointIndependent),
			want: want{kind: HolePunch, family: 4, toB: eps(bMap), toA: eps(aMap)},
		},
		{
			name: "symmetric one side, cone the other",
			a:    natted4("a", aLAN, aMap, EndpointDependent), b: natted4("b", bLAN, bMap, EndpointIndependent),
			want: want{kind: Relay, family: 4},
		},
		{
			name: "symmetric vs global: symmetric side initiates, global side learns",
			a:    natted4("a", aLAN, aMap, EndpointDependent), b: global4("b", bPub4),
			want: want{kind: Direct, family: 4, toB: eps(bPub4), toA: nil, initiator: SideA, fallback: true},
		},
		{
			name: "global vs symmetric (mirror)",
			a:    global4("a", aPub4), b: natted4("b", bLAN, bMap, EndpointDependent),
			want: want{kind: Direct, family: 4, toB: nil, toA: eps(aPub4), initiator: SideB, fallback: true},
		},
		{
			name: "symmetric both",
			a:    natted4("a", aLAN, aMap, EndpointDependent), b: natted4("b", bLAN, bMap, EndpointDependent),
			want: want{kind: Relay, family: 4},
		},
		{
			name: "IPv4-only to IPv6-only",
			a:    global4("a", aPub4), b: global6("b", bPub6),
			want: want{kind: Relay, family: 0},
		},
		{
			name: "IPv4 claimed but never observed counts as absent",
			a:    Locator{FQDN: "a", HasIPv4: true, HasIPv6: true, Observed6: ap(aPub6), Locals: eps(aPub6)},
			b:    global4("b", bPub4),
			want: want{kind: Relay, family: 0},
		},
		{
			name: "unknown vs cone: hole punch, relay ready",
			a:    natted4("a", aLAN, aMap, Unknown), b: natted4("b", bLAN, bMap, EndpointIndependent),
			want: want{kind: HolePunch, family: 4, toB: eps(bMap), toA: eps(aMap), fallback: true},
		},
		{
			name: "unknown both",
			a:    natted4("a", aLAN, aMap, Unknown), b: natted4("b", bLAN, bMap, Unknown),
			want: want{kind: HolePunch, family: 4, toB: eps(bMap), toA: eps(aMap), fallback: true},
		},
		{
			name: "unknown vs global: unknown side initiates",
			a:    natted4("a", aLAN, aMap, Unknown), b: global4("b", bPub4),
			want: want{kind: Direct, family: 4, toB: eps(bPub4), toA: eps(aMap), initiator: SideA, fallback: true},
		},
		{
			name: "unknown vs symmetric",
			a:    natted4("a", aLAN, aMap, Unknown), b: natted4("b", bLAN, bMap, EndpointDependent),
			want: want{kind: Relay, family: 4},
		},
		{
			name: "observed equals a local address overrides a stale NAT type",
			a:    func() Locator { l := global4("a", aPub4); l.NAT4 = EndpointDependent; return l }(),
			b:    global4("b", bPub4),
			want: want{kind: Direct, family: 4, toB: eps(bPub4), toA: eps(aPub4)},
		},
		{
			name: "v4-mapped observations are unmapped",
			a:    natted4("a", aLAN, "[::ffff:198.51.100.1]:60001", EndpointIndependent),
			b:    natted4("b", bLAN, bMap, EndpointIndependent),
			want: want{kind: HolePunch, family: 4, toB: eps(bMap), toA: eps(aMap)},
		},
		{
			name: "node without any address",
			a:    Locator{FQDN: "a"}, b: global4("b", bPub4),
			want: want{kind: NoPath},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := Choose(tt.a, tt.b)
			got := want{d.Kind, d.Family, d.AEndpoints, d.BEndpoints, d.Initiator, d.FallbackRelay}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Choose() = %+v\nwant       %+v\nreason: %s", got, tt.want, d.Reason)
			}
			if d.Reason == "" {
				t.Error("empty Reason")
			}
			// The rules must not depend on who asked.
			if r := Choose(tt.b, tt.a).mirror(); !sameDecision(d, r) {
				t.Errorf("Choose(b, a) is not the mirror of Choose(a, b):\n%+v\n%+v", d, r)
			}
		})
	}
}

// sameDecision compares two decisions ignoring Reason, whose wording names
// the nodes in the order they were given.
func sameDecision(x, y Decision) bool {
	x.Reason, y.Reason = "", ""
	return reflect.DeepEqual(x, y)
}

func TestUpgrade(t *testing.T) {
	symA := natted4("a", aLAN, aMap, EndpointDependent)
	coneA := natted4("a", aLAN, aMap, EndpointIndependent)
	coneB := natted4("b", bLAN, bMap, EndpointIndependent)
	relayed := Choose(symA, coneB)
	if relayed.Kind != Relay {
		t.Fatalf("setup: %v, want relay", relayed.Kind)
	}
	tests := []struct {
		name string
		prev Decision
		a, b Locator
		want bool
	}{
		{"relayed, A now behind cone NAT", relayed, coneA, coneB, true},
		{"relayed, A now global", relayed, global4("a", aPub4), coneB, true},
		{"relayed, A gained IPv6 but B has none", relayed, dual(symA, global6("a", aPub6)), coneB, false},
		{"relayed, both gained IPv6", relayed, dual(symA, global6("a", aPub6)), dual(coneB, global6("b", bPub6)), true},
		{"relayed, still symmetric", relayed, symA, coneB, false},
		{"relayed across families, still no common family", Choose(global4("a", aPub4), global6("b", bPub6)), global4("a", aPub4), global6("b", bPub6), false},
		{"already hole punching", Choose(coneA, coneB), global4("a", aPub4), coneB, false},
		{"already direct", Choose(global4("a", aPub4), global4("b", bPub4)), global4("a", aPub4), global4("b", bPub4), false},
		{"relayed, peer lost its addresses", relayed, coneA, Locator{FQDN: "b"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Upgrade(tt.prev, tt.a, tt.b); got != tt.want {
				t.Errorf("Upgrade() = %v, want %v (now: %s)", got, tt.want, Choose(tt.a, tt.b).Reason)
			}
		})
	}
}

// TestEveryPathHasARelayTicket: NMS hands a relay ticket with every path,
// however sure the decision, because filtering (an input firewall or its
// absence, a stateful firewall in front of a global address) never shows
// in the locators.
func TestEveryPathHasARelayTicket(t *testing.T) {
	for _, tt := range []struct {
		name string
		a, b Locator
		want bool
	}{
		{"both global", global4("a", "198.51.100.2:1"), global4("b", "198.51.100.3:1"), true},
		{"both endpoint-independent", natted4("a", "10.0.0.2:1", "198.51.100.2:1", EndpointIndependent), natted4("b", "10.0.1.2:1", "198.51.100.3:1", EndpointIndependent), true},
		{"relay", natted4("a", "10.0.0.2:1", "198.51.100.2:1", EndpointDependent), natted4("b", "10.0.1.2:1", "198.51.100.3:1", EndpointIndependent), true},
		{"no usable address", Locator{FQDN: "a"}, global4("b", "198.51.100.3:1"), false},
	} {
		d := Choose(tt.a, tt.b)
		if got := d.NeedsRelayTicket(); got != tt.want {
			t.Errorf("%s (%v): NeedsRelayTicket = %v, want %v", tt.name, d.Kind, got, tt.want)
		}
	}
}
