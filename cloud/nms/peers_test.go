package nms

import (
	"slices"
	"sync/atomic"
	"testing"
)

func newTestMap() *tunnelMap { return newTunnelMap(new(atomic.Int64)) }

// TestPeerSetShared: a keepalive gets the node's peer list without a copy
// (the same backing array every time until the set changes), and a change
// never writes a list already handed out.
func TestPeerSetShared(t *testing.T) {
	r := newTestMap()
	r.link("a", "b", false)
	r.link("a", "c", true)
	l1, l2 := r.m["a"].peers, r.m["a"].peers
	if !slices.Equal(l1, []string{"b", "c"}) || &l1[0] != &l2[0] {
		t.Fatalf("lists %v %v not shared", l1, l2)
	}
	rl := r.m["a"].relay
	if !slices.Equal(rl, []string{"c"}) {
		t.Fatalf("relayed %v", rl)
	}
	before, relayBefore := slices.Clone(l1), slices.Clone(rl)
	r.link("a", "d", false)
	r.link("a", "c", false) // c leaves the relay
	r.link("a", "b", true)  // b goes on it
	if !slices.Equal(l1, before) || !slices.Equal(rl, relayBefore) {
		t.Fatalf("a handed-out list changed: %v %v, were %v %v", l1, rl, before, relayBefore)
	}
	if got := r.m["a"]; !slices.Equal(got.peers, []string{"b", "c", "d"}) || !slices.Equal(got.relay, []string{"b"}) {
		t.Fatalf("after changes: %+v", got)
	}
	r.link("a", "d", false) // again: no change, no new list
	if got := r.m["a"]; len(got.peers) != 3 {
		t.Fatalf("a repeated link added a peer: %v", got.peers)
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
	handed := r.m["c"].peers
	r.unlinkAll("a")
	if _, ok := r.m["a"]; ok {
		t.Fatal("a still in the map")
	}
	if _, ok := r.m["b"]; ok {
		t.Fatal("b, whose only tunnel was with a, still in the map")
	}
	if got := r.m["c"]; !slices.Equal(got.peers, []string{"d"}) || !slices.Equal(got.relay, []string{"d"}) {
		t.Fatalf("c's set %+v, want [d]", got)
	}
	if !slices.Equal(handed, []string{"a", "d"}) {
		t.Fatalf("a list handed out before the prune changed: %v", handed)
	}
	if n := r.nodes.Load(); n != 2 {
		t.Fatalf("gauge %d, want 2", n)
	}
	r.unlinkAll("nobody")
	r.unlinkAll("d")
	if len(r.m) != 0 || r.nodes.Load() != 0 {
		t.Fatalf("left %v, gauge %d", r.m, r.nodes.Load())
	}
}
