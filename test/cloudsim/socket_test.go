package cloudsim

import (
	"context"
	"fmt"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/cyphonic/cyphonic-go/messages"
	"github.com/cyphonic/cyphonic-go/pki"
)

// TestSharedSocket: nodes that share one socket (the load tool's way to
// fit 100k nodes in the open-files limit) log in at the same time,
// register, keepalive and set up tunnels as nodes with their own sockets
// do, and the cloud sees them all at the one address:port, as nodes behind
// a port-sharing CGN: each reply reaches the node it is for.
func TestSharedSocket(t *testing.T) {
	s := startCloud(t, t.TempDir())
	defer s.Close(context.Background())
	asAddr := s.AS.Addrs()[0]
	ss, err := NewSharedSocket(netip.MustParseAddr("127.0.0.1"))
	if err != nil {
		t.Fatal(err)
	}
	defer ss.Close()
	const k = 6
	nodes := make([]*Node, k)
	for i := range nodes {
		id, err := s.CA.Issue(pki.RoleNode, fmt.Sprintf("s%d.shared.cyphonic", i), time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		if nodes[i], err = NewNodeSharing(s.CA, id, ss); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(nodes[i].Close)
	}
	own := newNode(t, s, "own.shared.cyphonic")
	shared := nodes[0].Addr()

	var wg sync.WaitGroup
	errs := make([]error, k)
	for i, n := range nodes {
		wg.Go(func() {
			if _, err := n.Login(asAddr, false); err != nil {
				errs[i] = err
				return
			}
			reg, err := n.Register(false)
			if err == nil && (reg.Observed != shared || reg.NAT != messages.NATNone || reg.VIP4 != n.Reply.VIP4) {
				err = fmt.Errorf("register reply %+v, socket at %v", reg, shared)
			}
			errs[i] = err
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("%s: %v", nodes[i].FQDN, err)
		}
	}
	if _, err := own.Login(asAddr, false); err != nil {
		t.Fatal(err)
	}
	if _, err := own.Register(false); err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes {
		if ack, err := n.Keepalive(); err != nil || ack.Observed != shared {
			t.Fatalf("%s keepalive: %+v %v", n.FQDN, ack, err)
		}
	}
	// Between two nodes of the socket, and from one to a node of its own:
	// each Direction reaches the peer it names, and no other node.
	for _, pair := range [][2]*Node{{nodes[1], nodes[2]}, {nodes[3], own}} {
		p, err := pair[0].Tunnel(pair[1].FQDN, false)
		if err != nil {
			t.Fatalf("%s -> %s: %v", pair[0].FQDN, pair[1].FQDN, err)
		}
		ds := pair[1].Directions()
		if len(ds) != 1 || ds[0].PeerFQDN != pair[0].FQDN || ds[0].TunnelID != p.TunnelID {
			t.Fatalf("%s's directions %+v", pair[1].FQDN, ds)
		}
	}
	for _, n := range []*Node{nodes[0], nodes[1], nodes[3], nodes[4], nodes[5]} {
		if ds := n.Directions(); len(ds) != 0 {
			t.Fatalf("%s got directions %+v meant for another node", n.FQDN, ds)
		}
	}
	// A node that moves off the socket keeps its session; the others
	// keep theirs.
	if err := nodes[5].Move(); err != nil {
		t.Fatal(err)
	}
	if ack, err := nodes[5].Keepalive(); err != nil || ack.Observed != nodes[5].Addr() || ack.Observed == shared {
		t.Fatalf("moved node's keepalive: %+v %v", ack, err)
	}
	if _, err := nodes[4].Keepalive(); err != nil {
		t.Fatal(err)
	}
}
