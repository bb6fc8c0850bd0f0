package nms

// peerSet is the peers a node has a tunnel with, as NMS set them up: whom
// to tell when the node moves, and which pairs are on the relay (to
// re-evaluate when a locator changes). Every keepalive needs the list, so
// the lists are built once after a change and then shared, read-only, with
// the transactions: a keepalive costs no copy. Only the root actor touches
// a peerSet; the slices it hands out are never written again.
type peerSet struct {
	m        map[string]bool // peer -> on the relay
	list     []string        // built from m when listDone
	relay    []string
	listDone bool
}

func (ps *peerSet) all() []string {
	ps.build()
	return ps.list
}

func (ps *peerSet) relayed() []string {
	ps.build()
	return ps.relay
}

func (ps *peerSet) build() {
	if ps.listDone {
		return
	}
	ps.list, ps.relay = make([]string, 0, len(ps.m)), nil
	for p, relay := range ps.m {
		ps.list = append(ps.list, p)
		if relay {
			ps.relay = append(ps.relay, p)
		}
	}
	ps.listDone = true
}

// changed drops the built lists (the transactions holding them keep
// theirs).
func (ps *peerSet) changed() { ps.list, ps.relay, ps.listDone = nil, nil, false }

func (r *root) link(a, b string, relay bool) {
	set := r.tunnels[a]
	if set == nil {
		set = &peerSet{m: map[string]bool{}}
		r.tunnels[a] = set
		r.s.tunnelNodes.Add(1)
	}
	if cur, ok := set.m[b]; ok && cur == relay {
		return
	}
	set.m[b] = relay
	set.changed()
}

// unlinkAll forgets fqdn's tunnels, on both sides: its session ended, so
// there is nobody to tell about its moves, and its peers have nobody to
// tell about theirs. A peer left with no tunnel leaves the map.
func (r *root) unlinkAll(fqdn string) {
	set := r.tunnels[fqdn]
	if set == nil {
		return
	}
	for p := range set.m {
		if ps := r.tunnels[p]; ps != nil {
			delete(ps.m, fqdn)
			ps.changed()
			if len(ps.m) == 0 {
				delete(r.tunnels, p)
				r.s.tunnelNodes.Add(-1)
			}
		}
	}
	delete(r.tunnels, fqdn)
	r.s.tunnelNodes.Add(-1)
}
