package nms

import (
	"fmt"
	"maps"
	"runtime"
	"slices"
	"sync/atomic"
	"testing"
)

func newTestMap() *tunnelMap { return newTunnelMap(new(atomic.Int64)) }

func peerName(i int) string { return fmt.Sprintf("p%d.example.cyphonic", i) }

// contents is s as fqdn → relay.
func contents(s *peerSet) map[string]bool {
	m := map[string]bool{}
	s.each(func(p string, r bool) { m[p] = r })
	return m
}

// TestPeerSet: a node's set as tunnels come and go, in both of its forms
// (a slice up to peerSetSmall peers, a map past it, a slice again at half
// of it), with its count of relayed peers kept in step.
func TestPeerSet(t *testing.T) {
	type op struct {
		remove bool
		from   int // peers from..to-1
		to     int
		relay  bool
	}
	add := func(from, to int, relay bool) op { return op{from: from, to: to, relay: relay} }
	del := func(from, to int) op { return op{remove: true, from: from, to: to} }
	for _, tc := range []struct {
		name   string
		ops    []op
		want   int // peers 0..want-1 ...
		relays int // ... of which the first relays relayed
		big    bool
	}{
		{"empty", nil, 0, 0, false},
		{"a few", []op{add(0, 3, false)}, 3, 0, false},
		{"repeated link adds nothing", []op{add(0, 3, false), add(0, 3, false)}, 3, 0, false},
		{"onto the relay and off", []op{add(0, 3, true), add(1, 3, false)}, 3, 1, false},
		{"remove absent", []op{add(0, 2, false), del(5, 9)}, 2, 0, false},
		{"removed from the middle", []op{add(0, 5, false), del(2, 5), add(2, 3, false)}, 3, 0, false},
		{"at the bound a slice", []op{add(0, peerSetSmall, true)}, peerSetSmall, peerSetSmall, false},
		{"past it a map", []op{add(0, peerSetSmall, true), add(peerSetSmall, peerSetSmall+1, false)}, peerSetSmall + 1, peerSetSmall, true},
		{"relay flag in the map", []op{add(0, 100, false), add(0, 10, true), add(5, 10, false)}, 100, 5, true},
		{"still a map above half", []op{add(0, 100, true), del(peerSetSmall/2+1, 100)}, peerSetSmall/2 + 1, peerSetSmall/2 + 1, true},
		{"a slice again at half", []op{add(0, 100, true), del(peerSetSmall/2, 100)}, peerSetSmall / 2, peerSetSmall / 2, false},
		{"and grows again", []op{add(0, 100, false), del(peerSetSmall/2, 100), add(peerSetSmall/2, 1000, false), add(0, 7, true)}, 1000, 7, true},
		{"emptied", []op{add(0, 1000, true), del(0, 1000)}, 0, 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := &peerSet{}
			for _, o := range tc.ops {
				for i := o.from; i < o.to; i++ {
					if o.remove {
						s.remove(peerName(i))
					} else {
						s.set(peerName(i), o.relay)
					}
				}
			}
			want := map[string]bool{}
			for i := range tc.want {
				want[peerName(i)] = i < tc.relays
			}
			if got := contents(s); !maps.Equal(got, want) {
				t.Fatalf("peers %v, want %v", got, want)
			}
			if s.len() != tc.want || s.relays != tc.relays || (s.big != nil) != tc.big {
				t.Fatalf("len %d relays %d map %v, want %d %d %v", s.len(), s.relays, s.big != nil, tc.want, tc.relays, tc.big)
			}
		})
	}
}

// TestPeerSetAdded: set reports a new peer, not a repeated link or a
// changed relay flag, in both forms.
func TestPeerSetAdded(t *testing.T) {
	for _, n := range []int{1, peerSetSmall + 5} {
		s := &peerSet{}
		for i := range n {
			s.set(peerName(i), false)
		}
		if s.set(peerName(0), false) || s.set(peerName(0), true) || !s.set(peerName(n), false) {
			t.Fatalf("%d peers: wrong added report", n)
		}
	}
}

// TestPeerListsAreCopies: what a store job gets (peersOf, relayedOf) is its
// own: later tunnels and prunes do not change it under the job.
func TestPeerListsAreCopies(t *testing.T) {
	live := func(string) bool { return true }
	for _, n := range []int{3, 3 * peerSetSmall} {
		r := newTestMap()
		for i := range n {
			r.up("hub", peerName(i), i%3 == 0, live)
		}
		peers, relayed := r.peersOf("hub"), r.relayedOf("hub")
		if len(peers) != n || len(relayed) != (n+2)/3 {
			t.Fatalf("%d peers: got %d peers, %d relayed", n, len(peers), len(relayed))
		}
		was, wasRelayed := slices.Clone(peers), slices.Clone(relayed)
		r.up("hub", "new", true, live)
		r.up("hub", peerName(1), true, live)
		r.unlinkAll(peerName(0))
		if !slices.Equal(peers, was) || !slices.Equal(relayed, wasRelayed) {
			t.Fatalf("%d peers: a list handed out changed", n)
		}
		if r.peersOf("nobody") != nil || r.relayedOf(peerName(2)) != nil {
			t.Fatal("lists for a node without (relayed) tunnels")
		}
	}
}

// TestUnlinkAllPrunes: a node's end removes it from its peers' sets, and
// peers left with none leave the map.
func TestUnlinkAllPrunes(t *testing.T) {
	r := newTestMap()
	for _, p := range [][2]string{{"a", "b"}, {"a", "c"}, {"c", "d"}} {
		r.link(p[0], p[1], true)
		r.link(p[1], p[0], true)
	}
	if n := r.nodes.Load(); n != 4 || len(r.m) != 4 {
		t.Fatalf("%d nodes (gauge %d), want 4", len(r.m), n)
	}
	r.unlinkAll("a")
	if _, ok := r.m["a"]; ok {
		t.Fatal("a still in the map")
	}
	if _, ok := r.m["b"]; ok {
		t.Fatal("b, whose only tunnel was with a, still in the map")
	}
	if got := contents(r.m["c"]); !maps.Equal(got, map[string]bool{"d": true}) || r.m["c"].relays != 1 {
		t.Fatalf("c's set %v, want [d] relayed", got)
	}
	if n := r.nodes.Load(); n != 2 {
		t.Fatalf("gauge %d, want 2", n)
	}
	r.unlinkAll("nobody")
	r.unlinkAll("d")
	if len(r.m) != 0 || r.nodes.Load() != 0 {
		t.Fatalf("left %v, gauge %d", r.m, r.nodes.Load())
	}

	// A hub with many peers (its set a map), each also linked elsewhere.
	for i := range 200 {
		r.up("hub", peerName(i), false, func(string) bool { return true })
		if i%2 == 0 {
			r.up(peerName(i), "other", false, func(string) bool { return true })
		}
	}
	r.unlinkAll("hub")
	if len(r.m) != 101 || r.nodes.Load() != 101 || r.m["other"].len() != 100 {
		t.Fatalf("after the hub: %d nodes (gauge %d), other has %d", len(r.m), r.nodes.Load(), r.m["other"].len())
	}
	r.unlinkAll("other")
	if len(r.m) != 0 || r.nodes.Load() != 0 {
		t.Fatalf("left %d, gauge %d", len(r.m), r.nodes.Load())
	}
}

// TestLinkCostFlat: a new tunnel to a node with thousands of peers costs
// what one to a node with one peer costs: no copy of the peer list. (The
// copy-on-write lists this replaced allocated a copy of both nodes' lists
// per tunnel: 32 KB at 2,000 peers.) Bytes allocated, not time.
func TestLinkCostFlat(t *testing.T) {
	const hub, links = 2000, 1000
	r := newTestMap()
	live := func(string) bool { return true }
	names := make([]string, hub+links)
	for i := range names {
		names[i] = peerName(i)
		r.up(names[i], "elsewhere", false, live) // every peer has a set already
	}
	for i := range hub {
		r.up("hub", names[i], false, live)
	}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for i := hub; i < hub+links; i++ {
		r.up("hub", names[i], false, live)
	}
	runtime.ReadMemStats(&after)
	if per := (after.TotalAlloc - before.TotalAlloc) / links; per > 1024 {
		t.Fatalf("%d bytes allocated per tunnel to a node with %d+ peers", per, hub)
	}
	if r.m["hub"].len() != hub+links {
		t.Fatalf("hub has %d peers", r.m["hub"].len())
	}
}

// BenchmarkTunnelUp: one new tunnel between a node with peers peers and
// a node with one.
func BenchmarkTunnelUp(b *testing.B) {
	for _, peers := range []int{1, 30, 160, 2000} {
		b.Run(fmt.Sprint(peers), func(b *testing.B) {
			r := newTestMap()
			live := func(string) bool { return true }
			for i := range peers {
				r.up("hub", peerName(i), false, live)
			}
			names := make([]string, b.N)
			for i := range names {
				names[i] = peerName(peers + i)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				r.up("hub", names[i], false, live)
				r.unlinkAll(names[i]) // the hub stays at peers peers
			}
		})
	}
}
