package cloudsim

import (
	"context"
	"testing"

	"github.com/cyphonic/cyphonic-go/actors/supervise"
	"github.com/cyphonic/cyphonic-go/cloud/relay"
	"github.com/cyphonic/cyphonic-go/messages"
)

// TestTunnelWithoutActors: a tunnel request runs on the NMS workers, with
// no transaction actor and no delivery actor (issue 14: one of each per
// setup was most of a setup's CPU). While the peer's Direction waits for
// its ack (the peer ignored the first copy, so NMS retransmits), the NMS
// has no actor besides its root and workers; the retransmitted request is
// answered once, with the one path, and the peer is directed once.
func TestTunnelWithoutActors(t *testing.T) {
	s := startCloud(t, t.TempDir())
	defer s.Close(context.Background())
	alice, bob := newNode(t, s, "alice.example.cyphonic"), newNode(t, s, "bob.example.cyphonic")
	online(t, s, alice, messages.NATNone)
	online(t, s, bob, messages.NATNone)
	var nms *supervise.System
	for _, sys := range s.Systems() {
		if sys.Name() == "nms" {
			nms = sys
		}
	}
	if nms == nil {
		t.Fatal("no nms actor system")
	}
	base := nms.Registry().Len() // the root and its workers
	c := &s.NMS.Counters

	bob.Ignore(messages.MsgDirection, 1)
	type result struct {
		p   messages.Path
		err error
	}
	done := make(chan result, 1)
	go func() {
		p, err := alice.Tunnel(bob.FQDN, true) // every request sent twice
		done <- result{p, err}
	}()
	eventually(t, "bob directed", func() bool { return bob.Copies(messages.MsgDirection) >= 1 })
	// The request is in flight until bob acks the retransmission.
	if n := nms.Registry().Len(); n != base {
		var live []string
		for _, k := range nms.Registry().Kinds() {
			if k.Live > 0 {
				live = append(live, k.Kind)
			}
		}
		t.Fatalf("%d NMS actors while a tunnel request runs, want %d (kinds %v)", n, base, live)
	}
	r := <-done
	if r.err != nil {
		t.Fatal(r.err)
	}
	if bob.Copies(messages.MsgDirection) < 2 {
		t.Fatal("bob's Direction was not retransmitted")
	}
	dl := bob.DirectionDeliveries()
	if len(dl) != 1 || dl[0].Body.TunnelID != r.p.TunnelID {
		t.Fatalf("bob's directions %+v, want one for tunnel %v", dl, r.p.TunnelID)
	}
	if c.Tunnels.Load() != 1 || c.TunnelErrors.Load() != 0 {
		t.Fatalf("tunnels %d errors %d, want 1 and 0", c.Tunnels.Load(), c.TunnelErrors.Load())
	}
	if s.TRS != nil && len(s.TRS.Table().Sessions()) != 0 {
		t.Fatalf("%d relay sessions for one tunnel nobody relays through", len(s.TRS.Table().Sessions()))
	}
}

// TestDirectPathFallbackTicket: a direct path's fallback relay tickets
// (every tunnel gets them; the TRS holds a session only from a side's
// first bind) work once the nodes bind, as they do when the direct path
// fails for the fallback deadline, and a forged first bind on a side
// nobody has bound yet is refused and keeps nothing.
func TestDirectPathFallbackTicket(t *testing.T) {
	s := startCloud(t, t.TempDir())
	defer s.Close(context.Background())
	alice := nodeAt(t, s, "alice.example.cyphonic", 2)
	bob := nodeAt(t, s, "bob.example.cyphonic", 3)
	online(t, s, alice, messages.NATNone)
	online(t, s, bob, messages.NATNone)
	p, err := alice.Tunnel(bob.FQDN, false)
	if err != nil {
		t.Fatal(err)
	}
	if p.Kind != messages.PathDirect || p.Relay == nil {
		t.Fatalf("path %+v: want direct, with a fallback ticket", p)
	}
	ds := bob.Directions()
	if len(ds) != 1 || ds[0].Relay == nil {
		t.Fatalf("bob's directions %+v", ds)
	}
	ta, tb := *p.Relay, *ds[0].Relay
	tab := s.TRS.Table()
	before := tab.Stats()
	forged := ta
	forged.BindKey = tb.BindKey
	if err := bob.SendBind(forged); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the TRS refuses the forged first bind", func() bool {
		return tab.Stats().Dropped(relay.DropBadBind) == before.Dropped(relay.DropBadBind)+1
	})
	if st := tab.Stats(); st.Sessions != 0 {
		t.Fatalf("the forged bind made %d sessions", st.Sessions)
	}
	inner := []byte{byte(messages.TypeData), 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9}
	relayOnce(t, bob, tb, alice, ta, inner)
	relayOnce(t, alice, ta, bob, tb, inner)
	if ss := tab.Sessions(); len(ss) != 1 || ss[0].EndpointA != alice.Addr() || ss[0].EndpointB != bob.Addr() {
		t.Fatalf("relay session %+v (alice at %v, bob at %v)", ss, alice.Addr(), bob.Addr())
	}
}
