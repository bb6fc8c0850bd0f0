package dataplane

import (
	"fmt"
	"net/netip"
	"testing"
	"time"
)

func TestPrimerAction(t *testing.T) {
	t0 := time.Unix(1000, 0)
	wait := 300 * time.Millisecond
	a, b := netip.MustParseAddrPort("198.51.100.3:4000"), netip.MustParseAddrPort("198.51.100.4:4000")
	var pr primer
	for _, tt := range []struct {
		ep   netip.AddrPort
		at   time.Duration
		want primeAction
	}{
		{a, 0, primeFirst},                      // never primed: the primer goes
		{a, 0, primeHold},                       // a retry at once is held back
		{b, 100 * time.Millisecond, primeFirst}, // each endpoint is primed on its own
		{a, wait - time.Millisecond, primeHold},
		{a, wait, primeFull}, // the wait is over
		{b, wait, primeHold}, // b was primed later
		{b, 100*time.Millisecond + wait, primeFull},
		{a, time.Hour, primeFull}, // primed once per attempt series
	} {
		if got := pr.action(tt.ep, t0.Add(tt.at), wait); got != tt.want {
			t.Errorf("%v at %v: %v, want %v", tt.ep, tt.at, got, tt.want)
		}
	}
}

// TestPrimerBounded: a peer that keeps moving cannot grow the primed set
// without bound.
func TestPrimerBounded(t *testing.T) {
	var pr primer
	now := time.Unix(1000, 0)
	for i := range 10 * maxPrimed {
		ep := netip.MustParseAddrPort(fmt.Sprintf("198.51.100.%d:%d", i%250+1, 1000+i))
		if got := pr.action(ep, now, time.Second); got != primeFirst {
			t.Fatalf("new endpoint %v: %v, want primeFirst", ep, got)
		}
		if len(pr.at) > maxPrimed {
			t.Fatalf("%d endpoints remembered, bound %d", len(pr.at), maxPrimed)
		}
	}
}

func TestPrivateSource(t *testing.T) {
	for _, tt := range []struct {
		addr string
		want bool
	}{
		{"10.1.0.2", true},
		{"192.168.1.10", true},
		{"172.20.0.5", true},
		{"100.64.3.1", true}, // a CGN's inside
		{"fd00::5", true},    // NAT66 ULA
		{"198.51.100.3", false},
		{"2001:db8::3", false},
		{"127.0.0.1", false},
		{"::1", false},
	} {
		if got := privateSource(netip.MustParseAddr(tt.addr)); got != tt.want {
			t.Errorf("privateSource(%s) = %v, want %v", tt.addr, got, tt.want)
		}
	}
}

// TestPrimerUntilHeard: a side directed onto a punched path holds its full
// inits to an endpoint, however long, until the peer's init has come from
// it; other endpoints stay held.
func TestPrimerUntilHeard(t *testing.T) {
	t0 := time.Unix(1000, 0)
	a, b := netip.MustParseAddrPort("198.51.100.3:4000"), netip.MustParseAddrPort("198.51.100.4:4000")
	var pr primer
	step := func(ep netip.AddrPort, at time.Duration, want primeAction) {
		t.Helper()
		if got := pr.action(ep, t0.Add(at), untilHeard); got != want {
			t.Errorf("%v at %v: %v, want %v", ep, at, got, want)
		}
	}
	step(a, 0, primeFirst)
	step(b, 0, primeFirst)
	step(a, time.Hour, primeHold)                       // no fixed wait runs out
	pr.heard(netip.MustParseAddrPort("198.51.100.9:1")) // never primed: ignored
	pr.heard(a)
	step(a, time.Hour, primeFull)
	step(b, time.Hour, primeHold)
	// A fresh answer (wait 0) releases an endpoint not yet heard from.
	if got := pr.action(b, t0.Add(time.Hour), 0); got != primeFull {
		t.Errorf("b with a fresh answer: %v, want primeFull", got)
	}
}
