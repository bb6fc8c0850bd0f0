package nodecloud

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/cyphonic/cyphonic-go/actors/node"
)

// TestPingOverTheTunnel is `cyphonic ping` end to end with two nodes: alice
// pings bob through her node's debug endpoint (node.FetchPing, what the CLI
// calls) with no tunnel yet, by FQDN, by short name and by VIP; each ping
// sets up or uses the tunnel and comes back with the RTT of a probe bob's
// data plane answered and the direct path it took, bob's endpoint. An
// unknown peer is an error that says so, not a timeout.
func TestPingOverTheTunnel(t *testing.T) {
	c := startCloud(t, t.TempDir(), nil)
	defer c.close(t)
	alice := startNode(t, c, "alice.example.cyphonic")
	bob := startNode(t, c, "bob.example.cyphonic")
	eventually(t, "alice online", online(alice))
	eventually(t, "bob online", online(bob))
	if _, ok := peerState(alice, bob.FQDN()); ok {
		t.Fatal("alice has a tunnel to bob before the ping")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	dbg := alice.DebugAddr().String()
	bobEndpoints := bob.Dataplane().LocalAddrs()
	for _, name := range []string{bob.FQDN(), "bob", bob.Session().Status().VIP4.String()} {
		r, err := node.FetchPing(ctx, dbg, name, 10*time.Second)
		if err != nil {
			t.Fatalf("ping %s: %v", name, err)
		}
		if r.FQDN != bob.FQDN() || r.RTT <= 0 || r.Relay || r.RelayedReply {
			t.Errorf("ping %s: %+v", name, r)
		}
		found := false
		for _, ep := range bobEndpoints {
			found = found || ep == r.To
		}
		if !found || r.From != r.To {
			t.Errorf("ping %s went to %s, reply from %s: want one of bob's sockets %v", name, r.To, r.From, bobEndpoints)
		}
	}
	// Bob's data plane answered the echoes: his peer for alice saw them
	// (received, not written to his TUN: nothing arrived there).
	p, _ := peerState(bob, alice.FQDN())
	if p.RxPackets == 0 {
		t.Errorf("bob received nothing from alice: %+v", p)
	}
	for _, name := range []string{"carol.example.cyphonic", "carol", "100.64.9.9"} {
		_, err := node.FetchPing(ctx, dbg, name, 10*time.Second)
		if !errors.Is(err, node.ErrUnknownPeer) {
			t.Errorf("ping %s: %v, want unknown peer", name, err)
		}
	}
	if _, err := alice.Ping(ctx, alice.FQDN()); err == nil {
		t.Error("alice pinged herself")
	}
}
