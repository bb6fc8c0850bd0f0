package dataplane_test

import (
	"net/netip"
	"testing"

	"github.com/cyphonic/cyphonic-go/messages"
)

// TestCrossedDirections: both nodes ask NMS for each other at once, so
// each gets its own Path (naming it the initiator of a direct path) and the
// other's Direction (naming the other), the latter last, as NMS answers
// two crossing requests. Neither may end up waiting for the other: the
// tunnel comes up without a handshake-timeout restart, over the endpoints
// of the latest path (the first ones lead nowhere).
func TestCrossedDirections(t *testing.T) {
	f := newPKI(t)
	a, b := newNode(t, f, "alice", 1, nil), newNode(t, f, "bob", 2, nil)
	nowhere := netip.MustParseAddrPort("127.0.0.1:9")
	for _, o := range []struct {
		n, peer *node
	}{{a, b}, {b, a}} {
		for _, initiator := range []bool{true, false} {
			ep := o.peer.addr
			if initiator {
				ep = nowhere
			}
			if err := o.n.dp.Open(messages.PathInfo{PeerFQDN: o.peer.fqdn, PeerVIP4: o.peer.vip4, PeerVIP6: o.peer.vip6,
				Kind: messages.PathDirect, Endpoints: []netip.AddrPort{ep}, Initiator: initiator, TunnelID: tunnelID()}); err != nil {
				t.Fatal(err)
			}
		}
	}
	waitUp(t, a, b.fqdn)
	waitUp(t, b, a.fqdn)
	stream(t, a, b, 0, 100, 16)
	for _, n := range []*node{a, b} {
		if st := n.dp.Status()[0]; st.Restarts != 0 {
			t.Fatalf("%s: the tunnel came up only after a restart: %+v", n.fqdn, st)
		}
	}
}
