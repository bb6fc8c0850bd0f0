package dataplane

import (
	"net/netip"
	"testing"
)

func TestPlanSock(t *testing.T) {
	a := netip.MustParseAddrPort("192.0.2.1:4000")
	b := netip.MustParseAddrPort("192.0.2.2:4000")
	var none netip.AddrPort
	for _, tt := range []struct {
		name      string
		cur, want netip.AddrPort
		open, max int
		taken     bool
		step      sockStep
	}{
		{"first direct route", none, a, 0, 4, false, sockOpen},
		{"same endpoint again", a, a, 1, 4, false, sockKeep},
		{"same endpoint at the cap", a, a, 4, 4, false, sockKeep},
		{"roamed", a, b, 1, 4, false, sockMove},
		{"roamed at the cap: its own socket is given back", a, b, 4, 4, false, sockMove},
		{"relayed, or no route", a, none, 1, 4, false, sockClose},
		{"nothing, relayed", none, none, 0, 4, false, sockKeep},
		{"cap reached", none, a, 4, 4, false, sockFull},
		{"endpoint is another peer's", none, a, 1, 4, true, sockFull},
		{"roamed onto another peer's endpoint", b, a, 2, 4, true, sockFull},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := planSock(tt.cur, tt.want, tt.open, tt.max, tt.taken); got != tt.step {
				t.Errorf("planSock = %d, want %d", got, tt.step)
			}
		})
	}
}

func TestDirectEndpoint(t *testing.T) {
	ep := netip.MustParseAddrPort("192.0.2.1:4000")
	for _, tt := range []struct {
		name string
		r    *peerRoute
		want netip.AddrPort
	}{
		{"no route", nil, netip.AddrPort{}},
		{"direct", &peerRoute{Addr: ep}, ep},
		{"IPv4-mapped", &peerRoute{Addr: netip.MustParseAddrPort("[::ffff:192.0.2.1]:4000")}, ep},
		{"IPv6", &peerRoute{Addr: netip.MustParseAddrPort("[2001:db8::1]:4000")}, netip.MustParseAddrPort("[2001:db8::1]:4000")},
		{"relayed: TRS is many peers' endpoint", &peerRoute{Addr: ep, Relay: true}, netip.AddrPort{}},
		{"unspecified", &peerRoute{Addr: netip.MustParseAddrPort("0.0.0.0:4000")}, netip.AddrPort{}},
		{"port 0", &peerRoute{Addr: netip.MustParseAddrPort("192.0.2.1:0")}, netip.AddrPort{}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := directEndpoint(tt.r); got != tt.want {
				t.Errorf("directEndpoint = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestSparseNext(t *testing.T) {
	for _, tt := range []struct {
		was  bool
		rx   uint64
		want bool
	}{
		{false, 0, true},
		{false, sparseEnter, true},
		{false, sparseEnter + 1, false},
		{false, sparseLeave, false}, // not sparse yet: hysteresis
		{true, sparseEnter + 1, true},
		{true, sparseLeave, true},
		{true, sparseLeave + 1, false},
		{true, 4000, false}, // a pusher's tick
	} {
		if got := sparseNext(tt.was, tt.rx); got != tt.want {
			t.Errorf("sparseNext(%v, %d) = %v, want %v", tt.was, tt.rx, got, tt.want)
		}
	}
}
