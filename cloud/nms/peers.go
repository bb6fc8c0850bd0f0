package nms

import "slices"

// peerSet is the peers a node has a tunnel with, as NMS set them up: whom
// to tell when the node moves (peers), and which of them are on the relay
// (relay, to re-evaluate when a locator changes). Every keepalive needs the
// lists, so they are handed to the transactions as they are, without a
// copy: both slices are copy-on-write, never written once built, and a
// change builds new ones. Plain slices rather than a map: most nodes have
// a few tunnels, and a map costs hundreds of bytes even for one entry.
// Only the root actor touches the tunnels map.
type peerSet struct {
	peers []string
	relay []string
}

func (r *root) link(a, b string, relay bool) {
	set, ok := r.tunnels[a]
	if !ok {
		r.s.tunnelNodes.Add(1)
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
	r.tunnels[a] = set
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
func (r *root) unlinkAll(fqdn string) {
	set, ok := r.tunnels[fqdn]
	if !ok {
		return
	}
	for _, p := range set.peers {
		ps, ok := r.tunnels[p]
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
			delete(r.tunnels, p)
			r.s.tunnelNodes.Add(-1)
			continue
		}
		r.tunnels[p] = ps
	}
	delete(r.tunnels, fqdn)
	r.s.tunnelNodes.Add(-1)
}
