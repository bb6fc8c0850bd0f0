package dataplane_test

import (
	"context"
	"errors"
	"fmt"
	"math/big"
	"net/netip"
	"testing"
	"time"

	"github.com/cyphonic/cyphonic-go/actors/dataplane"
	"github.com/cyphonic/cyphonic-go/messages"
	"github.com/cyphonic/cyphonic-go/pki"
)

// TestCompromisedNMSCannotGiveMalloryBobsVIPs: a compromised NMS tells
// alice that mallory (a genuine node with a genuine certificate) has bob's
// VIPs, so that mallory's packets would arrive at alice as bob's. Alice
// checks mallory's certificate at the handshake, finds other VIPs bound in
// it, and refuses — whichever side initiates: the refusal is counted, the
// tunnel never comes up, and nothing mallory sends claiming bob's address
// reaches alice's TUN.
func TestCompromisedNMSCannotGiveMalloryBobsVIPs(t *testing.T) {
	for _, aliceInitiates := range []bool{true, false} {
		t.Run(fmt.Sprintf("alice initiates=%v", aliceInitiates), func(t *testing.T) {
			f := newPKI(t)
			a, b, m := newNode(t, f, "alice", 1, nil), newNode(t, f, "bob", 2, nil), newNode(t, f, "mallory", 3, nil)
			id := tunnelID()
			// The lie, to alice.
			if err := a.dp.Open(messages.PathInfo{PeerFQDN: m.fqdn, PeerVIP4: b.vip4, PeerVIP6: b.vip6,
				Kind: messages.PathDirect, Endpoints: []netip.AddrPort{m.addr}, Initiator: aliceInitiates, TunnelID: id}); err != nil {
				t.Fatal(err)
			}
			// Mallory's own node knows alice as she is.
			if err := m.dp.Open(messages.PathInfo{PeerFQDN: a.fqdn, PeerVIP4: a.vip4, PeerVIP6: a.vip6,
				Kind: messages.PathDirect, Endpoints: []netip.AddrPort{a.addr}, Initiator: !aliceInitiates, TunnelID: id}); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), failsafe)
			defer cancel()
			// Mallory keeps sending packets that claim to come from bob.
			go func() {
				for seq := uint64(0); ctx.Err() == nil; seq++ {
					_ = m.app.Send(ctx, ipv4(b.vip4, a.vip4, seq, 100))
					time.Sleep(10 * time.Millisecond)
				}
			}()
			arrived := make(chan []byte, 1)
			go func() {
				if p, err := a.app.Recv(ctx); err == nil {
					arrived <- p
				}
			}()
			// Until alice has refused mallory's certificate three times
			// (three handshake attempts), nothing may arrive.
			for refused := uint64(0); refused < 3; {
				select {
				case p := <-arrived:
					t.Fatalf("alice received a packet from %v: mallory passed as bob", netip.AddrFrom4([4]byte(p[12:16])))
				case <-ctx.Done():
					t.Fatalf("no refusal counted; alice %+v", a.dp.Status())
				case <-time.After(20 * time.Millisecond):
				}
				refused = status(t, a, m.fqdn).Drops["wrong-vips"]
			}
			if st := status(t, a, m.fqdn); st.State == dataplane.StateUp {
				t.Fatalf("alice's tunnel to mallory is up: %+v", st)
			}
		})
	}
}

// TestPathCannotMoveALivePeersVIPs: with alice and bob's tunnel up, a
// compromised NMS hands alice a path to mallory with bob's VIPs, then one
// moving bob to other VIPs. Alice refuses both (counted), and her traffic
// to bob's VIP still goes to bob.
func TestPathCannotMoveALivePeersVIPs(t *testing.T) {
	f := newPKI(t)
	a, b, m := newNode(t, f, "alice", 1, nil), newNode(t, f, "bob", 2, nil), newNode(t, f, "mallory", 3, nil)
	connect(t, a, b, b.addr, a.addr)
	stream(t, a, b, 0, 50, 16)
	if err := a.dp.Open(messages.PathInfo{PeerFQDN: m.fqdn, PeerVIP4: b.vip4, PeerVIP6: b.vip6,
		Kind: messages.PathDirect, Endpoints: []netip.AddrPort{m.addr}, Initiator: true, TunnelID: tunnelID()}); err != nil {
		t.Fatal(err)
	}
	if err := a.dp.Open(messages.PathInfo{PeerFQDN: b.fqdn, PeerVIP4: m.vip4, PeerVIP6: m.vip6,
		Kind: messages.PathDirect, Endpoints: []netip.AddrPort{m.addr}, Initiator: true, TunnelID: tunnelID()}); err != nil {
		t.Fatal(err)
	}
	waitCount(t, "refused paths", 2, func() uint64 { return a.dp.Drops()["wrong-vips"] })
	stream(t, a, b, 50, 50, 16)
	if st := status(t, a, b.fqdn); st.VIP4 != b.vip4 {
		t.Fatalf("bob's VIP moved: %+v", st)
	}
}

// TestRevokedPeerCutOff: alice and bob have a running tunnel; the CA
// revokes bob and alice's node takes the new deny list (as NMS pushes it).
// Alice closes her tunnel to bob within a tick and bob's packets reach her
// no more. Even a compromised NMS that directs alice to bob again gets no
// tunnel: bob's handshakes are refused by his certificate's revocation.
func TestRevokedPeerCutOff(t *testing.T) {
	f := newPKI(t)
	crls := pki.NewCRLState(f.ca.Cert)
	f.verifier.SetDenySource(crls.DenyList)
	tune := func(c *dataplane.Config) {
		c.Revoked = func(s *big.Int) bool { return crls.DenyList().Contains(s) }
		c.HandshakeRetry = 100 * time.Millisecond
	}
	a, b := newNode(t, f, "alice", 1, tune), newNode(t, f, "bob", 2, tune)
	connect(t, a, b, b.addr, a.addr)
	stream(t, b, a, 0, 50, 16)

	if err := f.ca.Revoke(b.serial); err != nil {
		t.Fatal(err)
	}
	c, err := pki.LoadCRL(f.ca.Dir(), f.ca.Cert)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := crls.Offer(c.DER); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), failsafe)
	defer cancel()
	if err := a.dp.WaitUp(ctx, b.fqdn); err != nil && !errors.Is(err, dataplane.ErrUnknownPeer) {
		t.Fatal(err)
	}
	waitFor(t, "alice closes her tunnel to bob", func() bool {
		st, ok := peerStatus(a, b.fqdn)
		return !ok || st.State != dataplane.StateUp
	})
	rx := a.dp.Drops()

	// Bob, who still holds his keys and thinks the tunnel is up, sends.
	go func() {
		for seq := uint64(100); ctx.Err() == nil; seq++ {
			_ = b.app.Send(ctx, ipv4(b.vip4, a.vip4, seq, 100))
			time.Sleep(10 * time.Millisecond)
		}
	}()
	// A compromised NMS directs alice to bob again, bob initiating.
	id := tunnelID()
	if err := a.dp.Open(messages.PathInfo{PeerFQDN: b.fqdn, PeerVIP4: b.vip4, PeerVIP6: b.vip6,
		Kind: messages.PathDirect, Endpoints: []netip.AddrPort{b.addr}, TunnelID: id}); err != nil {
		t.Fatal(err)
	}
	if err := b.dp.Open(messages.PathInfo{PeerFQDN: a.fqdn, PeerVIP4: a.vip4, PeerVIP6: a.vip6,
		Kind: messages.PathDirect, Endpoints: []netip.AddrPort{a.addr}, Initiator: true, TunnelID: id}); err != nil {
		t.Fatal(err)
	}
	// Bob's peer restarts (as it would on keepalive silence) and initiates.
	pid := b.dp.Peer(a.fqdn)
	if pid == nil {
		t.Fatal("bob has no peer actor for alice")
	}
	b.sys.Root().Send(pid, dataplane.Crash{Reason: "test"})
	arrived := make(chan []byte, 1)
	go func() {
		if p, err := a.app.Recv(ctx); err == nil {
			arrived <- p
		}
	}()
	// Until alice has refused three of bob's handshakes, nothing arrives.
	for a.dp.Drops()["handshake"] < rx["handshake"]+3 {
		select {
		case p := <-arrived:
			t.Fatalf("alice received packet %d from revoked bob", seqOf(p))
		case <-ctx.Done():
			t.Fatalf("no refusal; alice %+v drops %v", a.dp.Status(), a.dp.Drops())
		case <-time.After(20 * time.Millisecond):
		}
	}
	if st, ok := peerStatus(a, b.fqdn); ok && st.State == dataplane.StateUp {
		t.Fatalf("alice's tunnel to revoked bob is up: %+v", st)
	}
}

func peerStatus(n *node, fqdn string) (dataplane.PeerStatus, bool) {
	for _, s := range n.dp.Status() {
		if s.FQDN == fqdn {
			return s, true
		}
	}
	return dataplane.PeerStatus{}, false
}
