package nms

import (
	"slices"
	"sync"
	"sync/atomic"

	"github.com/cyphonic/cyphonic-go/cloud/shrink"
)

// peerSet is the peers a node has a tunnel with, as NMS set them up: whom
// to tell when the node moves (peers), and which of them are on the relay
// (relay, to re-evaluate when a locator changes). Every keepalive needs the
// lists, so they are handed to the transactions as they are, without a
// copy: both slices are copy-on-write, never written once built, and a
// change builds new ones. Plain slices rather than a map: most nodes have
// a few tunnels, and a map costs hundreds of bytes even for one entry.
type peerSet struct {
	peers []string
	relay []string
}

// tunnelMap is every node's peerSet. A tunnel links two nodes whose
// sessions may be on different workers, so it is shared, under one lock
// held for a map operation (a keepalive's read is a map lookup: the sets
// it returns are never written).
type tunnelMap struct {
	mu    sync.Mutex
	m     map[string]peerSet
	peak  shrink.Peak   // m is rebuilt once far below it (unlinkAll)
	nodes *atomic.Int64 // the Service's gauge: entries in m
}

func newTunnelMap(gauge *atomic.Int64) *tunnelMap {
	return &tunnelMap{m: map[string]peerSet{}, nodes: gauge}
}

// get returns fqdn's set, to read only.
func (t *tunnelMap) get(fqdn string) peerSet {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.m[fqdn]
}

// up records a tunnel between a and b, both ways, while live reports a
// session for either: a late answer must not bring back what the end of
// both sessions pruned. live is checked under the map's lock, and a
// session's end removes it from the index before unlinkAll takes the lock,
// so a link either sees the session gone or is pruned after it.
func (t *tunnelMap) up(a, b string, relay bool, live func(string) bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if live(a) || live(b) {
		t.link(a, b, relay)
		t.link(b, a, relay)
	}
}

func (t *tunnelMap) link(a, b string, relay bool) {
	set, ok := t.m[a]
	if !ok {
		t.nodes.Add(1)
	}
	if !slices.Contains(set.peers, b) {
		set.peers = append(set.peers[:len(set.peers):len(set.peers)], b)
	}
	switch i := slices.Index(set.relay, b); {
	case relay && i < 0:
		set.relay = append(set.relay[:len(set.relay):len(set.relay)], b)
	case !relay && i >= 0:
		set.relay = without(set.relay, i)
	}
	t.m[a] = set
}

// without returns a copy of s without its element i.
func without(s []string, i int) []string {
	if len(s) == 1 {
		return nil
	}
	return slices.Delete(slices.Clone(s), i, i+1)
}

// unlinkAll forgets fqdn's tunnels, on both sides: its session ended, so
// there is nobody to tell about its moves, and its peers have nobody to
// tell about theirs. A peer left with no tunnel leaves the map.
func (t *tunnelMap) unlinkAll(fqdn string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	set, ok := t.m[fqdn]
	if !ok {
		return
	}
	for _, p := range set.peers {
		ps, ok := t.m[p]
		if !ok {
			continue
		}
		if i := slices.Index(ps.peers, fqdn); i >= 0 {
			ps.peers = without(ps.peers, i)
		}
		if i := slices.Index(ps.relay, fqdn); i >= 0 {
			ps.relay = without(ps.relay, i)
		}
		if len(ps.peers) == 0 {
			delete(t.m, p)
			t.nodes.Add(-1)
			continue
		}
		t.m[p] = ps
	}
	delete(t.m, fqdn)
	t.nodes.Add(-1)
	// Departed nodes' entries would otherwise keep the map at its largest
	// size for good (amortised: see shrink).
	t.m = shrink.Map(t.m, &t.peak)
}
