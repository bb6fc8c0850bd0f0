package hops

import (
	"net/netip"
	"testing"
)

func TestChoose(t *testing.T) {
	a := netip.MustParseAddr
	hop := func(ttl int, from string) Hop {
		h := Hop{TTL: ttl}
		if from != "" {
			h.From = a(from)
		}
		return h
	}
	reached := func(ttl int, from string) Hop { h := hop(ttl, from); h.Reached = true; return h }
	for _, tc := range []struct {
		name   string
		hops   []Hop
		ttl    int
		learnt bool // confirmed by a public hop
	}{
		{"nothing answered", nil, Fallback, false},
		{"all silent", []Hop{hop(1, ""), hop(2, ""), hop(3, "")}, Fallback, false},
		{"home router", []Hop{hop(1, "192.168.1.1"), hop(2, "198.51.100.1"), hop(3, "203.0.113.9")}, 2, true},
		{"home router behind a CGN", []Hop{hop(1, "192.168.1.1"), hop(2, "100.64.0.1"), hop(3, "198.51.100.1")}, 3, true},
		{"second router", []Hop{hop(1, "10.1.0.1"), hop(2, "10.0.0.1"), hop(3, "198.51.100.1")}, 3, true},
		{"private core routers after the CGN", []Hop{hop(1, "192.168.1.1"), hop(2, "100.64.0.1"),
			hop(3, "10.20.0.1"), hop(4, "10.20.9.1"), hop(5, "198.51.100.7")}, 5, true},
		{"order of answers does not matter", []Hop{hop(3, "198.51.100.1"), hop(1, "192.168.1.1"), hop(2, "100.64.0.1")}, 3, true},
		{"silent CGN: stop before it", []Hop{hop(1, "192.168.1.1"), hop(2, ""), hop(3, "198.51.100.1")}, 2, true},
		{"silent CGN and core", []Hop{hop(1, "192.168.1.1"), hop(2, ""), hop(3, ""), hop(4, "198.51.100.1")}, 2, true},
		{"only the home router answers", []Hop{hop(1, "192.168.1.1"), hop(2, ""), hop(3, "")}, 2, false},
		{"public routers beyond the CGN rate-limited", []Hop{hop(1, "192.168.1.1"), hop(2, "100.64.0.1"), hop(3, ""), hop(4, "")}, 3, false},
		{"silent home router", []Hop{hop(1, ""), hop(2, "100.64.0.1"), hop(3, "198.51.100.1")}, 3, true},
		{"every NAT silent", []Hop{hop(1, ""), hop(2, ""), hop(3, "198.51.100.1")}, Fallback, false},
		{"first router answers from a public address", []Hop{hop(1, "203.0.113.1"), hop(2, "198.51.100.1")}, Fallback, false},
		{"public hops after the first do not count", []Hop{hop(1, "10.0.0.1"), hop(2, "198.51.100.1"), hop(3, "10.9.9.9"), hop(4, "203.0.113.1")}, 2, true},
		{"destination inside our network", []Hop{hop(1, "10.0.0.1"), reached(2, "10.0.1.5")}, Fallback, false},
		{"public destination right beyond the NAT", []Hop{hop(1, "10.0.0.1"), reached(2, "198.51.100.5")}, 2, true},
		{"IPv6 behind NAT66", []Hop{hop(1, "fd00:1::1"), hop(2, "2001:db8::1")}, 2, true},
		{"IPv6 link-local router", []Hop{hop(1, "fe80::1"), hop(2, "fd00::1"), hop(3, "2001:db8::1")}, 3, true},
		{"mapped IPv4", []Hop{hop(1, "::ffff:10.0.0.1"), hop(2, "::ffff:198.51.100.1")}, 2, true},
		{"nonsense TTLs ignored", []Hop{hop(0, "10.0.0.1"), hop(-1, "198.51.100.1"), hop(1, "10.0.0.1"), hop(2, "198.51.100.1")}, 2, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ttl, learnt := Choose(tc.hops)
			if ttl != tc.ttl || learnt != tc.learnt {
				t.Errorf("Choose = %d, %v; want %d, %v", ttl, learnt, tc.ttl, tc.learnt)
			}
		})
	}
}

func TestPrivate(t *testing.T) {
	for s, want := range map[string]bool{
		"10.1.2.3": true, "172.16.0.1": true, "192.168.0.1": true, "100.64.0.1": true, "100.127.255.254": true,
		"fd00::1": true, "fe80::1": true, "127.0.0.1": true, "::ffff:192.168.1.1": true,
		"100.128.0.1": false, "198.51.100.1": false, "2001:db8::1": false, "8.8.8.8": false,
	} {
		if got := Private(netip.MustParseAddr(s)); got != want {
			t.Errorf("Private(%s) = %v, want %v", s, got, want)
		}
	}
}
