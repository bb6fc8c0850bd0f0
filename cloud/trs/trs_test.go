package trs

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"github.com/cyphonic/cyphonic-go/test/systest"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/cyphonic/cyphonic-go/actors/leaktest"
	"github.com/cyphonic/cyphonic-go/actors/supervise"
	"github.com/cyphonic/cyphonic-go/cloud/relay"
	"github.com/cyphonic/cyphonic-go/cloud/server/svc"
	"github.com/cyphonic/cyphonic-go/messages"
	"github.com/cyphonic/cyphonic-go/transport/relaybind"
)

func TestMain(m *testing.M) { leaktest.VerifyTestMain(m) }

// side is one node's view of a relay session: its ticket's token and key.
type side struct {
	tok messages.RelayToken
	key messages.RelayBindKey
	ctr relaybind.Counter
}

// bind is a genuine bind of s, as a node makes it.
func (s *side) bind(t *testing.T) []byte {
	t.Helper()
	b, err := relaybind.Seal(s.key, s.tok, s.ctr.Next(time.Now()))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// startTRS runs a TRS on listen and allocates one session through its
// actor, as NMS does, over a router link from a stand-in NMS system.
func startTRS(t *testing.T, listen ...string) (*Service, *side, *side) {
	t.Helper()
	return startTRSWith(t, Config{Listen: listen})
}

func startTRSWith(t *testing.T, cfg Config) (*Service, *side, *side) {
	t.Helper()
	listen := cfg.Listen
	router := svc.NewRouter(nil)
	sys, nmsSys := supervise.New(svc.TRS, nil), supervise.New(svc.NMS, nil)
	router.Attach(svc.TRS, sys.Actors())
	router.Attach(svc.NMS, nmsSys.Actors())
	cfg.Link = router.Link(svc.TRS)
	s, err := Start(sys, cfg)
	if err != nil {
		_ = nmsSys.Shutdown(context.Background())
		_ = sys.Shutdown(context.Background())
		systest.Missing(t, fmt.Sprintf("UDP sockets on %v (%v)", listen, err))
		return nil, nil, nil
	}
	t.Cleanup(func() {
		s.Close()
		_ = sys.Shutdown(context.Background())
		_ = nmsSys.Shutdown(context.Background())
	})
	var session messages.MsgID
	a, b := &side{}, &side{}
	session[0], a.tok[0], b.tok[0] = 1, 2, 3
	a.key[0], b.key[0] = 0xa, 0xb
	f, err := svc.NewFrame("", messages.NewMsgID(), "nms", time.Now(), messages.RelayAlloc{
		Session: session, TokenA: a.tok, TokenB: b.tok, FQDNA: "a.example", FQDNB: "b.example",
		Expires: time.Now().Add(time.Hour).UnixNano(), KeyA: a.key, KeyB: b.key,
	})
	if err != nil {
		t.Fatal(err)
	}
	replies := make(chan svc.Frame, 1)
	nmsLink := router.Link(svc.NMS)
	_, err = nmsSys.Spawn(nil, "nms", "nms", actor.PropsFromFunc(func(ctx actor.Context) {
		if _, ok := ctx.Message().(*actor.Started); ok {
			if err := nmsLink.Request(ctx.Self(), svc.RootOf("", svc.TRS), f); err != nil {
				replies <- svc.Frame{}
			}
		}
		if rf, ok, err := svc.DecodeFrame(ctx.Message()); ok && err == nil {
			replies <- rf
		}
	}))
	if err != nil {
		t.Fatal(err)
	}
	rf := <-replies
	if rep, err := messages.DecodeBody[messages.RelayAllocReply](rf.Envelope); err != nil || !rep.OK {
		t.Fatalf("alloc reply %+v %v", rep, err)
	}
	return s, a, b
}

func listenUDP(t *testing.T, network, addr string) *net.UDPConn {
	t.Helper()
	c, err := net.ListenUDP(network, net.UDPAddrFromAddrPort(netip.MustParseAddrPort(addr)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func localAddr(c *net.UDPConn) netip.AddrPort {
	ap := c.LocalAddr().(*net.UDPAddr).AddrPort()
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

func frame(tok messages.RelayToken, inner []byte) []byte {
	p := make([]byte, messages.RelayHeaderLen+len(inner))
	messages.PutRelayHeader(p, tok)
	copy(p[messages.RelayHeaderLen:], inner)
	return p
}

func send(t *testing.T, c *net.UDPConn, pkt []byte, to netip.AddrPort) {
	t.Helper()
	if _, err := c.WriteToUDPAddrPort(pkt, to); err != nil {
		t.Fatal(err)
	}
}

// dataPacket is a stand-in for a sealed node-to-node packet, marked so
// the receiver can tell packets apart.
func dataPacket(mark byte) []byte {
	return []byte{byte(messages.TypeData), 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, mark}
}

// waitTable polls the table until cond holds (a functional deadline).
func waitTable(t *testing.T, s *Service, what string, cond func(relay.Stats) bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(s.Table().Stats()); {
		if time.Now().After(deadline) {
			t.Fatalf("%s: never happened; stats %+v", what, s.Table().Stats())
		}
		time.Sleep(time.Millisecond)
	}
}

// bindNow sends a genuine bind of sd from c and waits until TRS accepted it.
func bindNow(t *testing.T, s *Service, c *net.UDPConn, sd *side, trs netip.AddrPort) []byte {
	t.Helper()
	binds := s.Table().Stats().Binds
	pkt := sd.bind(t)
	send(t, c, pkt, trs)
	waitTable(t, s, "bind accepted", func(st relay.Stats) bool { return st.Binds > binds })
	return pkt
}

// expectFrom reads c until a relay frame arrives and checks it is the
// packet with mark, framed with tok: the first thing c receives.
func expectFrom(t *testing.T, c *net.UDPConn, tok messages.RelayToken, mark byte) {
	t.Helper()
	got := make([]byte, 2048)
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, _, err := c.ReadFromUDPAddrPort(got)
	if err != nil {
		t.Fatalf("nothing relayed to %v: %v", localAddr(c), err)
	}
	gotTok, payload, err := messages.ParseRelay(got[:n])
	if err != nil || gotTok != tok || !bytes.Equal(payload, dataPacket(mark)) {
		t.Fatalf("%v got token %x payload %x (%v), want token %x payload %x", localAddr(c), gotTok, payload, err, tok, dataPacket(mark))
	}
}

// TestRelayV4ToV6 relays a packet from an IPv4 node to an IPv6 node and
// back, each side bound with an authenticated bind.
func TestRelayV4ToV6(t *testing.T) {
	s, sa, sb := startTRS(t, "127.0.0.1:0", "[::1]:0")
	a, b := listenUDP(t, "udp4", "127.0.0.1:0"), listenUDP(t, "udp6", "[::1]:0")
	var trs4, trs6 netip.AddrPort
	for _, ap := range s.Addrs() {
		if ap.Addr().Is4() {
			trs4 = ap
		} else {
			trs6 = ap
		}
	}
	bindNow(t, s, b, sb, trs6)
	bindNow(t, s, a, sa, trs4)
	send(t, a, frame(sa.tok, dataPacket(1)), trs4)
	expectFrom(t, b, sb.tok, 1)
	send(t, b, frame(sb.tok, dataPacket(2)), trs6)
	expectFrom(t, a, sa.tok, 2)
	if st := s.Table().Stats(); st.Forwarded.Packets != 2 || st.Binds != 2 {
		t.Fatalf("stats %+v", st)
	}
}

// TestBindAttacks runs, over loopback against a real TRS, what someone
// who sees the relay traffic (tokens and binds, in clear) but holds no
// bind key can try against side A, and checks after each that A's
// endpoint has not moved: B's next packet still reaches A, and A's still
// reaches B. Each attack moved A's endpoint before binds were
// authenticated.
func TestBindAttacks(t *testing.T) {
	s, sa, sb := startTRS(t, "127.0.0.1:0")
	trs := s.Addrs()[0]
	a, b := listenUDP(t, "udp4", "127.0.0.1:0"), listenUDP(t, "udp4", "127.0.0.1:0")
	evil := listenUDP(t, "udp4", "127.0.0.1:0")
	bindNow(t, s, b, sb, trs)
	recorded := bindNow(t, s, a, sa, trs) // the attacker records A's bind

	wrongKey, _ := relaybind.Seal(messages.RelayBindKey{0x66}, sa.tok, sa.ctr.Next(time.Now())+1)
	peerKey, _ := relaybind.Seal(sb.key, sa.tok, sa.ctr.Next(time.Now())+1)
	garbage := bytes.Clone(sa.bind(t))
	garbage[len(garbage)-1] ^= 1
	attacks := []struct {
		name   string
		pkt    []byte
		reason relay.DropReason
	}{
		{"empty relay frame (the unauthenticated bind)", frame(sa.tok, nil), relay.DropBadBind},
		{"bind without the key", wrongKey, relay.DropBadBind},
		{"bind under the peer's key", peerKey, relay.DropBadBind},
		{"bind with a garbage MAC", garbage, relay.DropBadBind},
		{"A's recorded bind, replayed", recorded, relay.DropReplay},
		{"data frame with A's token", frame(sa.tok, dataPacket(0xee)), relay.DropNotBound},
	}
	mark := byte(10)
	for _, at := range attacks {
		t.Run(at.name, func(t *testing.T) {
			before := s.Table().Stats()
			send(t, evil, at.pkt, trs)
			waitTable(t, s, "drop counted", func(st relay.Stats) bool { return st.Dropped(at.reason) > before.Dropped(at.reason) })
			if ss := s.Table().Sessions(); ss[0].EndpointA != localAddr(a) || ss[0].EndpointB != localAddr(b) {
				t.Fatalf("endpoints moved: A %v B %v, want %v %v", ss[0].EndpointA, ss[0].EndpointB, localAddr(a), localAddr(b))
			}
			mark++
			send(t, b, frame(sb.tok, dataPacket(mark)), trs)
			expectFrom(t, a, sa.tok, mark)
			mark++
			send(t, a, frame(sa.tok, dataPacket(mark)), trs)
			expectFrom(t, b, sb.tok, mark)
			if st := s.Table().Stats(); st.Roams != 0 || st.Forwarded.Packets != before.Forwarded.Packets+2 {
				t.Fatalf("stats %+v", st)
			}
		})
	}
}

// TestRoamWithBind: A moves to a new address and binds from there; B's
// traffic follows it, and A's old address can no longer send.
func TestRoamWithBind(t *testing.T) {
	s, sa, sb := startTRS(t, "127.0.0.1:0")
	trs := s.Addrs()[0]
	a, b := listenUDP(t, "udp4", "127.0.0.1:0"), listenUDP(t, "udp4", "127.0.0.1:0")
	bindNow(t, s, b, sb, trs)
	bindNow(t, s, a, sa, trs)
	send(t, b, frame(sb.tok, dataPacket(1)), trs)
	expectFrom(t, a, sa.tok, 1)

	moved := listenUDP(t, "udp4", "127.0.0.1:0")
	bindNow(t, s, moved, sa, trs)
	send(t, b, frame(sb.tok, dataPacket(2)), trs)
	expectFrom(t, moved, sa.tok, 2)
	send(t, moved, frame(sa.tok, dataPacket(3)), trs)
	expectFrom(t, b, sb.tok, 3)

	notBound := s.Table().Stats().Dropped(relay.DropNotBound)
	send(t, a, frame(sa.tok, dataPacket(4)), trs)
	waitTable(t, s, "old address refused", func(st relay.Stats) bool { return st.Dropped(relay.DropNotBound) > notBound })
	if st := s.Table().Stats(); st.Roams != 1 || s.Table().Sessions()[0].EndpointA != localAddr(moved) {
		t.Fatalf("stats %+v sessions %+v", st, s.Table().Sessions())
	}
}

// TestStatelessTicketsV4ToV6: tickets minted under the TRS's key (as the
// NMS of its process does) need no allocation: a flood of forged first
// binds over the socket keeps nothing, the two sides' binds make one
// session, and it relays IPv4 to IPv6 and back.
func TestStatelessTicketsV4ToV6(t *testing.T) {
	s, _, _ := startTRS(t, "127.0.0.1:0", "[::1]:0")
	a, b := listenUDP(t, "udp4", "127.0.0.1:0"), listenUDP(t, "udp6", "[::1]:0")
	var trs4, trs6 netip.AddrPort
	for _, ap := range s.Addrs() {
		if ap.Addr().Is4() {
			trs4 = ap
		} else {
			trs6 = ap
		}
	}
	ta, tb, err := s.Tickets().Mint("a.example.cyphonic", "b.example.cyphonic", time.Now().Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	sa, sb := &side{tok: ta.Token, key: ta.Key}, &side{tok: tb.Token, key: tb.Key}
	before := s.Table().Stats()
	forged := &side{tok: ta.Token, key: tb.Key}
	for range 100 {
		send(t, a, forged.bind(t), trs4)
	}
	waitTable(t, s, "forged binds refused", func(st relay.Stats) bool {
		return st.Dropped(relay.DropBadBind) >= before.Dropped(relay.DropBadBind)+100
	})
	if st := s.Table().Stats(); st.Sessions != before.Sessions || st.Created != 0 {
		t.Fatalf("forged binds kept state: %+v", st)
	}
	bindNow(t, s, b, sb, trs6)
	bindNow(t, s, a, sa, trs4)
	send(t, a, frame(sa.tok, dataPacket(1)), trs4)
	expectFrom(t, b, sb.tok, 1)
	send(t, b, frame(sb.tok, dataPacket(2)), trs6)
	expectFrom(t, a, sa.tok, 2)
	if st := s.Table().Stats(); st.Created != 1 || st.Sessions != before.Sessions+1 {
		t.Fatalf("stats %+v", st)
	}
}

// TestTicketsSurviveRestart: with its key in a file, a restarted TRS
// accepts the tickets minted under its previous process's key (by a remote
// NMS that has not fetched the new key yet, or held by nodes of a relayed
// tunnel): both sides bind again and frames flow. Before, the new process
// had a fresh key and refused them as forged.
func TestTicketsSurviveRestart(t *testing.T) {
	keyFile := filepath.Join(t.TempDir(), "trs-ticket.key")
	old, _, _ := startTRSWith(t, Config{Listen: []string{"127.0.0.1:0"}, TicketKeyFile: keyFile})
	ta, tb, err := old.Tickets().Mint("a.example.cyphonic", "b.example.cyphonic", time.Now().Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	old.Close()
	s, _, _ := startTRSWith(t, Config{Listen: []string{"127.0.0.1:0"}, TicketKeyFile: keyFile})
	if !s.Tickets().Same(old.Tickets()) {
		t.Fatal("the restarted TRS has another key")
	}
	trs := s.Addrs()[0]
	a, b := listenUDP(t, "udp4", "127.0.0.1:0"), listenUDP(t, "udp4", "127.0.0.1:0")
	sa, sb := &side{tok: ta.Token, key: ta.Key}, &side{tok: tb.Token, key: tb.Key}
	bindNow(t, s, a, sa, trs)
	bindNow(t, s, b, sb, trs)
	send(t, a, frame(sa.tok, dataPacket(1)), trs)
	expectFrom(t, b, sb.tok, 1)
	if st := s.Table().Stats(); st.Created != 1 {
		t.Fatalf("stats %+v", st)
	}
}
