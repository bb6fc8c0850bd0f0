package nms

import (
	"slices"
	"testing"
)

func newTestRoot() *root {
	return &root{s: &Service{}, tunnels: map[string]*peerSet{}}
}

// TestPeerSetShared: a keepalive gets the node's peer list without a copy
// (the same backing array every time until the set changes), and a change
// never writes a list already handed out.
func TestPeerSetShared(t *testing.T) {
	r := newTestRoot()
	r.link("a", "b", false)
	r.link("a", "c", true)
	l1 := r.tunnels["a"].all()
	l2 := r.tunnels["a"].all()
	if len(l1) != 2 || &l1[0] != &l2[0] {
		t.Fatalf("lists %v %v not shared", l1, l2)
	}
	if rl := r.tunnels["a"].relayed(); !slices.Equal(rl, []string{"c"}) {
		t.Fatalf("relayed %v", rl)
	}
	before := slices.Clone(l1)
	r.link("a", "d", false)
	if !slices.Equal(l1, before) {
		t.Fatalf("a handed-out list changed: %v, was %v", l1, before)
	}
	if l3 := r.tunnels["a"].all(); len(l3) != 3 {
		t.Fatalf("after a change: %v", l3)
	}
}

// TestUnlinkAllPrunes: a node's end removes it from its peers' sets, and
// peers left with none leave the map.
func TestUnlinkAllPrunes(t *testing.T) {
	r := newTestRoot()
	for _, p := range [][2]string{{"a", "b"}, {"a", "c"}, {"c", "d"}} {
		r.link(p[0], p[1], false)
		r.link(p[1], p[0], false)
	}
	if n := r.s.tunnelNodes.Load(); n != 4 || len(r.tunnels) != 4 {
		t.Fatalf("%d nodes (gauge %d), want 4", len(r.tunnels), n)
	}
	r.unlinkAll("a")
	if _, ok := r.tunnels["a"]; ok {
		t.Fatal("a still in the map")
	}
	if _, ok := r.tunnels["b"]; ok {
		t.Fatal("b, whose only tunnel was with a, still in the map")
	}
	if got := r.tunnels["c"].all(); !slices.Equal(got, []string{"d"}) {
		t.Fatalf("c's peers %v, want [d]", got)
	}
	if n := r.s.tunnelNodes.Load(); n != 2 {
		t.Fatalf("gauge %d, want 2", n)
	}
	r.unlinkAll("nobody")
	r.unlinkAll("d")
	if len(r.tunnels) != 0 || r.s.tunnelNodes.Load() != 0 {
		t.Fatalf("left %v, gauge %d", r.tunnels, r.s.tunnelNodes.Load())
	}
}
