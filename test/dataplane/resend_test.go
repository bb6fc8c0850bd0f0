package dataplane_test

import (
	"context"
	"testing"
	"time"

	"github.com/cyphonic/cyphonic-go/actors/dataplane"
	"github.com/cyphonic/cyphonic-go/cloud/relay"
	"github.com/cyphonic/cyphonic-go/messages"
)

// TestRelayCrossingLostFirstInit: both sides initiate on a relay, and the
// side whose init the tie-break keeps (alice, the smaller name) sent it
// before bob had bound his side, so the TRS dropped it. Bob's init then
// reaches alice, who drops it for her own: she must send hers again at
// once, not a HandshakeRetry later (the ~1 s relayed first contacts of
// issue 10). The retry is 30 s here, so only the resend brings the tunnel
// up within the 10 s wait; without it this fails.
func TestRelayCrossingLostFirstInit(t *testing.T) {
	f := newPKI(t)
	slowRetry := func(c *dataplane.Config) {
		c.HandshakeRetry = 30 * time.Second
		c.HandshakeTimeout = time.Minute
	}
	a, b := newNode(t, f, "alice", 1, slowRetry), newNode(t, f, "bob", 2, slowRetry)
	svc, tickets := startTRS(t, a, b)
	id := tunnelID()
	dropped := func() uint64 { return svc.Table().Stats().Dropped(relay.DropPeerUnknown) }
	before := dropped()
	if err := a.dp.Open(messages.PathInfo{PeerFQDN: b.fqdn, PeerVIP4: b.vip4, Kind: messages.PathRelay,
		Relay: tickets[0], Initiator: true, TunnelID: id}); err != nil {
		t.Fatal(err)
	}
	// Alice's init reached the TRS before bob bound: dropped there.
	deadline := time.Now().Add(failsafe)
	for dropped() == before {
		if time.Now().After(deadline) {
			t.Fatal("alice's first init was not dropped at the TRS")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := b.dp.Open(messages.PathInfo{PeerFQDN: a.fqdn, PeerVIP4: a.vip4, Kind: messages.PathRelay,
		Relay: tickets[1], Initiator: true, TunnelID: id}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, n := range [][2]*node{{a, b}, {b, a}} {
		if err := n[0].dp.WaitUp(ctx, n[1].fqdn); err != nil {
			t.Fatalf("%s: no tunnel to %s within 10 s (the next retry is 30 s away): %v (status %+v)",
				n[0].fqdn, n[1].fqdn, err, n[0].dp.Status())
		}
	}
	stream(t, a, b, 0, 50, 16)
}
