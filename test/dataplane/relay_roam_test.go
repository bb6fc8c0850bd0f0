package dataplane_test

import (
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cyphonic/cyphonic-go/actors/dataplane"
	"github.com/cyphonic/cyphonic-go/cloud/relay"
	"github.com/cyphonic/cyphonic-go/messages"
)

// nat is a NAPT in front of one node, toward one server: the node sends
// to inside, the NAT sends on to the server from its current outside
// mapping, and hands the node only what arrives on that mapping. After
// rebind the old mapping is gone, as when a NAT reboots or the node
// roams to another network.
type nat struct {
	inside  *net.UDPConn
	outside [2]*net.UDPConn
	cur     atomic.Int32
	server  netip.AddrPort

	mu   sync.Mutex
	node netip.AddrPort
	wg   sync.WaitGroup
}

func newNAT(t *testing.T, server netip.AddrPort) *nat {
	t.Helper()
	n := &nat{server: server}
	listen := func() *net.UDPConn {
		c, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.MustParseAddrPort("127.0.0.1:0")))
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	n.inside = listen()
	for i := range n.outside {
		n.outside[i] = listen()
	}
	n.wg.Add(3)
	go n.fromNode()
	for i := range n.outside {
		go n.fromServer(i)
	}
	t.Cleanup(func() {
		n.inside.Close()
		for _, c := range n.outside {
			c.Close()
		}
		n.wg.Wait()
	})
	return n
}

func (n *nat) addr() netip.AddrPort { return n.inside.LocalAddr().(*net.UDPAddr).AddrPort() }
func (n *nat) mapping(i int) netip.AddrPort {
	return n.outside[i].LocalAddr().(*net.UDPAddr).AddrPort()
}
func (n *nat) rebind() { n.cur.Store(1) }

func (n *nat) fromNode() {
	defer n.wg.Done()
	buf := make([]byte, 65535)
	for {
		sz, from, err := n.inside.ReadFromUDPAddrPort(buf)
		if err != nil {
			return
		}
		n.mu.Lock()
		n.node = from
		n.mu.Unlock()
		_, _ = n.outside[n.cur.Load()].WriteToUDPAddrPort(buf[:sz], n.server)
	}
}

func (n *nat) fromServer(i int) {
	defer n.wg.Done()
	buf := make([]byte, 65535)
	for {
		sz, _, err := n.outside[i].ReadFromUDPAddrPort(buf)
		if err != nil {
			return
		}
		n.mu.Lock()
		node := n.node
		n.mu.Unlock()
		if int(n.cur.Load()) != i || !node.IsValid() {
			continue // the mapping is gone
		}
		_, _ = n.inside.WriteToUDPAddrPort(buf[:sz], node)
	}
}

// TestRelayRoam: two real nodes relayed through a real TRS; bob sits
// behind a NAT that then gives him a new mapping and forgets the old one.
// The TRS moves bob's side only on his authenticated bind from the new
// mapping, and the tunnel carries traffic both ways again without a new
// handshake or a restart. Bob binds from the new mapping either at his
// keepalive pace (the relay went quiet) or at once when his control plane
// saw the move (Rebind); the second case's keepalive is longer than the
// test's failsafe, so only Rebind can have moved him.
func TestRelayRoam(t *testing.T) {
	for _, tt := range []struct {
		name      string
		keepalive time.Duration
		rebind    bool
	}{
		{"keepalive", 300 * time.Millisecond, false},
		{"rebind on move", 5 * time.Minute, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := newPKI(t)
			tune := func(c *dataplane.Config) {
				c.HandshakeRetry = 50 * time.Millisecond
				c.Tick = 10 * time.Millisecond
				c.Keepalive = tt.keepalive
				// Each side hears nothing from the move until bob's next
				// bind (a keepalive period and a tick after it, at most)
				// and then the other's next packet (a keepalive period):
				// 2*Keepalive+Tick, 0.61 s, of a ~10-hop chain of
				// goroutines (ticks, socket writers and readers, the
				// NAT's, the TRS's). 4*Keepalive (1.2 s) left that chain
				// 0.6 s, which a loaded machine took (the peer died of
				// "keepalive silence" and restarted: flaky at load
				// 16-29). Production leaves it 35-21 s. Only the death
				// waits on DeadAfter, not the roam, so a longer one costs
				// no time; a roam that did not work still fails the test
				// (the peer restarts: Restarts != 0). SilenceAfter's
				// recovery only asks NMS (none here) and binds nothing.
				c.DeadAfter = max(4*tt.keepalive, 10*time.Second)
			}
			a, b := newNode(t, f, "alice", 1, tune), newNode(t, f, "bob", 2, tune)
			svc, tickets := startTRS(t, a, b)
			box := newNAT(t, svc.Addrs()[0])
			bobTicket := *tickets[1]
			bobTicket.TRS4 = box.addr() // bob reaches the TRS through his NAT
			id := tunnelID()
			if err := b.dp.Open(messages.PathInfo{PeerFQDN: a.fqdn, PeerVIP4: a.vip4, Kind: messages.PathRelay,
				Relay: &bobTicket, TunnelID: id}); err != nil {
				t.Fatal(err)
			}
			if err := a.dp.Open(messages.PathInfo{PeerFQDN: b.fqdn, PeerVIP4: b.vip4, Kind: messages.PathRelay,
				Relay: tickets[0], Initiator: true, TunnelID: id}); err != nil {
				t.Fatal(err)
			}
			waitUp(t, a, b.fqdn)
			waitUp(t, b, a.fqdn)
			stream(t, a, b, 0, 200, 16)
			stream(t, b, a, 0, 200, 16)
			bobSide := func() netip.AddrPort { return svc.Table().Sessions()[0].EndpointB }
			if got := bobSide(); got != box.mapping(0) {
				t.Fatalf("TRS has bob at %v, want his NAT mapping %v", got, box.mapping(0))
			}

			box.rebind()
			if tt.rebind {
				if err := b.dp.Rebind(); err != nil {
					t.Fatal(err)
				}
			}
			waitFor(t, "bob's bind from his new mapping", func() bool { return bobSide() == box.mapping(1) })
			stream(t, a, b, 200, 200, 16)
			stream(t, b, a, 200, 200, 16)
			st := svc.Table().Stats()
			if st.Roams != 1 {
				t.Errorf("TRS roams %d, want 1", st.Roams)
			}
			for _, n := range []*node{a, b} {
				if s := n.dp.Status()[0]; s.Path != messages.PathRelay || s.Restarts != 0 {
					t.Errorf("%s after the roam: %+v", n.fqdn, s)
				}
			}
			t.Logf("TRS: binds %d, frames refused as not bound %d", st.Binds, st.Dropped(relay.DropNotBound))
		})
	}
}
