package node

import (
	"strings"
	"time"

	"github.com/cyphonic/cyphonic-go/actors/dataplane"
	"github.com/cyphonic/cyphonic-go/actors/debug"
	"github.com/cyphonic/cyphonic-go/actors/supervise"
)

// Kinds of the data plane's actors that annotateTree fills in.
const (
	kindPeer = "peer"
	kindUDP  = "udp"
	kindTUN  = "tun"
)

// annotateTree adds to the debug tree what the data plane knows and the
// registry does not: each peer actor's tunnel (its state in place of
// "running", the path, endpoint, cipher and handshake age) and its
// in-flight queues, whose full slots are its queue-full drops; and, on the
// socket and TUN actors, the batches all peers have on their way to them.
// One Status call per served tree.
func annotateTree(status func() []dataplane.PeerStatus) func(*debug.Tree) {
	return func(t *debug.Tree) {
		peers := make(map[string]dataplane.PeerStatus)
		var toUDP, toTUN supervise.Queue
		toUDP.Name, toTUN.Name = "peers→socket", "peers→tun"
		for _, ps := range status() {
			peers[ps.FQDN] = ps
			for _, q := range ps.Queues {
				sum := &toUDP
				if q.Name == "in" {
					sum = &toTUN
				}
				sum.Len += q.Len
				sum.Cap += q.Cap
				sum.Dropped += q.Dropped
			}
		}
		t.Walk(func(n *debug.Node) {
			switch n.Kind {
			case kindPeer:
				if ps, ok := peers[n.ID[strings.LastIndexByte(n.ID, '/')+1:]]; ok {
					annotatePeer(n, ps, t.Taken)
				}
			case kindUDP:
				n.Queues = append(n.Queues, toUDP)
			case kindTUN:
				n.Queues = append(n.Queues, toTUN)
			}
		})
	}
}

func annotatePeer(n *debug.Node, ps dataplane.PeerStatus, now time.Time) {
	n.Status = ps.State
	n.Queues = append(n.Queues, ps.Queues...)
	if n.Info == nil {
		n.Info = make(map[string]string)
	}
	if ps.Path != 0 {
		n.Info["path"] = ps.Path.String()
	}
	if ps.Endpoint.IsValid() {
		n.Info["endpoint"] = ps.Endpoint.String()
	}
	if ps.Cipher != "" {
		n.Info["cipher"] = ps.Cipher
	}
	if !ps.LastHandshake.IsZero() {
		n.Info["handshake"] = now.Sub(ps.LastHandshake).Round(time.Second).String() + " ago"
	}
}
