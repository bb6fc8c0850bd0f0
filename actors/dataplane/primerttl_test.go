package dataplane

import (
	"net/netip"
	"testing"
	"time"

	"github.com/cyphonic/cyphonic-go/transport/hops"
)

// TestPrimerTTLCache walks the cache through a node's life: nothing
// learnt (fallback, probe due), a confirmed answer (kept, no more probes),
// an unconfirmed one for another address (probed again after
// primerReprobe), a move (forget: everything probed again, a series
// started before it discarded), and the probe bound.
func TestPrimerTTLCache(t *testing.T) {
	var c primerTTLs
	t0 := time.Unix(1000, 0)
	home, cafe := netip.MustParseAddr("10.0.0.2"), netip.MustParseAddr("192.168.7.20")
	check := func(what string, src netip.Addr, at time.Duration, ttl int, due bool) {
		t.Helper()
		if got := c.get(src); got != ttl {
			t.Errorf("%s: TTL %d, want %d", what, got, ttl)
		}
		if got := c.due(src, t0.Add(at)); got != due {
			t.Errorf("%s: due %v, want %v", what, got, due)
		}
	}
	check("nothing learnt", home, 0, hops.Fallback, true)
	gen := c.begin(t0)
	check("a series runs", home, time.Second, hops.Fallback, false) // bound: one series per primerProbeEvery
	if !c.store(home, 3, true, gen, t0.Add(time.Second)) {
		t.Fatal("confirmed answer not stored")
	}
	check("confirmed", home, time.Hour, 3, false)
	if c.store(home, 2, false, gen, t0.Add(2*time.Second)) {
		t.Error("an unconfirmed answer replaced a confirmed one")
	}
	check("confirmed kept", home, time.Hour, 3, false)

	check("another network, within the bound", cafe, 5*time.Second, hops.Fallback, false)
	check("another network, after the bound", cafe, primerProbeEvery, hops.Fallback, true)
	gen = c.begin(t0.Add(primerProbeEvery))
	if !c.store(cafe, 3, false, gen, t0.Add(primerProbeEvery)) {
		t.Fatal("unconfirmed answer not stored")
	}
	check("unconfirmed, fresh", cafe, primerProbeEvery+time.Second, 3, false)
	check("unconfirmed, old", cafe, primerProbeEvery+primerReprobe, 3, true)
	for i := 2; i <= primerSeries; i++ {
		at := primerProbeEvery + time.Duration(i-1)*primerReprobe
		c.store(cafe, 3, false, c.begin(t0.Add(at)), t0.Add(at))
	}
	check("unconfirmed, series spent", cafe, time.Hour-primerProbeEvery, 3, false)

	stale := c.begin(t0.Add(time.Hour))
	c.forget() // the mapping moved meanwhile
	check("forgotten", home, time.Hour+primerProbeEvery, hops.Fallback, true)
	if c.store(home, 4, true, stale, t0.Add(time.Hour)) {
		t.Error("a series begun before forget stored its answer")
	}
	check("stale answer dropped", home, time.Hour+primerProbeEvery, hops.Fallback, true)
}

// TestPrimerTTLCacheBounded: a node that keeps changing addresses cannot
// grow the cache without bound.
func TestPrimerTTLCacheBounded(t *testing.T) {
	var c primerTTLs
	now := time.Unix(1000, 0)
	for i := range 10 * maxPrimerTTLs {
		src := netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)})
		c.store(src, 3, true, c.begin(now), now)
		if len(c.ttl) > maxPrimerTTLs {
			t.Fatalf("%d addresses cached, bound %d", len(c.ttl), maxPrimerTTLs)
		}
	}
}
