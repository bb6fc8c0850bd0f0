package cloudsim

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/cyphonic/cyphonic-go/cloud/relay"
	"github.com/cyphonic/cyphonic-go/cloud/server"
	"github.com/cyphonic/cyphonic-go/cloud/store"
	"github.com/cyphonic/cyphonic-go/messages"
)

// startCloudWith starts a cloud on 127.0.0.1 with cfg's tunables.
func startCloudWith(t testing.TB, cfg server.Config) *server.Server {
	t.Helper()
	cfg.DataDir, cfg.Ephemeral = t.TempDir(), true
	cfg.Listen = []netip.Addr{netip.MustParseAddr("127.0.0.1")}
	s, err := server.Start(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close(context.Background()) })
	return s
}

// eventually polls cond until it holds. The deadline only stops a broken
// test from hanging: nothing here asserts how fast the cloud is.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("never happened: %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// online logs n in and registers it behind nat.
func online(t *testing.T, s *server.Server, n *Node, nat messages.NATType) {
	t.Helper()
	if _, err := n.Login(s.AS.Addrs()[0], false); err != nil {
		t.Fatalf("login %s: %v", n.FQDN, err)
	}
	reg, err := n.RegisterBehind(nat, false)
	if err != nil {
		t.Fatalf("register %s: %v", n.FQDN, err)
	}
	if reg.NAT != nat {
		t.Fatalf("%s registered as %v, NMS classified %v", n.FQDN, nat, reg.NAT)
	}
}

func nodeAt(t testing.TB, s *server.Server, fqdn string, ip byte) *Node {
	t.Helper()
	n, err := NewNodeOn(s.CA, fqdn, netip.AddrFrom4([4]byte{127, 0, 0, ip}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(n.Close)
	return n
}

// TestSessionExpiry: a session nobody refreshes within SessionIdle is
// removed (from NMS and from the store); the node's next request gets a
// sealed SessionExpired; it logs in again and carries on; a peer asking for
// a tunnel to an expired node is told the node is offline.
func TestSessionExpiry(t *testing.T) {
	s := startCloudWith(t, server.Config{SessionIdle: 300 * time.Millisecond})
	alice, bob := newNode(t, s, "alice.example.cyphonic"), newNode(t, s, "bob.example.cyphonic")
	online(t, s, alice, messages.NATNone)
	online(t, s, bob, messages.NATNone)
	oldA, oldB := alice.Reply.SessionID, bob.Reply.SessionID

	eventually(t, "both sessions expire", func() bool { return s.NMS.Sessions() == 0 && s.NMS.Counters.Expired.Load() == 2 })
	for _, id := range []uint32{oldA, oldB} {
		eventually(t, fmt.Sprintf("session %d leaves the store", id), func() bool {
			_, err := s.Store().LookupSession(context.Background(), id)
			return errors.Is(err, store.ErrNotFound)
		})
	}
	if _, err := alice.Keepalive(); !isCode(err, messages.CodeSessionExpired) {
		t.Fatalf("keepalive on an expired session: %v, want %s", err, messages.CodeSessionExpired)
	}
	if got := s.NMS.Counters.SessionExpired.Load(); got != 1 {
		t.Fatalf("SessionExpired counter %d", got)
	}

	online(t, s, alice, messages.NATNone) // logs in again: a new session
	if alice.Reply.SessionID == oldA {
		t.Fatal("the new login reused the expired session ID")
	}
	if ack, err := alice.Keepalive(); err != nil || ack.Observed != alice.Addr() {
		t.Fatalf("keepalive after re-login: %+v %v", ack, err)
	}
	if _, err := alice.Tunnel(bob.FQDN, false); !isCode(err, messages.CodePeerUnreachable) {
		t.Fatalf("tunnel to an expired peer: %v, want %s", err, messages.CodePeerUnreachable)
	}
}

// TestMobility: a keepalive from a new mapping updates the node's locator
// and NMS tells the peer it has a tunnel with, retransmitting the
// PeerUpdate until the peer acknowledges it.
func TestMobility(t *testing.T) {
	s := startCloud(t, t.TempDir())
	defer s.Close(context.Background())
	alice, bob := newNode(t, s, "alice.example.cyphonic"), newNode(t, s, "bob.example.cyphonic")
	online(t, s, alice, messages.NATNone)
	online(t, s, bob, messages.NATNone)
	if _, err := alice.Tunnel(bob.FQDN, false); err != nil {
		t.Fatal(err)
	}
	c := &s.NMS.Counters
	delivered, failed := c.Delivered.Load(), c.DeliverFailed.Load()

	bob.Ignore(messages.MsgPeerUpdate, 1) // lost: NMS must resend
	before := alice.Addr()
	if err := alice.Move(); err != nil {
		t.Fatal(err)
	}
	moved := alice.Addr()
	ack, err := alice.Keepalive()
	if err != nil || ack.Observed != moved || moved == before {
		t.Fatalf("keepalive after the move: %+v %v (was %v, now %v)", ack, err, before, moved)
	}
	n, err := s.Store().GetNode(context.Background(), alice.FQDN)
	if err != nil || n.Locator.Observed4 != moved {
		t.Fatalf("locator after the move: %+v %v", n.Locator, err)
	}
	eventually(t, "bob acknowledges the PeerUpdate", func() bool { return c.Delivered.Load() == delivered+1 })
	if got := c.DeliverFailed.Load(); got != failed {
		t.Fatalf("deliveries failed: %d", got-failed)
	}
	if got := bob.Copies(messages.MsgPeerUpdate); got < 2 {
		t.Fatalf("bob saw %d PeerUpdate copies, want a retransmission", got)
	}
	u := bob.Updates()
	if len(u) != 1 || u[0].PeerFQDN != alice.FQDN || len(u[0].Endpoints) != 1 || u[0].Endpoints[0] != moved {
		t.Fatalf("bob's updates %+v, want alice at %v", u, moved)
	}
	// A keepalive from the same mapping is no move: nobody is told.
	if _, err := alice.Keepalive(); err != nil {
		t.Fatal(err)
	}
	if got := c.Delivered.Load(); got != delivered+1 {
		t.Fatalf("a keepalive without a move delivered %d more", got-delivered-1)
	}
}

// TestTunnelRevocation: NMS checks the deny list at tunnel setup, for the
// peer and for the requester, after both logged in.
func TestTunnelRevocation(t *testing.T) {
	s := startCloud(t, t.TempDir())
	defer s.Close(context.Background())
	alice, bob, carol := newNode(t, s, "alice.example.cyphonic"), newNode(t, s, "bob.example.cyphonic"), newNode(t, s, "carol.example.cyphonic")
	for _, n := range []*Node{alice, bob, carol} {
		online(t, s, n, messages.NATNone)
	}
	if err := s.CA.Revoke(bob.Cert.Cert.SerialNumber); err != nil {
		t.Fatal(err)
	}
	if _, err := alice.Tunnel(bob.FQDN, false); !isCode(err, messages.CodeCertRevoked) {
		t.Fatalf("tunnel to a revoked peer: %v, want %s", err, messages.CodeCertRevoked)
	}
	if err := s.CA.Revoke(carol.Cert.Cert.SerialNumber); err != nil {
		t.Fatal(err)
	}
	// NMS refuses the request, or has already ended carol's session (it
	// does so within a poll of the deny list changing).
	if _, err := carol.Tunnel(alice.FQDN, false); !isCode(err, messages.CodeCertRevoked) && !isCode(err, messages.CodeSessionExpired) {
		t.Fatalf("tunnel from a revoked node: %v, want %s or %s", err, messages.CodeCertRevoked, messages.CodeSessionExpired)
	}
	if len(alice.Directions()) != 0 || len(bob.Directions()) != 0 {
		t.Fatal("a revoked tunnel was directed")
	}
	// The others are unaffected.
	dave := newNode(t, s, "dave.example.cyphonic")
	online(t, s, dave, messages.NATNone)
	if _, err := alice.Tunnel(dave.FQDN, false); err != nil {
		t.Fatalf("tunnel between unrevoked nodes: %v", err)
	}
}

// TestNATPaths drives NAT type combinations through the real NMS: nodes on
// distinct loopback addresses (distinct sites) declare what a NAT would
// make them see; NMS classifies them and picks the path.
func TestNATPaths(t *testing.T) {
	s := startCloud(t, t.TempDir())
	defer s.Close(context.Background())
	tests := []struct {
		name       string
		a, b       messages.NATType
		kind       messages.PathKind
		aInit      bool // requester initiates
		bInit      bool
		toB, toA   bool // endpoints given: A's to B, B's to A
		relayReady bool // tickets handed out: with every path, for the fallback (issue 10)
	}{
		{"cone+cone", messages.NATEndpointIndependent, messages.NATEndpointIndependent, messages.PathHolePunch, true, true, true, true, true},
		{"symmetric+cone", messages.NATSymmetric, messages.NATEndpointIndependent, messages.PathRelay, true, true, false, false, true},
		{"cone+symmetric", messages.NATEndpointIndependent, messages.NATSymmetric, messages.PathRelay, true, true, false, false, true},
		// The NATed side sends first; the global one answers the mapping
		// its packet arrives from (unknown in advance: no endpoints).
		{"global+symmetric", messages.NATNone, messages.NATSymmetric, messages.PathDirect, false, true, false, true, true},
		{"symmetric+global", messages.NATSymmetric, messages.NATNone, messages.PathDirect, true, false, true, false, true},
		{"global+global", messages.NATNone, messages.NATNone, messages.PathDirect, true, false, true, true, true},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := nodeAt(t, s, fmt.Sprintf("a%d.example.cyphonic", i), byte(2+2*i))
			b := nodeAt(t, s, fmt.Sprintf("b%d.example.cyphonic", i), byte(3+2*i))
			online(t, s, a, tt.a)
			online(t, s, b, tt.b)
			p, err := a.Tunnel(b.FQDN, false)
			if err != nil {
				t.Fatal(err)
			}
			ds := b.Directions()
			if len(ds) != 1 {
				t.Fatalf("b got %d directions", len(ds))
			}
			d := ds[0]
			if p.Kind != tt.kind || d.Kind != tt.kind {
				t.Fatalf("path %v / direction %v, want %v", p.Kind, d.Kind, tt.kind)
			}
			if p.Initiator != tt.aInit || d.Initiator != tt.bInit {
				t.Fatalf("initiators a=%v b=%v, want a=%v b=%v", p.Initiator, d.Initiator, tt.aInit, tt.bInit)
			}
			if got := len(p.Endpoints) > 0 && p.Endpoints[0] == b.Addr(); got != tt.toB {
				t.Fatalf("a's endpoints %v (b at %v), want given=%v", p.Endpoints, b.Addr(), tt.toB)
			}
			if got := len(d.Endpoints) > 0 && d.Endpoints[0] == a.Addr(); got != tt.toA {
				t.Fatalf("b's endpoints %v (a at %v), want given=%v", d.Endpoints, a.Addr(), tt.toA)
			}
			if (p.Relay != nil) != tt.relayReady || (d.Relay != nil) != tt.relayReady {
				t.Fatalf("tickets a=%v b=%v, want %v", p.Relay != nil, d.Relay != nil, tt.relayReady)
			}
			if tt.relayReady && p.Relay.Token == d.Relay.Token {
				t.Fatal("both sides got the same relay token")
			}
			if tt.relayReady && (p.Relay.BindKey.IsZero() || d.Relay.BindKey.IsZero() || p.Relay.BindKey == d.Relay.BindKey) {
				t.Fatal("the sides did not get bind keys of their own")
			}
		})
	}
}

// TestRelayThroughNMS: a symmetric NAT facing a cone NAT gets a relay;
// NMS has the TRS allocate the session, both nodes get their tickets, and
// a frame goes from one node to the other through the TRS and back.
func TestRelayThroughNMS(t *testing.T) {
	s := startCloud(t, t.TempDir())
	defer s.Close(context.Background())
	alice := nodeAt(t, s, "alice.example.cyphonic", 2)
	bob := nodeAt(t, s, "bob.example.cyphonic", 3)
	online(t, s, alice, messages.NATSymmetric)
	online(t, s, bob, messages.NATEndpointIndependent)
	p, err := alice.Tunnel(bob.FQDN, false)
	if err != nil {
		t.Fatal(err)
	}
	if p.Kind != messages.PathRelay || p.Relay == nil || !p.Relay.TRS4.IsValid() {
		t.Fatalf("path %+v", p)
	}
	ds := bob.Directions()
	if len(ds) != 1 || ds[0].Relay == nil || ds[0].TunnelID != p.TunnelID {
		t.Fatalf("bob's directions %+v", ds)
	}
	ta, tb := *p.Relay, *ds[0].Relay
	// The tickets are stateless (relay/ticket.go): the TRS holds nothing
	// until a side binds.
	if st := s.TRS.Table().Stats(); st.Sessions != 0 || st.Allocated != 0 {
		t.Fatalf("TRS sessions %d allocated %d before any bind", st.Sessions, st.Allocated)
	}
	inner := []byte{byte(messages.TypeData), 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9}
	relayOnce(t, bob, tb, alice, ta, inner)
	relayOnce(t, alice, ta, bob, tb, inner)

	// Mallory, a logged-in node that saw alice's token on the wire (and
	// even holds bob's ticket, as a tunnel peer would), cannot move
	// alice's side: neither an empty frame, nor a bind under bob's key,
	// nor a data frame with alice's token moves it, and bob's traffic
	// still reaches alice.
	mallory := nodeAt(t, s, "mallory.example.cyphonic", 4)
	online(t, s, mallory, messages.NATEndpointIndependent)
	forged := ta
	forged.BindKey = tb.BindKey
	tab := s.TRS.Table()
	before := tab.Stats()
	for _, send := range []func() error{
		func() error { return mallory.SendRelay(ta.TRS4, ta.Token, nil) },
		func() error { return mallory.SendBind(forged) },
		func() error { return mallory.SendRelay(ta.TRS4, ta.Token, inner) },
	} {
		if err := send(); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, "the TRS refuses mallory's packets", func() bool {
		st := tab.Stats()
		return st.Dropped(relay.DropBadBind) == before.Dropped(relay.DropBadBind)+2 &&
			st.Dropped(relay.DropNotBound) == before.Dropped(relay.DropNotBound)+1
	})
	if ss := tab.Sessions(); len(ss) != 1 || ss[0].EndpointA != alice.Addr() || ss[0].Roams != 0 {
		t.Fatalf("alice's side moved: %+v (alice at %v)", ss, alice.Addr())
	}
	relayOnce(t, alice, ta, bob, tb, inner)
}

// relayOnce binds both tickets' sides, then sends inner from `from`
// through the TRS until `to` receives it (the binds and the data frame
// travel separately).
func relayOnce(t *testing.T, to *Node, toTicket messages.RelayTicket, from *Node, fromTicket messages.RelayTicket, inner []byte) {
	t.Helper()
	for _, b := range []struct {
		n  *Node
		tk messages.RelayTicket
	}{{to, toTicket}, {from, fromTicket}} {
		if err := b.n.SendBind(b.tk); err != nil {
			t.Fatal(err)
		}
	}
	for try := 0; ; try++ {
		if err := from.SendRelay(fromTicket.TRS4, fromTicket.Token, inner); err != nil {
			t.Fatal(err)
		}
		select {
		case pkt := <-to.Relayed():
			tok, payload, err := messages.ParseRelay(pkt)
			if err != nil || tok != toTicket.Token || !bytes.Equal(payload, inner) {
				t.Fatalf("%s got token %x payload %x err %v", to.FQDN, tok, payload, err)
			}
			return
		case <-time.After(200 * time.Millisecond):
			if try == 50 {
				t.Fatalf("%s never got the relayed frame", to.FQDN)
			}
		}
	}
}

// TestRelayIdleExpiry: the TRS drops a relay session nobody binds for the
// configured idle time; frames on its tokens are then dropped as unknown.
func TestRelayIdleExpiry(t *testing.T) {
	s := startCloudWith(t, server.Config{RelayIdle: 100 * time.Millisecond})
	alice := nodeAt(t, s, "alice.example.cyphonic", 2)
	bob := nodeAt(t, s, "bob.example.cyphonic", 3)
	online(t, s, alice, messages.NATSymmetric)
	online(t, s, bob, messages.NATEndpointIndependent)
	p, err := alice.Tunnel(bob.FQDN, false)
	if err != nil || p.Relay == nil {
		t.Fatalf("path %+v %v", p, err)
	}
	tab := s.TRS.Table()
	if err := alice.SendBind(*p.Relay); err != nil {
		t.Fatal(err)
	}
	eventually(t, "alice's bind makes the session", func() bool { return tab.Stats().Created == 1 })
	eventually(t, "the idle relay session expires", func() bool {
		st := tab.Stats()
		return st.Sessions == 0 && st.ExpiredIdle == 1
	})
	unknown := tab.Stats().Dropped(relay.DropUnknownToken)
	if err := alice.SendRelay(p.Relay.TRS4, p.Relay.Token, []byte{byte(messages.TypeData), 1}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "a frame on the expired token is dropped", func() bool {
		return tab.Stats().Dropped(relay.DropUnknownToken) == unknown+1
	})
}

// TestDirectionRetransmitted: the peer misses the first Direction; NMS
// resends it with backoff, the tunnel transaction completes once, and a
// late duplicate DirectionAck changes nothing.
func TestDirectionRetransmitted(t *testing.T) {
	s := startCloud(t, t.TempDir())
	defer s.Close(context.Background())
	alice, bob := newNode(t, s, "alice.example.cyphonic"), newNode(t, s, "bob.example.cyphonic")
	online(t, s, alice, messages.NATNone)
	online(t, s, bob, messages.NATNone)
	c := &s.NMS.Counters
	delivered := c.Delivered.Load()

	bob.Ignore(messages.MsgDirection, 1)
	p, err := alice.Tunnel(bob.FQDN, false)
	if err != nil {
		t.Fatal(err)
	}
	if got := bob.Copies(messages.MsgDirection); got < 2 {
		t.Fatalf("bob saw %d Direction copies, want a retransmission", got)
	}
	dl := bob.DirectionDeliveries()
	if len(dl) != 1 || dl[0].Body.TunnelID != p.TunnelID {
		t.Fatalf("bob's directions %+v", dl)
	}
	if c.Tunnels.Load() != 1 || c.Delivered.Load() != delivered+1 || c.TunnelErrors.Load() != 0 {
		t.Fatalf("tunnels %d delivered %d errors %d", c.Tunnels.Load(), c.Delivered.Load()-delivered, c.TunnelErrors.Load())
	}

	// A duplicate ack after the fact: nobody is waiting for it.
	if err := bob.Answer(dl[0].ID, messages.DirectionAck{TunnelID: p.TunnelID, OK: true}); err != nil {
		t.Fatal(err)
	}
	// NMS handles bob's packets in order: once this keepalive is
	// answered, the duplicate ack has been handled.
	if _, err := bob.Keepalive(); err != nil {
		t.Fatal(err)
	}
	if c.Tunnels.Load() != 1 || c.Delivered.Load() != delivered+1 {
		t.Fatalf("the duplicate ack counted: tunnels %d delivered %d", c.Tunnels.Load(), c.Delivered.Load()-delivered)
	}
	if len(bob.Directions()) != 1 {
		t.Fatal("the duplicate ack caused another Direction")
	}
}

// TestDirectionFollowsNewSession: a peer that logs in again while NMS is
// delivering it a Direction (a failover: the asker's NMS adopted the
// peer's old session a moment before the peer's new login reached it)
// cannot open the copies sealed under its old key. The request must
// follow the peer to its new session rather than fail when the old
// delivery gives up.
func TestDirectionFollowsNewSession(t *testing.T) {
	s := startCloud(t, t.TempDir())
	defer s.Close(context.Background())
	alice, bob := newNode(t, s, "alice.example.cyphonic"), newNode(t, s, "bob.example.cyphonic")
	online(t, s, alice, messages.NATNone)
	online(t, s, bob, messages.NATNone)

	bob.Ignore(messages.MsgDirection, 1000) // the old session's copies
	type result struct {
		p   messages.Path
		err error
	}
	done := make(chan result, 1)
	go func() {
		p, err := alice.Tunnel(bob.FQDN, false)
		done <- result{p, err}
	}()
	deadline := time.Now().Add(5 * time.Second)
	for bob.Copies(messages.MsgDirection) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("bob never saw the first Direction")
		}
		time.Sleep(10 * time.Millisecond)
	}
	bob.Ignore(messages.MsgDirection, 0)
	relogin := time.Now()
	online(t, s, bob, messages.NATNone) // a new session, a new key

	r := <-done
	if r.err != nil {
		t.Fatalf("tunnel after the peer's new login: %v (%v after it)", r.err, time.Since(relogin))
	}
	t.Logf("tunnel set up %v after the peer's new login", time.Since(relogin))
	dl := bob.DirectionDeliveries()
	if len(dl) != 1 || dl[0].Body.TunnelID != r.p.TunnelID {
		t.Fatalf("bob's directions under the new session: %+v, want one for tunnel %v", dl, r.p.TunnelID)
	}
}
