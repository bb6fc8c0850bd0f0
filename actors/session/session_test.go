package session

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cyphonic/cyphonic-go/actors/leaktest"
	"github.com/cyphonic/cyphonic-go/actors/supervise"
	"github.com/cyphonic/cyphonic-go/messages"
	"github.com/cyphonic/cyphonic-go/pki"
	"github.com/cyphonic/cyphonic-go/pki/pkitest"
	"github.com/cyphonic/cyphonic-go/transport/handshake"
	"github.com/cyphonic/cyphonic-go/transport/signaling"
)

func TestMain(m *testing.M) { leaktest.VerifyTestMain(m) }

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

var (
	asAddr  = netip.MustParseAddrPort("192.0.2.1:4500")
	nmsAddr = netip.MustParseAddrPort("192.0.2.1:4501")
	// A second cloud process (TestFailoverToNextCloud): its AS and NMS.
	asAddr2   = netip.MustParseAddrPort("192.0.2.3:4500")
	nmsAddr2  = netip.MustParseAddrPort("192.0.2.3:4501")
	probeAddr = netip.MustParseAddrPort("192.0.2.2:4502")
	observed  = netip.MustParseAddrPort("198.51.100.7:61000")
	bobVIP6   = netip.MustParseAddr("fd00:cafe::2")
	bobVIP4   = netip.MustParseAddr("100.64.0.2")
)

type pendingLogin struct {
	id   messages.MsgID
	sess *signaling.Session
	fqdn string
	nms  netip.AddrPort // of the cloud process the login came to
}

// fakeCloud plays AS, NMS and the NAT probe point on the far side of a fake
// data plane: SendControl hands it the node's packets and it answers
// through Session.Inbound, like the sockets would.
type fakeCloud struct {
	t    *testing.T
	as   handshake.Config
	mu   sync.Mutex
	sess map[uint32]*signaling.Session
	// challenged logins awaiting their confirmation, by session ID
	pending map[uint32]pendingLogin
	nextID  uint32
	// lostChallenges and lostReplies drop that many answers to login
	// packets and to confirmations; logins and confirms record what came.
	lostChallenges, lostReplies int
	// lostVIPAnswers drops that many answers to TunnelByVIP requests.
	lostVIPAnswers int
	// holdTunnels leaves TunnelRequests unanswered while set; tunnelIDs
	// records the message ID of every one that came (retransmits share it).
	holdTunnels         bool
	tunnelIDs           map[messages.MsgID]bool
	loginPkts, confirms [][]byte
	down                bool                    // drop everything
	dead                map[netip.AddrPort]bool // drop what is sent there (a killed cloud process)
	nmsSeen             map[netip.AddrPort]int  // sealed requests by the address they came to
	refuse              *messages.Error         // refuse logins with this
	expire              bool                    // answer signaling with SessionExpired
	seen                map[messages.MsgType]int
	logins              int
	probes              int
	node                *Session
	// mapping is the node's public mapping as NMS and the probe point see
	// it (observed unless a test moves it); probeSeen is what the last
	// registration reported from the probe.
	mapping   netip.AddrPort
	probeSeen []netip.AddrPort
	// pathPeer, if set, is the peer a compromised NMS names in every Path,
	// whoever was asked for.
	pathPeer string
	// pathVIP4, if set, is the VIP4 a compromised NMS names in every Path
	// it gives for a VIP (and no VIP6).
	pathVIP4 netip.Addr
	acks     []messages.DenyListAck
}

func newFakeCloud(t *testing.T, ca *pkitest.CA) *fakeCloud {
	asID, err := ca.Issue(pki.RoleAS, "", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	nodes, err := pki.NewVerifier(ca.Cert, pki.RoleNode)
	if err != nil {
		t.Fatal(err)
	}
	return &fakeCloud{
		t: t,
		as: handshake.Config{
			Static:  handshake.StaticKey(asID.NoiseStatic),
			CertDER: asID.CertDER,
			Verify:  nodes.HandshakeFunc(pki.RoleNode, ""),
		},
		sess:    make(map[uint32]*signaling.Session),
		pending: make(map[uint32]pendingLogin),
		seen:    make(map[messages.MsgType]int),
		mapping: observed,
	}
}

func (c *fakeCloud) set(f func(c *fakeCloud)) {
	c.mu.Lock()
	defer c.mu.Unlock()
	f(c)
}

func (c *fakeCloud) count(t messages.MsgType) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.seen[t]
}

// restart forgets every session, as a cloud restarted without its store would.
func (c *fakeCloud) restart() { c.set(func(c *fakeCloud) { clear(c.sess) }) }

func (c *fakeCloud) handle(pkt []byte, to netip.AddrPort) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.down || c.dead[to] {
		return
	}
	pkt = slices.Clone(pkt)
	now := time.Now()
	switch messages.PacketType(pkt[0]) {
	case messages.TypeLogin:
		c.logins++
		c.loginPkts = append(c.loginPkts, pkt)
		if c.lostChallenges > 0 {
			c.lostChallenges--
			return
		}
		a, err := signaling.ReadLogin(c.as, pkt)
		if err != nil {
			c.t.Errorf("fake AS: %v", err)
			return
		}
		if c.refuse != nil {
			out, err := a.Refuse(*c.refuse, "as", now)
			if err == nil {
				c.node.Inbound(out, to)
			}
			return
		}
		c.nextID++
		out, keys, err := a.Challenge(c.nextID, "as", now)
		if err != nil {
			c.t.Errorf("fake AS challenge: %v", err)
			return
		}
		sess, _ := signaling.NewCloudSession(c.nextID, keys)
		nms := nmsAddr
		if to == asAddr2 {
			nms = nmsAddr2
		}
		c.pending[c.nextID] = pendingLogin{id: a.Envelope.ID, sess: sess, fqdn: a.Identity, nms: nms}
		c.node.Inbound(out, to)
	case messages.TypeProbe:
		c.probes++
		p, err := messages.ParseProbe(pkt)
		if err != nil {
			c.t.Errorf("fake probe: %v", err)
			return
		}
		out := make([]byte, messages.ProbeReplyLen)
		messages.ProbeReply{ID: p.ID, Observed: c.mapping}.Put(out)
		c.node.Inbound(out, to)
	case messages.TypeSignaling:
		id, _ := signaling.PeekSession(pkt)
		if p, ok := c.pending[id]; ok {
			if err := signaling.OpenConfirm(p.sess, nil, pkt, p.id, now); err != nil {
				c.t.Errorf("fake AS: confirmation: %v", err)
				return
			}
			c.confirms = append(c.confirms, pkt)
			if c.lostReplies > 0 {
				c.lostReplies--
				return
			}
			delete(c.pending, id)
			out, err := p.sess.SealMessage(nil, messages.NewEncoder(), p.id, "as", now, messages.LoginReply{
				SessionID: id,
				FQDN:      p.fqdn,
				VIP6:      netip.MustParseAddr("fd00:cafe::1"),
				VIP4:      netip.MustParseAddr("100.64.0.1"),
				Prefix6:   netip.MustParsePrefix("fd00:cafe::/48"),
				Prefix4:   netip.MustParsePrefix("100.64.0.0/10"),
				NMS:       []netip.AddrPort{p.nms},
				NATProbe:  []netip.AddrPort{probeAddr},
			})
			if err != nil {
				c.t.Errorf("fake AS reply: %v", err)
				return
			}
			c.sess[id] = p.sess
			c.node.Inbound(out, to)
			return
		}
		s, ok := c.sess[id]
		if !ok {
			return // unknown session: a restarted cloud stays silent
		}
		env, err := s.OpenEnvelope(nil, pkt, now)
		if err != nil {
			c.t.Errorf("fake NMS: %v", err)
			return
		}
		c.seen[env.Type]++
		if c.nmsSeen == nil {
			c.nmsSeen = map[netip.AddrPort]int{}
		}
		c.nmsSeen[to]++
		var body messages.Body
		switch env.Type {
		case messages.MsgRegister:
			r, _ := messages.DecodeBody[messages.Register](env)
			if len(r.ProbeObserved) != 1 {
				c.t.Errorf("register without probe observation: %+v", r)
			}
			c.probeSeen = r.ProbeObserved
			body = messages.RegisterReply{Observed: c.mapping, NAT: messages.NATEndpointIndependent}
		case messages.MsgKeepalive:
			body = messages.KeepaliveAck{Observed: c.mapping}
		case messages.MsgTunnelRequest:
			if c.tunnelIDs == nil {
				c.tunnelIDs = map[messages.MsgID]bool{}
			}
			c.tunnelIDs[env.ID] = true
			if c.holdTunnels {
				return
			}
			r, _ := messages.DecodeBody[messages.TunnelRequest](env)
			if r.PeerFQDN != "bob.example.cyphonic" {
				body = messages.Error{Code: messages.CodeUnknownFQDN}
				break
			}
			named := r.PeerFQDN
			if c.pathPeer != "" {
				named = c.pathPeer
			}
			body = messages.Path{PeerFQDN: named, PeerVIP6: bobVIP6, PeerVIP4: bobVIP4,
				Kind: messages.PathDirect, Endpoints: []netip.AddrPort{netip.MustParseAddrPort("203.0.113.9:4000")},
				Initiator: true, TunnelID: messages.NewMsgID()}
		case messages.MsgTunnelByVIP:
			if c.lostVIPAnswers > 0 {
				c.lostVIPAnswers--
				return
			}
			r, _ := messages.DecodeBody[messages.TunnelByVIP](env)
			if r.VIP != bobVIP4 && r.VIP != bobVIP6 {
				body = messages.Error{Code: messages.CodeUnknownFQDN}
				break
			}
			p := messages.Path{PeerFQDN: "bob.example.cyphonic", PeerVIP6: bobVIP6, PeerVIP4: bobVIP4,
				Kind: messages.PathDirect, Endpoints: []netip.AddrPort{netip.MustParseAddrPort("203.0.113.9:4000")},
				Initiator: true, TunnelID: messages.NewMsgID()}
			if c.pathVIP4.IsValid() {
				p.PeerVIP6, p.PeerVIP4 = netip.Addr{}, c.pathVIP4
			}
			body = p
		case messages.MsgVIPLookup:
			r, _ := messages.DecodeBody[messages.VIPLookup](env)
			switch {
			case r.VIP != bobVIP4 && r.VIP != bobVIP6:
				body = messages.Error{Code: messages.CodeUnknownFQDN}
			case c.pathVIP4.IsValid():
				body = messages.VIPHolder{VIP: c.pathVIP4, FQDN: "bob.example.cyphonic"}
			default:
				body = messages.VIPHolder{VIP: r.VIP, FQDN: "bob.example.cyphonic"}
			}
		case messages.MsgDenyListAck:
			a, _ := messages.DecodeBody[messages.DenyListAck](env)
			c.acks = append(c.acks, a)
			return
		default:
			return // acks and logout need no answer
		}
		if c.expire {
			body = messages.Error{Code: messages.CodeSessionExpired}
		}
		out, err := s.SealMessage(nil, messages.NewEncoder(), env.ID, "nms", now, body)
		if err != nil {
			c.t.Errorf("fake NMS seal: %v", err)
			return
		}
		c.node.Inbound(out, to)
	}
}

// push sends an NMS-initiated request to the node, sealed for its latest session.
func (c *fakeCloud) push(id messages.MsgID, body messages.Body) {
	c.mu.Lock()
	s := c.sess[c.nextID]
	c.mu.Unlock()
	out, err := s.SealMessage(nil, messages.NewEncoder(), id, "nms", time.Now(), body)
	if err != nil {
		c.t.Fatal(err)
	}
	c.node.Inbound(out, nmsAddr)
}

// fakeDataplane records what the session asks of the data plane and hands
// control packets to the fake cloud.
type fakeDataplane struct {
	cloud   *fakeCloud
	mu      sync.Mutex
	opened  []messages.PathInfo
	moved   map[string][]netip.AddrPort
	rebinds int
	primed  []netip.AddrPort // PrimeNAT's addresses, in order
	// holdReady: OpenThen keeps ready in readies instead of calling it
	// (the peer actor has not started yet).
	holdReady bool
	readies   []func(error)
}

func (d *fakeDataplane) PrimeNAT(to netip.AddrPort) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.primed = append(d.primed, to)
	return nil
}

func (d *fakeDataplane) Rebind() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.rebinds++
	return nil
}

func (d *fakeDataplane) rebindCount() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.rebinds
}

func (d *fakeDataplane) SendControl(pkt []byte, to netip.AddrPort) error {
	d.cloud.handle(pkt, to)
	return nil
}

func (d *fakeDataplane) Open(info messages.PathInfo) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.opened = append(d.opened, info)
	return nil
}

func (d *fakeDataplane) OpenThen(info messages.PathInfo, ready func(error)) error {
	if err := d.Open(info); err != nil {
		return err
	}
	d.mu.Lock()
	hold := d.holdReady
	if hold {
		d.readies = append(d.readies, ready)
	}
	d.mu.Unlock()
	if !hold {
		ready(nil)
	}
	return nil
}

// release calls the readies OpenThen kept.
func (d *fakeDataplane) release(err error) {
	d.mu.Lock()
	fs := d.readies
	d.readies = nil
	d.mu.Unlock()
	for _, f := range fs {
		f(err)
	}
}

func (d *fakeDataplane) PeerUpdate(fqdn string, eps []netip.AddrPort) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.moved == nil {
		d.moved = make(map[string][]netip.AddrPort)
	}
	d.moved[fqdn] = eps
	return nil
}

func (d *fakeDataplane) LocalAddrs() []netip.AddrPort {
	return []netip.AddrPort{netip.MustParseAddrPort("0.0.0.0:40000")}
}

func (d *fakeDataplane) openCount() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.opened)
}

type fixture struct {
	s     *Session
	cloud *fakeCloud
	dp    *fakeDataplane
	sys   *supervise.System
	ifs   *ifaces
}

// ifaces is the host's address list, changeable to simulate a move.
type ifaces struct {
	mu    sync.Mutex
	addrs []netip.Addr
}

func (i *ifaces) get() []netip.Addr {
	i.mu.Lock()
	defer i.mu.Unlock()
	return slices.Clone(i.addrs)
}

func (i *ifaces) set(a ...netip.Addr) {
	i.mu.Lock()
	defer i.mu.Unlock()
	i.addrs = a
}

// newFixture starts a session against a fake cloud; setup, if given, shapes
// the cloud before the session's first packet can reach it.
func newFixture(t *testing.T, tweak func(*Config), setup ...func(*fakeCloud)) *fixture {
	t.Helper()
	ca := pkitest.New(t)
	alice, err := ca.Issue(pki.RoleNode, "alice.example.cyphonic", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	v, err := pki.NewVerifier(ca.Cert, pki.RoleAS)
	if err != nil {
		t.Fatal(err)
	}
	cloud := newFakeCloud(t, ca)
	for _, f := range setup {
		f(cloud)
	}
	dp := &fakeDataplane{cloud: cloud}
	ifs := &ifaces{addrs: []netip.Addr{netip.MustParseAddr("10.0.0.5"), netip.MustParseAddr("127.0.0.1")}}
	cfg := Config{
		Identity:   alice,
		VerifyAS:   v.HandshakeFunc(pki.RoleAS, pki.RoleAS.ServiceFQDN()),
		AS:         asAddr,
		Dataplane:  dp,
		Logger:     quiet(),
		Keepalive:  20 * time.Millisecond,
		Retry:      signaling.Retry{Initial: 10 * time.Millisecond, Max: 20 * time.Millisecond, Attempts: 3},
		ReLogin:    supervise.Backoff{Initial: 10 * time.Millisecond, Max: 50 * time.Millisecond},
		ProbeWait:  time.Minute, // the fake probe point always answers
		Interfaces: ifs.get,
	}
	if tweak != nil {
		tweak(&cfg)
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	cloud.node = s
	sys := supervise.New("test", quiet())
	t.Cleanup(func() {
		if err := sys.Shutdown(context.Background()); err != nil {
			t.Error(err)
		}
		s.Close()
	})
	if _, err := s.Spawn(sys.Root()); err != nil {
		t.Fatal(err)
	}
	return &fixture{s: s, cloud: cloud, dp: dp, sys: sys, ifs: ifs}
}

// eventually waits for cond; the deadline only stops a hung test.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func online(f *fixture) func() bool {
	return func() bool { return f.s.Status().State == StateOnline }
}

func TestLoginRegisterKeepalive(t *testing.T) {
	f := newFixture(t, nil)
	eventually(t, "online", online(f))
	st := f.s.Status()
	if st.SessionID == 0 || st.VIP4 != netip.MustParseAddr("100.64.0.1") || st.NMS != nmsAddr ||
		st.Observed != observed || st.NAT != "endpoint-independent" || st.Logins != 1 {
		t.Fatalf("status %+v", st)
	}
	if want := []netip.AddrPort{netip.MustParseAddrPort("10.0.0.5:40000")}; !slices.Equal(st.Locals, want) {
		t.Fatalf("locals %v, want %v", st.Locals, want)
	}
	eventually(t, "keepalives", func() bool { return f.cloud.count(messages.MsgKeepalive) >= 3 })
	if n := f.cloud.count(messages.MsgRegister); n != 1 {
		t.Fatalf("%d registrations, want 1", n)
	}
}

// TestLoginRetransmitsEachStep: a lost challenge makes the node resend its
// login packet, a lost reply its confirmation, each unchanged (the AS
// deduplicates by the bytes), and the login completes.
func TestLoginRetransmitsEachStep(t *testing.T) {
	f := newFixture(t, nil, func(c *fakeCloud) { c.lostChallenges, c.lostReplies = 1, 2 })
	eventually(t, "online", online(f))
	f.cloud.mu.Lock()
	logins, confirms := f.cloud.loginPkts, f.cloud.confirms
	f.cloud.mu.Unlock()
	if len(logins) < 2 || len(confirms) < 3 {
		t.Fatalf("%d login packets and %d confirmations, want 2 and 3", len(logins), len(confirms))
	}
	for i := range logins[:2] {
		if !bytes.Equal(logins[i], logins[0]) || len(logins[i]) < messages.LoginMinLen {
			t.Fatalf("login packet %d differs from the first (or is %d bytes)", i, len(logins[i]))
		}
	}
	for i := range confirms[:3] {
		if !bytes.Equal(confirms[i], confirms[0]) || len(confirms[i]) < messages.LoginMinLen {
			t.Fatalf("confirmation %d differs from the first (or is %d bytes)", i, len(confirms[i]))
		}
	}
	if st := f.s.Status(); st.Logins != 1 {
		t.Fatalf("%d logins, want 1", st.Logins)
	}
}

func TestRequestTunnel(t *testing.T) {
	f := newFixture(t, nil)
	ctx := context.Background()
	// Asked before the session is online: queued, then answered.
	p, err := f.s.RequestTunnel(ctx, "bob.example.cyphonic")
	if err != nil {
		t.Fatal(err)
	}
	if p.PeerVIP6 != bobVIP6 || p.PeerVIP4 != bobVIP4 || f.dp.openCount() != 1 {
		t.Fatalf("path %+v, opened %d", p, f.dp.openCount())
	}
	_, err = f.s.RequestTunnel(ctx, "nobody.example.cyphonic")
	if !errors.Is(err, ErrUnknownPeer) {
		t.Fatalf("unknown peer: %v", err)
	}
	// Concurrent requests for one peer share one transaction: NMS holds
	// its answer until all 8 callers wait, so none can come after the
	// answer (and rightly ask again), then it answers the retransmission.
	f.cloud.set(func(c *fakeCloud) { c.holdTunnels, c.tunnelIDs = true, nil })
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			if _, err := f.s.RequestTunnel(ctx, "bob.example.cyphonic"); err != nil {
				t.Error(err)
			}
		})
	}
	eventually(t, "8 callers waiting", func() bool { return f.s.Status().Waiting == 8 })
	f.cloud.set(func(c *fakeCloud) { c.holdTunnels = false })
	wg.Wait()
	var ids int
	f.cloud.set(func(c *fakeCloud) { ids = len(c.tunnelIDs) })
	if ids != 1 {
		t.Fatalf("8 concurrent requests made %d tunnel transactions, want 1", ids)
	}
	if w := f.s.Status().Waiting; w != 0 {
		t.Fatalf("%d callers still waiting", w)
	}
}

func TestDirectionAnsweredOnce(t *testing.T) {
	f := newFixture(t, nil)
	eventually(t, "online", online(f))
	id := messages.NewMsgID()
	dir := messages.Direction{PeerFQDN: "bob.example.cyphonic", PeerVIP6: bobVIP6, Kind: messages.PathHolePunch,
		Endpoints: []netip.AddrPort{observed}, TunnelID: messages.NewMsgID()}
	for i := range 3 { // NMS retransmits: the data plane must see it once
		f.cloud.push(id, dir)
		// (A retransmission that comes before the ack is sent gets none:
		// see TestDirectionAckWaitsForPeer.)
		eventually(t, "direction acks", func() bool { return f.cloud.count(messages.MsgDirectionAck) == i+1 })
	}
	if n := f.dp.openCount(); n != 1 {
		t.Fatalf("opened %d times, want 1", n)
	}
	f.cloud.push(messages.NewMsgID(), messages.PeerUpdate{PeerFQDN: "bob.example.cyphonic", Endpoints: []netip.AddrPort{observed}})
	eventually(t, "peer update ack", func() bool { return f.cloud.count(messages.MsgPeerUpdateAck) == 1 })
}

// TestDirectionAckWaitsForPeer: the DirectionAck goes out only once the
// data plane says the peer can take the initiator's init (NMS gives the
// initiator its Path on the ack); a retransmitted Direction meanwhile is
// neither opened again nor answered early, and later ones get the ack.
func TestDirectionAckWaitsForPeer(t *testing.T) {
	f := newFixture(t, nil)
	eventually(t, "online", online(f))
	f.dp.mu.Lock()
	f.dp.holdReady = true
	f.dp.mu.Unlock()
	id := messages.NewMsgID()
	dir := messages.Direction{PeerFQDN: "bob.example.cyphonic", PeerVIP6: bobVIP6, Kind: messages.PathHolePunch,
		Endpoints: []netip.AddrPort{observed}, TunnelID: messages.NewMsgID()}
	for range 2 {
		f.cloud.push(id, dir)
	}
	// The session handles its mailbox in order: once this is answered,
	// both Directions have been handled.
	f.cloud.push(messages.NewMsgID(), messages.PeerUpdate{PeerFQDN: "bob.example.cyphonic", Endpoints: []netip.AddrPort{observed}})
	eventually(t, "peer update ack", func() bool { return f.cloud.count(messages.MsgPeerUpdateAck) == 1 })
	if n := f.cloud.count(messages.MsgDirectionAck); n != 0 {
		t.Fatalf("%d direction acks before the peer could take an init, want 0", n)
	}
	if n := f.dp.openCount(); n != 1 {
		t.Fatalf("opened %d times, want 1", n)
	}
	f.dp.release(nil)
	eventually(t, "direction ack", func() bool { return f.cloud.count(messages.MsgDirectionAck) == 1 })
	f.cloud.push(id, dir) // a retransmission: the cached ack
	eventually(t, "cached ack", func() bool { return f.cloud.count(messages.MsgDirectionAck) == 2 })
	if n := f.dp.openCount(); n != 1 {
		t.Fatalf("opened %d times, want 1", n)
	}
}

func TestReloginWhenCloudLost(t *testing.T) {
	tests := []struct {
		name   string
		break_ func(*fakeCloud)
		heal   func(*fakeCloud)
	}{
		{"cloud restarted", (*fakeCloud).restart, func(*fakeCloud) {}},
		{"session expired", func(c *fakeCloud) { c.set(func(c *fakeCloud) { c.expire = true }) },
			func(c *fakeCloud) { c.set(func(c *fakeCloud) { c.expire = false }) }},
		{"cloud down for a while", func(c *fakeCloud) { c.set(func(c *fakeCloud) { c.down = true }) },
			func(c *fakeCloud) { c.set(func(c *fakeCloud) { c.down = false }) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, nil)
			eventually(t, "online", online(f))
			tt.break_(f.cloud)
			// A restarted cloud answers the re-login at once: the session
			// may be online again before a poll sees it lost, so a second
			// login counts as seeing the loss too.
			eventually(t, "session lost", func() bool {
				st := f.s.Status()
				return st.State != StateOnline || st.Logins >= 2
			})
			tt.heal(f.cloud)
			eventually(t, "logged in again", func() bool {
				st := f.s.Status()
				return st.State == StateOnline && st.Logins >= 2
			})
			if f.s.Status().LastError == "" {
				t.Fatal("no error recorded")
			}
		})
	}
}

func TestLoginRefusedIsRetried(t *testing.T) {
	// Refuse from the start: set after the session starts, the first login
	// could already have succeeded. A refusal the cloud marks transient
	// is retried on the ordinary backoff.
	f := newFixture(t, nil, func(c *fakeCloud) {
		c.refuse = &messages.Error{Code: messages.CodeInternal, Message: "NMS unavailable", Retry: true}
	})
	eventually(t, "login retried", func() bool {
		f.cloud.mu.Lock()
		defer f.cloud.mu.Unlock()
		return f.cloud.logins >= 3
	})
	st := f.s.Status()
	if st.State != StateLoggingIn || st.Logins != 0 {
		t.Fatalf("status %+v", st)
	}
	eventually(t, "error recorded", func() bool { return f.s.Status().LastError != "" })
	f.cloud.set(func(c *fakeCloud) { c.refuse = nil })
	eventually(t, "online", online(f))
}

// TestLoginPermanentRefusalBacksOff: a refusal no retry can change
// (cert-expired, cert-revoked, a foreign CA, ...) is logged at ERROR with
// the cause and the next try, which waits RefusedRetry, not the seconds
// of the ordinary backoff; these used to be retried forever at 1..30 s.
func TestLoginPermanentRefusalBacksOff(t *testing.T) {
	for _, code := range []messages.ErrorCode{messages.CodeCertExpired, messages.CodeCertRevoked, messages.CodeCertUnknownCA, messages.CodeVIPExhausted} {
		t.Run(code.String(), func(t *testing.T) {
			var logs syncLog
			f := newFixture(t, func(c *Config) {
				c.RefusedRetry = time.Hour
				c.Logger = slog.New(slog.NewTextHandler(&logs, nil))
			}, func(c *fakeCloud) { c.refuse = &messages.Error{Code: code, Message: code.String()} })
			eventually(t, "refusal logged", func() bool {
				return strings.Contains(logs.String(), "level=ERROR") && strings.Contains(logs.String(), "code="+code.String())
			})
			if l := logs.String(); !strings.Contains(l, "retry_in=1h0m0s") || !strings.Contains(l, "why=") {
				t.Fatalf("log lacks the cause or the next try:\n%s", l)
			}
			// The ordinary backoff (10..50 ms here) would have tried many
			// times over by now.
			time.Sleep(300 * time.Millisecond)
			// Distinct login packets: a retransmission of the one login
			// (its refusal slower than the 10 ms first wait, on a loaded
			// machine) is the same packet, not a new attempt.
			f.cloud.mu.Lock()
			distinct := map[string]bool{}
			for _, p := range f.cloud.loginPkts {
				distinct[string(p)] = true
			}
			f.cloud.mu.Unlock()
			if n := len(distinct); n != 1 {
				t.Fatalf("%d logins after a permanent refusal; want 1", n)
			}
		})
	}
}

type syncLog struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *syncLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *syncLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func TestMobilityReRegisters(t *testing.T) {
	f := newFixture(t, nil)
	eventually(t, "online", online(f))
	f.ifs.set(netip.MustParseAddr("10.9.9.9"))
	f.s.AddrsChanged()
	eventually(t, "re-registered", func() bool {
		l := f.s.Status().Locals
		return len(l) == 1 && l[0] == netip.MustParseAddrPort("10.9.9.9:40000")
	})
	if f.cloud.count(messages.MsgRegister) < 2 {
		t.Fatal("no second registration")
	}
	if f.dp.rebindCount() < 1 {
		t.Fatal("relayed tunnels were not told to rebind after the move")
	}
}

// TestMappingMoveReprobes: when a keepalive ack shows our public mapping
// moved (a NAT rebooted or replaced), the session probes the second
// observation point again before it re-registers, so NMS classifies the
// NAT from the new mapping, not from the one before the move.
func TestMappingMoveReprobes(t *testing.T) {
	f := newFixture(t, nil)
	eventually(t, "online", online(f))
	get := func() (probes, regs int, seen []netip.AddrPort) {
		f.cloud.mu.Lock()
		defer f.cloud.mu.Unlock()
		return f.cloud.probes, f.cloud.seen[messages.MsgRegister], slices.Clone(f.cloud.probeSeen)
	}
	probes, regs, seen := get()
	if probes != 1 || regs != 1 || !slices.Equal(seen, []netip.AddrPort{observed}) {
		t.Fatalf("after login: %d probes, %d registrations, probe seen %v", probes, regs, seen)
	}
	if n := f.dp.rebindCount(); n != 0 {
		t.Fatalf("%d rebinds before any move", n)
	}
	moved := netip.MustParseAddrPort("198.51.100.7:1024")
	f.cloud.set(func(c *fakeCloud) { c.mapping = moved })
	eventually(t, "registered from the new mapping", func() bool { return f.s.Status().Observed == moved })
	probes, regs, seen = get()
	if probes != 2 || regs != 2 {
		t.Fatalf("after the move: %d probes, %d registrations, want 2 and 2", probes, regs)
	}
	if !slices.Equal(seen, []netip.AddrPort{moved}) {
		t.Fatalf("re-registration reported the probe's view %v, want the new mapping %v", seen, moved)
	}
	if n := f.dp.rebindCount(); n < 1 {
		t.Fatalf("%d rebinds after the move, want at least 1", n)
	}
	// The keepalive timer survives the probe wait that took it.
	kas := f.cloud.count(messages.MsgKeepalive)
	eventually(t, "keepalives after the re-registration", func() bool { return f.cloud.count(messages.MsgKeepalive) >= kas+3 })
	if probes, regs, _ = get(); probes != 2 || regs != 2 {
		t.Fatalf("a stable mapping probed or registered again: %d probes, %d registrations", probes, regs)
	}
}

func TestLogoutOnStop(t *testing.T) {
	f := newFixture(t, nil)
	eventually(t, "online", online(f))
	pid := f.s.pid.Load()
	f.sys.Root().Stop(pid)
	if err := f.sys.Registry().WaitGone(context.Background(), pid.Id); err != nil {
		t.Fatal(err)
	}
	if n := f.cloud.count(messages.MsgLogout); n != 1 {
		t.Fatalf("%d logouts", n)
	}
	if st := f.s.Status(); st.State != StateStopped {
		t.Fatalf("state %s", st.State)
	}
}

func TestNotStarted(t *testing.T) {
	s := &Session{}
	if _, err := s.RequestTunnel(context.Background(), "bob.example.cyphonic"); !errors.Is(err, ErrNotStarted) {
		t.Fatal(err)
	}
}

func TestConfigErrors(t *testing.T) {
	if _, err := New(Config{}); !errors.Is(err, ErrConfig) {
		t.Fatal(err)
	}
}

func TestLocators(t *testing.T) {
	ap := netip.MustParseAddrPort
	a := netip.MustParseAddr
	ifs := []netip.Addr{a("10.0.0.5"), a("127.0.0.1"), a("fe80::1"), a("2001:db8::5"), a("192.168.1.2"), a("::1")}
	tests := []struct {
		name  string
		bound []netip.AddrPort
		want  []netip.AddrPort
	}{
		{"wildcard v4", []netip.AddrPort{ap("0.0.0.0:7")}, []netip.AddrPort{ap("10.0.0.5:7"), ap("192.168.1.2:7")}},
		{"wildcard v6", []netip.AddrPort{ap("[::]:8")}, []netip.AddrPort{ap("[2001:db8::5]:8")}},
		{"specific address kept, even loopback", []netip.AddrPort{ap("127.0.0.1:9")}, []netip.AddrPort{ap("127.0.0.1:9")}},
		{"both families", []netip.AddrPort{ap("0.0.0.0:7"), ap("[::]:7")},
			[]netip.AddrPort{ap("10.0.0.5:7"), ap("192.168.1.2:7"), ap("[2001:db8::5]:7")}},
		{"nothing", nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Locators(tt.bound, ifs); !slices.Equal(got, tt.want) {
				t.Fatalf("got %v, want %v", got, tt.want)
			}
		})
	}
	many := make([]netip.Addr, 40)
	for i := range many {
		many[i] = netip.AddrFrom4([4]byte{10, 1, 0, byte(i + 1)})
	}
	if got := Locators([]netip.AddrPort{ap("0.0.0.0:1")}, many); len(got) != messages.MaxAddrs {
		t.Fatalf("%d locators, want %d", len(got), messages.MaxAddrs)
	}
}

// TestPathForAnotherPeerRefused: a compromised NMS answers "bob?" with a
// path to mallory (mallory's certificate is genuine, so the handshake
// alone would succeed). The node refuses the path and opens nothing.
func TestPathForAnotherPeerRefused(t *testing.T) {
	f := newFixture(t, nil, func(c *fakeCloud) { c.pathPeer = "mallory.example.cyphonic" })
	_, err := f.s.RequestTunnel(context.Background(), "bob.example.cyphonic")
	if !errors.Is(err, ErrWrongPeer) {
		t.Fatalf("path to mallory for bob: err %v, want ErrWrongPeer", err)
	}
	if n := f.dp.openCount(); n != 0 {
		t.Fatalf("opened %d tunnels", n)
	}
}

// TestDenyListHandedOn: a deny list NMS pushes in chunks (out of order,
// one of them twice under the same message ID) goes to the node's CRL
// intake once, whole, when its last chunk arrives; every ack names the
// list the node holds.
func TestDenyListHandedOn(t *testing.T) {
	var mu sync.Mutex
	var got [][]byte
	held := uint64(41)
	f := newFixture(t, func(c *Config) {
		c.DenyList = func(crl []byte) uint64 {
			mu.Lock()
			defer mu.Unlock()
			if crl != nil {
				got = append(got, crl)
				held = 42
			}
			return held
		}
	})
	eventually(t, "online", online(f))
	der := make([]byte, 2*messages.DenyListChunk+100)
	for i := range der {
		der[i] = byte(i * 7)
	}
	chunks := messages.DenyListChunks(42, der)
	if len(chunks) != 3 {
		t.Fatalf("%d chunks, want 3", len(chunks))
	}
	ids := []messages.MsgID{messages.NewMsgID(), messages.NewMsgID(), messages.NewMsgID()}
	for n, i := range []int{2, 2, 0} {
		f.cloud.push(ids[i], chunks[i])
		eventually(t, "deny list ack", func() bool { return f.cloud.count(messages.MsgDenyListAck) == n+1 })
	}
	mu.Lock()
	if len(got) != 0 {
		t.Fatalf("intake given a list before its middle chunk came")
	}
	mu.Unlock()
	f.cloud.push(ids[1], chunks[1])
	eventually(t, "deny list acks", func() bool { return f.cloud.count(messages.MsgDenyListAck) == 4 })
	mu.Lock()
	defer mu.Unlock()
	f.cloud.mu.Lock()
	defer f.cloud.mu.Unlock()
	if len(got) != 1 || !bytes.Equal(got[0], der) {
		t.Fatalf("intake saw %d lists (want the whole one once)", len(got))
	}
	for i, want := range []uint64{41, 41, 41, 42} {
		if f.cloud.acks[i].Number != want {
			t.Fatalf("acks %+v, want 41, 41, 41, 42", f.cloud.acks)
		}
	}
}

// TestLoginTimeoutSaysAnswersDidNotVerify: an AS whose certificate is not
// from the node's CA (a wrong --ca) answers, but the node cannot verify
// it; the login's timeout says so instead of "no answer".
func TestLoginTimeoutSaysAnswersDidNotVerify(t *testing.T) {
	other := pkitest.New(t)
	foreignAS, err := other.Issue(pki.RoleAS, "", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	f := newFixture(t, nil, func(c *fakeCloud) {
		c.as.Static = handshake.StaticKey(foreignAS.NoiseStatic)
		c.as.CertDER = foreignAS.CertDER
	})
	eventually(t, "login failed", func() bool { return f.s.Status().LastError != "" })
	if e := f.s.Status().LastError; !strings.Contains(e, "did not verify") || !strings.Contains(e, "--ca") {
		t.Fatalf("last error %q does not say the answers did not verify", e)
	}
}

// TestLoginTimeoutSaysWhereItAsked: no answer at all names the AS address
// and the likely causes.
func TestLoginTimeoutSaysWhereItAsked(t *testing.T) {
	var logs syncLog
	f := newFixture(t, func(c *Config) { c.Logger = slog.New(slog.NewTextHandler(&logs, nil)) },
		func(c *fakeCloud) { c.down = true })
	eventually(t, "login failed", func() bool { return f.s.Status().LastError != "" })
	eventually(t, "the hint logged", func() bool {
		return strings.Contains(logs.String(), "level=WARN") && strings.Contains(logs.String(), "no answer from the AS at "+asAddr.String())
	})
	if l := logs.String(); !strings.Contains(l, "--listen") {
		t.Fatalf("no hint at --listen:\n%s", l)
	}
}

// TestFailoverToNextCloud: a node given two cloud processes loses the one
// it logged in to (every packet to its AS and NMS dropped, as after a
// kill -9). A tunnel request then goes unanswered; within FailoverAfter the
// session logs in at the other process and the request is answered there.
// With one cloud address the session never fails over early.
func TestFailoverToNextCloud(t *testing.T) {
	for _, tt := range []struct {
		name  string
		retry signaling.Retry
		why   string // in LastError
	}{
		// A schedule longer than the watch: the watch notices.
		{"the watch notices", signaling.Retry{Initial: 10 * time.Millisecond, Max: 200 * time.Millisecond, Attempts: 8}, "unanswered"},
		// A schedule that ends first (50 ms): its timeout moves on too.
		{"the schedule ends first", signaling.Retry{Initial: 10 * time.Millisecond, Max: 20 * time.Millisecond, Attempts: 3}, "no answer"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, func(c *Config) {
				c.AS, c.Clouds = netip.AddrPort{}, []netip.AddrPort{asAddr, asAddr2}
				c.Keepalive = time.Hour // only the tunnel request can notice the loss
				// Not the 30 ms the test's schedule gives: a login under
				// -race can take longer than two of it.
				c.FailoverAfter = watchTime
				c.Retry = tt.retry
			})
			eventually(t, "online", online(f))
			st := f.s.Status()
			first, other := asAddr, asAddr2
			if st.AS == asAddr2 {
				first, other = asAddr2, asAddr
			}
			if st.NMS != map[netip.AddrPort]netip.AddrPort{asAddr: nmsAddr, asAddr2: nmsAddr2}[first] {
				t.Fatalf("logged in at %v, NMS %v", st.AS, st.NMS)
			}
			f.cloud.set(func(c *fakeCloud) { c.dead = map[netip.AddrPort]bool{first: true, st.NMS: true} })
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			p, err := f.s.RequestTunnel(ctx, "bob.example.cyphonic")
			if err != nil || p.PeerFQDN != "bob.example.cyphonic" {
				t.Fatalf("tunnel after failover: %+v %v", p, err)
			}
			st = f.s.Status()
			if st.AS != other || st.Failovers != 1 || st.Logins != 2 || !strings.Contains(st.LastError, tt.why) {
				t.Fatalf("after failover: as %v (want %v), failovers %d, logins %d, last error %q", st.AS, other, st.Failovers, st.Logins, st.LastError)
			}
		})
	}
}

// TestLoginFailsOverToNextCloud: the first cloud tried is dead from the
// start; the login goes to the next without waiting out its schedule or
// a backoff.
func TestLoginFailsOverToNextCloud(t *testing.T) {
	f := newFixture(t, func(c *Config) {
		c.AS, c.Clouds = netip.AddrPort{}, []netip.AddrPort{asAddr, asAddr2}
		c.ReLogin = supervise.Backoff{Initial: time.Hour, Max: time.Hour} // a backoff would hang the test
		c.FailoverAfter = watchTime
	}, func(c *fakeCloud) { c.dead = map[netip.AddrPort]bool{asAddr: true} })
	eventually(t, "online", online(f))
	if st := f.s.Status(); st.AS != asAddr2 || st.NMS != nmsAddr2 {
		t.Fatalf("online at %v, NMS %v", st.AS, st.NMS)
	}
}

// TestSlowCloudIsNotLeft: a tunnel request NMS holds (its peer's cloud
// process is gone, say) while it answers everything else is no reason to
// fail over: the watch's keepalive is answered, so the session stays.
func TestSlowCloudIsNotLeft(t *testing.T) {
	f := newFixture(t, func(c *Config) {
		c.AS, c.Clouds, c.InOrder = netip.AddrPort{}, []netip.AddrPort{asAddr, asAddr2}, true
		c.Keepalive = time.Hour
		c.Retry = signaling.Retry{Initial: 10 * time.Millisecond, Max: 200 * time.Millisecond, Attempts: 8}
		c.FailoverAfter = watchTime
	})
	eventually(t, "online", online(f))
	f.cloud.set(func(c *fakeCloud) { c.holdTunnels = true })
	// Within the request's own schedule (~0.9 s), after which it would
	// end as a timeout and log in again anyway.
	ctx, cancel := context.WithTimeout(context.Background(), 3*failoverAfterOf(f.s))
	defer cancel()
	if _, err := f.s.RequestTunnel(ctx, "bob.example.cyphonic"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("held tunnel request: %v", err)
	}
	if st := f.s.Status(); st.AS != asAddr || st.Failovers != 0 || st.Logins != 1 {
		t.Fatalf("left a slow cloud: as %v, failovers %d, logins %d (%s)", st.AS, st.Failovers, st.Logins, st.LastError)
	}
	if n := f.cloud.count(messages.MsgKeepalive); n == 0 {
		t.Fatal("no keepalive probed the cloud")
	}
}

// watchTime is the failover tests' FailoverAfter.
const watchTime = 200 * time.Millisecond

// failoverAfterOf is the session's FailoverAfter, defaults applied.
func failoverAfterOf(s *Session) time.Duration { return s.cfg.FailoverAfter }

// TestSetCloudsFailsOverToNewAddress: a node that started with one cloud
// address learns a second (its --cloud name got another record) and, when
// the first process dies, fails over to it. With the one address it had it
// would have kept retrying the dead one.
func TestSetCloudsFailsOverToNewAddress(t *testing.T) {
	var failovers atomic.Int32
	f := newFixture(t, func(c *Config) {
		c.AS, c.Clouds, c.InOrder = netip.AddrPort{}, []netip.AddrPort{asAddr}, true
		c.Keepalive = time.Hour
		c.FailoverAfter = watchTime
		c.Retry = signaling.Retry{Initial: 10 * time.Millisecond, Max: 200 * time.Millisecond, Attempts: 8}
		c.OnFailover = func() { failovers.Add(1) }
	})
	eventually(t, "online", online(f))
	f.s.SetClouds([]netip.AddrPort{asAddr, {}, asAddr, asAddr2}) // the invalid and the repeated one are left out
	f.s.SetClouds(nil)                                           // changes nothing
	f.cloud.set(func(c *fakeCloud) { c.dead = map[netip.AddrPort]bool{asAddr: true, nmsAddr: true} })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if p, err := f.s.RequestTunnel(ctx, "bob.example.cyphonic"); err != nil || p.PeerFQDN != "bob.example.cyphonic" {
		t.Fatalf("tunnel after the first cloud died: %+v %v", p, err)
	}
	if st := f.s.Status(); st.AS != asAddr2 || st.NMS != nmsAddr2 || st.Failovers != 1 {
		t.Fatalf("after failover: as %v, NMS %v, failovers %d (%s)", st.AS, st.NMS, st.Failovers, st.LastError)
	}
	if failovers.Load() == 0 {
		t.Fatal("OnFailover not called")
	}
}
