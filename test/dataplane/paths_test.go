package dataplane_test

import (
	"context"
	"crypto/rand"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/cyphonic/cyphonic-go/actors/dataplane"
	rt "github.com/cyphonic/cyphonic-go/actors/supervise"
	"github.com/cyphonic/cyphonic-go/cloud/relay"
	cloudsvc "github.com/cyphonic/cyphonic-go/cloud/server/svc"
	"github.com/cyphonic/cyphonic-go/cloud/trs"
	"github.com/cyphonic/cyphonic-go/messages"
)

// TestRoaming: bob's traffic starts reaching alice from a new address (his
// NAT rebinds): alice moves her endpoint on the first authenticated packet
// from it, and never on a forged or replayed one from elsewhere.
func TestRoaming(t *testing.T) {
	f := newPKI(t)
	a, b := newNode(t, f, "alice", 1, nil), newNode(t, f, "bob", 2, nil)
	px := newProxy(t, b.addr) // bob's NAT
	connect(t, a, b, px.addr(), a.addr)
	stream(t, a, b, 0, 100, 16)
	stream(t, b, a, 0, 100, 16)
	if ep := status(t, a, b.fqdn).Endpoint; ep != px.addr() {
		t.Fatalf("alice sends to %v, want %v", ep, px.addr())
	}

	// An attacker elsewhere sends a forged and a replayed packet of bob's.
	evil, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.MustParseAddrPort("127.0.0.1:0")))
	if err != nil {
		t.Fatal(err)
	}
	defer evil.Close()
	good := px.dataPacket(t, true)
	for _, pkt := range [][]byte{forge(good), good} {
		if _, err := evil.WriteToUDPAddrPort(pkt, a.addr); err != nil {
			t.Fatal(err)
		}
	}
	drops := func(r string) func() uint64 { return func() uint64 { return status(t, a, b.fqdn).Drops[r] } }
	waitCount(t, "auth drops", 1, drops("auth"))
	waitCount(t, "replay drops", 1, drops("replay"))
	if ep := status(t, a, b.fqdn).Endpoint; ep != px.addr() {
		t.Fatalf("alice roamed to %v on a forged or replayed packet", ep)
	}

	px.rebind()
	stream(t, b, a, 100, 100, 16)
	waitFor(t, "alice to roam", func() bool { return status(t, a, b.fqdn).Endpoint == px.alt() })
	stream(t, a, b, 100, 100, 16) // alice -> bob through the new mapping
	stream(t, b, a, 200, 100, 16)
	if st := status(t, a, b.fqdn); st.Endpoint != px.alt() || st.Restarts != 0 {
		t.Fatalf("alice's peer after the roam: %+v", st)
	}
}

// TestSimultaneousInitiation: both sides are told to initiate at once;
// exactly one session wins and traffic flows both ways.
func TestSimultaneousInitiation(t *testing.T) {
	f := newPKI(t)
	a, b := newNode(t, f, "alice", 1, nil), newNode(t, f, "bob", 2, nil)
	px := newProxy(t, b.addr)
	id := tunnelID()
	for _, o := range []struct {
		n    *node
		info messages.PathInfo
	}{
		{b, messages.PathInfo{PeerFQDN: a.fqdn, PeerVIP4: a.vip4, Kind: messages.PathDirect,
			Endpoints: []netip.AddrPort{a.addr}, Initiator: true, TunnelID: id}},
		{a, messages.PathInfo{PeerFQDN: b.fqdn, PeerVIP4: b.vip4, Kind: messages.PathDirect,
			Endpoints: []netip.AddrPort{px.addr()}, Initiator: true, TunnelID: id}},
	} {
		if err := o.n.dp.Open(o.info); err != nil {
			t.Fatal(err)
		}
	}
	waitUp(t, a, b.fqdn)
	waitUp(t, b, a.fqdn)
	stream(t, a, b, 0, 300, 16)
	stream(t, b, a, 0, 300, 16)
	stream(t, a, b, 300, 300, 16)
	// Every data packet alice sent went to one receiver index of bob's.
	if toB, _ := px.generations(); len(toB) != 1 {
		t.Fatalf("alice sent data on %d sessions, want 1", len(toB))
	}
	for _, n := range []*node{a, b} {
		if st := n.dp.Status()[0]; st.Restarts != 0 {
			t.Fatalf("%s: %+v", n.fqdn, st)
		}
	}
}

// startTRS runs a relay on loopback and allocates one session for a and b.
func startTRS(t *testing.T, a, b *node) (*trs.Service, [2]*messages.RelayTicket) {
	t.Helper()
	sys := rt.New("trs", quiet())
	router := cloudsvc.NewRouter(quiet())
	router.Attach(cloudsvc.TRS, sys.Actors())
	svc, err := trs.Start(sys, trs.Config{Listen: []string{"127.0.0.1:0"}, Logger: quiet(), Link: router.Link(cloudsvc.TRS)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		svc.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := sys.Shutdown(ctx); err != nil {
			t.Error(err)
		}
	})
	var session [16]byte
	var tokens [2]messages.RelayToken
	var keys [2]messages.RelayBindKey
	for _, b := range [][]byte{session[:], tokens[0][:], tokens[1][:], keys[0][:], keys[1][:]} {
		_, _ = rand.Read(b)
	}
	expires := time.Now().Add(time.Hour)
	if err := svc.Table().Allocate(session,
		relay.Side{Token: tokens[0], Key: keys[0], FQDN: a.fqdn},
		relay.Side{Token: tokens[1], Key: keys[1], FQDN: b.fqdn}, expires); err != nil {
		t.Fatal(err)
	}
	var tickets [2]*messages.RelayTicket
	for i := range tickets {
		tickets[i] = &messages.RelayTicket{TRS4: svc.Addrs()[0], Token: tokens[i], Expires: expires.UnixNano(), BindKey: keys[i]}
	}
	return svc, tickets
}

// TestRelay: a relayed tunnel carries data through TRS (counted there);
// a relayed tunnel whose peer is also reachable directly upgrades itself
// to direct, and the relay then carries nothing more.
func TestRelay(t *testing.T) {
	for _, direct := range []bool{false, true} {
		name := "relay-only"
		if direct {
			name = "upgrades-to-direct"
		}
		t.Run(name, func(t *testing.T) {
			f := newPKI(t)
			tune := func(c *dataplane.Config) { c.HandshakeRetry = 50 * time.Millisecond; c.Tick = 10 * time.Millisecond }
			a, b := newNode(t, f, "alice", 1, tune), newNode(t, f, "bob", 2, tune)
			svc, tickets := startTRS(t, a, b)
			var aSeesB, bSeesA []netip.AddrPort
			if direct {
				aSeesB, bSeesA = []netip.AddrPort{b.addr}, []netip.AddrPort{a.addr}
			}
			id := tunnelID()
			// The responder first: it binds to TRS, so alice's msg1 finds it.
			if err := b.dp.Open(messages.PathInfo{PeerFQDN: a.fqdn, PeerVIP4: a.vip4, Kind: messages.PathRelay,
				Endpoints: bSeesA, Relay: tickets[1], TunnelID: id}); err != nil {
				t.Fatal(err)
			}
			if err := a.dp.Open(messages.PathInfo{PeerFQDN: b.fqdn, PeerVIP4: b.vip4, Kind: messages.PathRelay,
				Endpoints: aSeesB, Relay: tickets[0], Initiator: true, TunnelID: id}); err != nil {
				t.Fatal(err)
			}
			waitUp(t, a, b.fqdn)
			waitUp(t, b, a.fqdn)
			relayed := func() uint64 { return svc.Table().Stats().Forwarded.Packets }

			if !direct {
				before := relayed()
				stream(t, a, b, 0, 500, 16)
				stream(t, b, a, 0, 100, 16)
				if got := relayed() - before; got < 600 {
					t.Fatalf("relay forwarded %d packets, want >= 600", got)
				}
				for _, n := range []*node{a, b} {
					if st := n.dp.Status()[0]; st.Path != messages.PathRelay || st.Endpoint != svc.Addrs()[0] {
						t.Fatalf("%s: %+v, want relayed through %v", n.fqdn, st, svc.Addrs()[0])
					}
				}
				return
			}

			waitFor(t, "both sides to go direct", func() bool {
				sa, sb := status(t, a, b.fqdn), status(t, b, a.fqdn)
				return sa.Path == messages.PathDirect && sa.Endpoint == b.addr &&
					sb.Path == messages.PathDirect && sb.Endpoint == a.addr
			})
			before := relayed()
			stream(t, a, b, 0, 500, 16)
			stream(t, b, a, 0, 500, 16)
			if got := relayed() - before; got != 0 {
				t.Fatalf("relay forwarded %d packets after the upgrade", got)
			}
		})
	}
}
