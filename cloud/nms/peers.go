package nms

import (
	"sync"
	"sync/atomic"

	"github.com/cyphonic/cyphonic-go/cloud/shrink"
)

// peerSetSmall is how many peers a node's set keeps in a slice, scanned;
// past it the set becomes a map. Most nodes have a few tunnels, and a map
// costs hundreds of bytes even for one entry; a scan of a few dozen
// entries costs less than a hash. A node with many peers (a server every
// node talks to) pays O(1) per new tunnel in the map instead of a scan of
// all of them. A map falls back to a slice once it is down to half of
// this, so a node near the bound does not flip at every change.
const peerSetSmall = 32

// peerEntry is one peer in a small set: relay when NMS put the pair on
// the TRS (re-evaluated when a locator changes: upgrade.go).
type peerEntry struct {
	fqdn  string
	relay bool
}

// peerSet is the peers a node has a tunnel with, as NMS set them up: whom
// to tell when the node moves, and which of them are on the relay. It is
// changed in place, under the tunnelMap's lock, and never handed out:
// what the store jobs need (the peers after a move, the relayed ones
// after a change of locator) they copy under the lock when they need it
// (peersOf, relayedOf), which a steady keepalive never does.
type peerSet struct {
	small  []peerEntry     // while len ≤ peerSetSmall; nil once big is used
	big    map[string]bool // past peerSetSmall: fqdn → relay
	peak   shrink.Peak     // big is rebuilt once far below it
	relays int             // how many of the peers are relayed
}

func (s *peerSet) len() int {
	if s.big != nil {
		return len(s.big)
	}
	return len(s.small)
}

func (s *peerSet) index(fqdn string) int {
	for i := range s.small {
		if s.small[i].fqdn == fqdn {
			return i
		}
	}
	return -1
}

// set adds fqdn (or changes its relay flag) and reports whether fqdn is new.
func (s *peerSet) set(fqdn string, relay bool) (added bool) {
	if s.big != nil {
		was, ok := s.big[fqdn]
		if ok && was == relay {
			return false
		}
		s.big[fqdn] = relay
		s.countRelay(ok, was, relay)
		s.peak.Grew(len(s.big))
		return !ok
	}
	if i := s.index(fqdn); i >= 0 {
		was := s.small[i].relay
		s.small[i].relay = relay
		s.countRelay(true, was, relay)
		return false
	}
	if len(s.small) < peerSetSmall {
		s.small = append(s.small, peerEntry{fqdn: fqdn, relay: relay})
		s.countRelay(false, false, relay)
		return true
	}
	s.big = make(map[string]bool, 2*peerSetSmall)
	for _, e := range s.small {
		s.big[e.fqdn] = e.relay
	}
	s.small = nil
	s.big[fqdn] = relay
	s.countRelay(false, false, relay)
	s.peak.Grew(len(s.big))
	return true
}

// countRelay keeps relays in step with a peer's flag going from was (had:
// the peer was there) to now.
func (s *peerSet) countRelay(had, was, now bool) {
	switch {
	case now && !(had && was):
		s.relays++
	case !now && had && was:
		s.relays--
	}
}

// remove forgets fqdn, if it is there.
func (s *peerSet) remove(fqdn string) {
	if s.big != nil {
		was, ok := s.big[fqdn]
		if !ok {
			return
		}
		delete(s.big, fqdn)
		s.countRelay(true, was, false)
		if len(s.big) <= peerSetSmall/2 {
			s.small = make([]peerEntry, 0, len(s.big))
			for p, r := range s.big {
				s.small = append(s.small, peerEntry{fqdn: p, relay: r})
			}
			s.big, s.peak = nil, shrink.Peak{}
			return
		}
		// A node that once had thousands of peers would otherwise keep
		// their buckets (amortised: see shrink).
		s.big = shrink.Map(s.big, &s.peak)
		return
	}
	i := s.index(fqdn)
	if i < 0 {
		return
	}
	s.countRelay(true, s.small[i].relay, false)
	last := len(s.small) - 1
	s.small[i] = s.small[last]
	s.small[last] = peerEntry{} // no reference to the string left behind
	s.small = s.small[:last]
}

// each calls f for every peer, relayed or not.
func (s *peerSet) each(f func(fqdn string, relay bool)) {
	if s.big != nil {
		for p, r := range s.big {
			f(p, r)
		}
		return
	}
	for _, e := range s.small {
		f(e.fqdn, e.relay)
	}
}

// tunnelMap is every node's peerSet. A tunnel links two nodes whose
// sessions may be on different workers, so it is shared, under one lock
// held for a set operation: O(1) per new tunnel however many peers the
// nodes have (up), O(peers) when a node's session ends (unlinkAll) or a
// store job copies a list it needs (peersOf, relayedOf).
type tunnelMap struct {
	mu    sync.Mutex
	m     map[string]*peerSet
	peak  shrink.Peak   // m is rebuilt once far below it (unlinkAll)
	nodes *atomic.Int64 // the Service's gauge: entries in m
}

func newTunnelMap(gauge *atomic.Int64) *tunnelMap {
	return &tunnelMap{m: map[string]*peerSet{}, nodes: gauge}
}

// peersOf returns a copy of fqdn's peers: a keepalive's store job asks
// for it only after the node moved (the peers to tell).
func (t *tunnelMap) peersOf(fqdn string) []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	set := t.m[fqdn]
	if set == nil {
		return nil
	}
	out := make([]string, 0, set.len())
	set.each(func(p string, _ bool) { out = append(out, p) })
	return out
}

// relayedOf returns a copy of fqdn's relayed peers: a register's store
// job, or a keepalive's whose mapping changed, asks for it (the pairs
// that may now leave the relay).
func (t *tunnelMap) relayedOf(fqdn string) []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	set := t.m[fqdn]
	if set == nil || set.relays == 0 {
		return nil
	}
	out := make([]string, 0, set.relays)
	set.each(func(p string, r bool) {
		if r {
			out = append(out, p)
		}
	})
	return out
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
	set := t.m[a]
	if set == nil {
		set = &peerSet{}
		t.m[a] = set
		t.nodes.Add(1)
	}
	set.set(b, relay)
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
	set.each(func(p string, _ bool) {
		ps := t.m[p]
		if ps == nil {
			return
		}
		ps.remove(fqdn)
		if ps.len() == 0 {
			delete(t.m, p)
			t.nodes.Add(-1)
		}
	})
	delete(t.m, fqdn)
	t.nodes.Add(-1)
	// Departed nodes' entries would otherwise keep the map at its largest
	// size for good (amortised: see shrink).
	t.m = shrink.Map(t.m, &t.peak)
}
