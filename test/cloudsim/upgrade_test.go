package cloudsim

import (
	"context"
	"net/netip"
	"slices"
	"testing"

	"github.com/cyphonic/cyphonic-go/messages"
)

// TestRelayUpgradeOnReregister: a pair NMS put on the relay (symmetric NAT
// facing a cone NAT) is re-evaluated when the symmetric side registers
// again from behind a cone NAT: both nodes are told, through a delivered
// and acknowledged PeerUpdate, where to probe each other. A registration
// that changes nothing about the NAT tells nobody.
func TestRelayUpgradeOnReregister(t *testing.T) {
	s := startCloud(t, t.TempDir())
	defer s.Close(context.Background())
	a := nodeAt(t, s, "alice.example.cyphonic", 40)
	b := nodeAt(t, s, "bob.example.cyphonic", 41)
	online(t, s, a, messages.NATSymmetric)
	online(t, s, b, messages.NATEndpointIndependent)
	p, err := a.Tunnel(b.FQDN, false)
	if err != nil {
		t.Fatal(err)
	}
	if p.Kind != messages.PathRelay {
		t.Fatalf("path %v, want relay", p.Kind)
	}
	c := &s.NMS.Counters
	delivered := c.Delivered.Load()

	// Still symmetric: the pair stays on the relay, nobody is told.
	if reg, err := a.RegisterBehind(messages.NATSymmetric, false); err != nil || reg.NAT != messages.NATSymmetric {
		t.Fatalf("re-register symmetric: %+v %v", reg, err)
	}
	if got := c.Upgrades.Load(); got != 0 {
		t.Fatalf("%d upgrades while still symmetric", got)
	}

	// The router was replaced by a cone NAT.
	b.Ignore(messages.MsgPeerUpdate, 1) // lost once: NMS must resend
	if reg, err := a.RegisterBehind(messages.NATEndpointIndependent, false); err != nil || reg.NAT != messages.NATEndpointIndependent {
		t.Fatalf("re-register cone: %+v %v", reg, err)
	}
	eventually(t, "both nodes acknowledge their PeerUpdate", func() bool { return c.Delivered.Load() >= delivered+2 })
	if got := c.Upgrades.Load(); got != 1 {
		t.Fatalf("%d upgrades, want 1", got)
	}
	if got := b.Copies(messages.MsgPeerUpdate); got < 2 {
		t.Fatalf("bob saw %d PeerUpdate copies, want a retransmission", got)
	}
	want := map[*Node]messages.PeerUpdate{
		a: {PeerFQDN: b.FQDN, Endpoints: []netip.AddrPort{b.Addr()}},
		b: {PeerFQDN: a.FQDN, Endpoints: []netip.AddrPort{a.Addr()}},
	}
	for n, w := range want {
		u := n.Updates()
		if len(u) != 1 || u[0].PeerFQDN != w.PeerFQDN || !slices.Equal(u[0].Endpoints, w.Endpoints) {
			t.Errorf("%s's updates %+v, want %+v", n.FQDN, u, w)
		}
	}
}
