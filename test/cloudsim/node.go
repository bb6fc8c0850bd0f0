// Package cloudsim simulates nodes against a real cloud over UDP on
// loopback: each simulated node is a transport/signaling client and a UDP
// socket. Tests and benchmarks drive many of them at once.
package cloudsim

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cyphonic/cyphonic-go/cloud/rootca"
	"github.com/cyphonic/cyphonic-go/messages"
	"github.com/cyphonic/cyphonic-go/pki"
	"github.com/cyphonic/cyphonic-go/transport/handshake"
	"github.com/cyphonic/cyphonic-go/transport/relaybind"
	"github.com/cyphonic/cyphonic-go/transport/signaling"
)

// ErrTimeout: no reply within the retransmission schedule.
var ErrTimeout = errors.New("cloudsim: no reply")

// Node is one simulated node.
type Node struct {
	FQDN  string
	Reply messages.LoginReply
	Cert  *pki.Identity
	cfg   handshake.Config
	retry signaling.Retry
	bind  netip.Addr
	binds relaybind.Counter // relay bind counters
	// burstResent counts the requests RequestBurst sent again because no
	// reply had come within the retry delay (BurstResent).
	burstResent atomic.Uint64
	sends       atomic.Uint64 // datagrams Send wrote (Sends)
	// AckDenyLists makes the node acknowledge the deny lists NMS pushes,
	// as a real node does (without checking them); by default it ignores
	// them, as the tests expect. Set before Login.
	AckDenyLists bool
	// OnConfirm, if set, is called with the new session's ID when a
	// login's challenge is answered, before the confirmation is first
	// sent: what an on-path observer learns (the ID is in the
	// confirmation's clear header) before the AS has stored the session.
	OnConfirm func(session uint32)

	mu         sync.Mutex
	conn       *net.UDPConn // the current socket (Move replaces it): sock.conn
	sock       *socket
	sess       *signaling.Session
	login      chan []byte // login answers: challenges, and sealed packets while not logged in
	loginPkt   []byte      // the last login's packets, for replays
	confirmPkt []byte
	pending    map[messages.MsgID]chan messages.Envelope
	seen       map[messages.MsgID]bool // deliveries recorded (once per ID)
	directions []Delivery[messages.Direction]
	updates    []messages.PeerUpdate
	copies     map[messages.MsgType]int             // deliveries received, retransmissions included
	ignore     map[messages.MsgType]int             // deliveries still to ignore, by type
	denyIDs    map[messages.MsgID]messages.DenyList // deny-list chunks received (Chunk not kept)
	denyCopies map[uint64]int                       // deny-list chunk copies received, by list number
	ackDeny    bool                                 // acknowledge deny lists from now on (AckDenyListsNow)
	relayed    chan []byte
	enc        messages.Encoder
	probeID    uint64 // the probe awaiting its reply, 0 if none
	probed     chan messages.ProbeReply
}

// Delivery is a message NMS delivered to the node, with its message ID
// (the ID the node's ack carries).
type Delivery[T any] struct {
	ID   messages.MsgID
	Body T
}

// NewNode makes a node with a certificate from ca (valid now, for an hour)
// and a UDP socket on 127.0.0.1.
func NewNode(ca *rootca.CA, fqdn string) (*Node, error) {
	return NewNodeOn(ca, fqdn, netip.AddrFrom4([4]byte{127, 0, 0, 1}))
}

// NewNodeOn binds the node's socket to bind, a loopback address such as
// 127.0.0.2: nodes on distinct addresses look like distinct sites to NMS
// (two NATed nodes with one public address are taken for the same site).
func NewNodeOn(ca *rootca.CA, fqdn string, bind netip.Addr) (*Node, error) {
	id, err := ca.Issue(pki.RoleNode, fqdn, time.Hour)
	if err != nil {
		return nil, err
	}
	return makeNode(ca, id, bind)
}

// NewNodeWithIdentity uses a given identity (e.g. an expired one).
func NewNodeWithIdentity(ca *rootca.CA, id *pki.Identity) (*Node, error) {
	return makeNode(ca, id, netip.AddrFrom4([4]byte{127, 0, 0, 1}))
}

// NewNodeSharing makes a node with identity id on shared socket ss: it
// speaks the same protocol as a node with its own socket, but receives no
// relay frames (socket's comment).
func NewNodeSharing(ca *rootca.CA, id *pki.Identity, ss *SharedSocket) (*Node, error) {
	n, err := bareNode(ca, id, ss.s.addr().Addr())
	if err != nil {
		return nil, err
	}
	if err := ss.s.join(n); err != nil {
		return nil, err
	}
	n.sock, n.conn = ss.s, ss.s.conn
	return n, nil
}

func makeNode(ca *rootca.CA, id *pki.Identity, bind netip.Addr) (*Node, error) {
	n, err := bareNode(ca, id, bind)
	if err != nil {
		return nil, err
	}
	s, err := privateSocket(n, bind)
	if err != nil {
		return nil, err
	}
	n.sock, n.conn = s, s.conn
	return n, nil
}

// bareNode makes the node without a socket.
func bareNode(ca *rootca.CA, id *pki.Identity, bind netip.Addr) (*Node, error) {
	v, err := pki.NewVerifier(ca.Cert, pki.RoleAS)
	if err != nil {
		return nil, err
	}
	n := &Node{
		FQDN: id.FQDN, Cert: id, bind: bind,
		cfg: handshake.Config{
			Static:  handshake.StaticKey{Private: id.NoiseStatic.Private, Public: id.NoiseStatic.Public},
			CertDER: id.CertDER,
			Verify:  v.HandshakeFunc(pki.RoleAS, pki.RoleAS.ServiceFQDN()),
		},
		retry:      signaling.Retry{Initial: 200 * time.Millisecond, Max: time.Second, Attempts: 8},
		login:      make(chan []byte, 4),
		pending:    map[messages.MsgID]chan messages.Envelope{},
		seen:       map[messages.MsgID]bool{},
		copies:     map[messages.MsgType]int{},
		ignore:     map[messages.MsgType]int{},
		denyIDs:    map[messages.MsgID]messages.DenyList{},
		denyCopies: map[uint64]int{},
		relayed:    make(chan []byte, 16),
		probed:     make(chan messages.ProbeReply, 1),
	}
	return n, nil
}

func (n *Node) socket() *net.UDPConn {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.conn
}

func (n *Node) sharedSocket() *socket {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.sock
}

// Addr is the node's socket address.
func (n *Node) Addr() netip.AddrPort { return n.socket().LocalAddr().(*net.UDPAddr).AddrPort() }

// Close closes the node's socket (a shared one once its last node closes)
// and waits for the reader.
func (n *Node) Close() {
	n.sharedSocket().leave(n)
}

// Move replaces the node's socket with a new one of its own (a new port on
// the same address), as a NAT rebinding or a change of network looks to
// the cloud: the next packet comes from a new mapping, sealed with the
// same session.
func (n *Node) Move() error {
	s, err := privateSocket(n, n.bind)
	if err != nil {
		return err
	}
	n.mu.Lock()
	old := n.sock
	n.sock, n.conn = s, s.conn
	n.mu.Unlock()
	old.leave(n)
	return nil
}

// Send writes raw bytes (garbage, replays) to addr.
func (n *Node) Send(addr netip.AddrPort, b []byte) error {
	_, err := n.socket().WriteToUDPAddrPort(b, addr)
	if err == nil {
		n.sends.Add(1)
	}
	return err
}

// Sends is how many datagrams Send has written.
func (n *Node) Sends() uint64 { return n.sends.Load() }

// Ignore makes the node drop the next k deliveries of type t unanswered, as
// if they were lost, so that NMS has to retransmit.
func (n *Node) Ignore(t messages.MsgType, k int) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.ignore[t] = k
}

// Copies is how many deliveries of type t arrived, retransmissions and
// ignored ones included.
func (n *Node) Copies(t messages.MsgType) int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.copies[t]
}

// handle takes a packet the node's socket received (pkt is its own copy,
// non-empty).
func (n *Node) handle(pkt []byte, from netip.AddrPort) {
	switch messages.PacketType(pkt[0]) {
	case messages.TypeLoginReply, messages.TypeLoginCookie:
		select {
		case n.login <- pkt:
		default:
		}
	case messages.TypeSignaling:
		if n.loggingIn() {
			select {
			case n.login <- pkt:
			default:
			}
			return
		}
		n.onSealed(pkt, from)
	case messages.TypeRelay:
		select {
		case n.relayed <- pkt:
		default:
		}
	case messages.TypeProbeReply:
		r, err := messages.ParseProbeReply(pkt)
		if err != nil {
			return
		}
		n.mu.Lock()
		want := n.probeID != 0 && r.ID == n.probeID
		n.mu.Unlock()
		if want {
			select {
			case n.probed <- r:
			default:
			}
		}
	}
}

// SendRelay sends inner through the TRS at trs with the node's relay token.
// The TRS forwards it only once the node has bound (SendBind).
func (n *Node) SendRelay(trs netip.AddrPort, tok messages.RelayToken, inner []byte) error {
	p := make([]byte, messages.RelayHeaderLen+len(inner))
	messages.PutRelayHeader(p, tok)
	copy(p[messages.RelayHeaderLen:], inner)
	return n.Send(trs, p)
}

// SendBind sends an authenticated bind of the ticket's side to its TRS4,
// as a node does: it makes the node's address that side's endpoint.
func (n *Node) SendBind(tk messages.RelayTicket) error {
	p, err := relaybind.Seal(tk.BindKey, tk.Token, n.binds.Next(time.Now()))
	if err != nil {
		return err
	}
	return n.Send(tk.TRS4, p)
}

// DenyListChunks is, for deny list number, how many distinct chunk
// deliveries (message IDs) arrived, at how many distinct offsets, and how
// many copies in all (retransmissions included).
func (n *Node) DenyListChunks(number uint64) (ids, offsets, copies int) {
	n.mu.Lock()
	defer n.mu.Unlock()
	seen := map[uint32]bool{}
	for _, d := range n.denyIDs {
		if d.Number == number {
			ids++
			seen[d.Offset] = true
		}
	}
	return ids, len(seen), n.denyCopies[number]
}

// AckDenyListsNow makes a node that was ignoring deny lists acknowledge
// them (AckDenyLists, after Login).
func (n *Node) AckDenyListsNow() {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.ackDeny = true
}

// Relayed delivers the relay frames the node receives.
func (n *Node) Relayed() <-chan []byte { return n.relayed }

func (n *Node) loggingIn() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.sess == nil
}

func (n *Node) onSealed(pkt []byte, from netip.AddrPort) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.sess == nil {
		return
	}
	env, err := n.sess.OpenEnvelope(nil, pkt, time.Now())
	if err != nil {
		return
	}
	if env.Type == messages.MsgDirection || env.Type == messages.MsgPeerUpdate || env.Type == messages.MsgDenyList {
		n.copies[env.Type]++
		if n.ignore[env.Type] > 0 {
			n.ignore[env.Type]--
			return
		}
	}
	switch env.Type {
	case messages.MsgDirection:
		d, err := messages.DecodeBody[messages.Direction](env)
		if err != nil {
			return
		}
		if !n.seen[env.ID] {
			n.seen[env.ID] = true
			n.directions = append(n.directions, Delivery[messages.Direction]{ID: env.ID, Body: d})
		}
		n.answer(env, messages.DirectionAck{TunnelID: d.TunnelID, OK: true}, from)
	case messages.MsgPeerUpdate:
		u, err := messages.DecodeBody[messages.PeerUpdate](env)
		if err != nil {
			return
		}
		if !n.seen[env.ID] {
			n.seen[env.ID] = true
			n.updates = append(n.updates, u)
		}
		n.answer(env, messages.PeerUpdateAck{}, from)
	case messages.MsgDenyList:
		d, err := messages.DecodeBody[messages.DenyList](env)
		if err != nil {
			return
		}
		n.denyCopies[d.Number]++
		d.Chunk = nil
		n.denyIDs[env.ID] = d
		if n.AckDenyLists || n.ackDeny {
			n.answer(env, messages.DenyListAck{Number: d.Number}, from)
		}
	default:
		if ch := n.pending[env.ID]; ch != nil {
			select {
			case ch <- env:
			default:
			}
		}
	}
}

func (n *Node) answer(req messages.Envelope, body messages.Body, to netip.AddrPort) {
	pkt, err := n.sess.SealMessage(nil, &n.enc, req.ID, n.FQDN, time.Now(), body)
	if err == nil {
		_, _ = n.conn.WriteToUDPAddrPort(pkt, to)
	}
}

// Answer sends body under message ID id to NMS, unasked: a late or
// duplicate ack.
func (n *Node) Answer(id messages.MsgID, body messages.Body) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.sess == nil {
		return errors.New("cloudsim: not logged in")
	}
	n.answer(messages.Envelope{ID: id}, body, n.Reply.NMS[0])
	return nil
}

// Directions returns the Directions received so far, once each.
func (n *Node) Directions() []messages.Direction {
	n.mu.Lock()
	defer n.mu.Unlock()
	out := make([]messages.Direction, len(n.directions))
	for i, d := range n.directions {
		out[i] = d.Body
	}
	return out
}

// DirectionDeliveries returns the Directions received so far with their
// message IDs.
func (n *Node) DirectionDeliveries() []Delivery[messages.Direction] {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]Delivery[messages.Direction](nil), n.directions...)
}

// Updates returns the PeerUpdates received so far.
func (n *Node) Updates() []messages.PeerUpdate {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]messages.PeerUpdate(nil), n.updates...)
}

// Login logs in at the AS, retransmitting each step until its answer
// comes: the login packet (with a mac2 once a loaded AS sent a cookie)
// until the challenge, then the confirmation until the sealed reply. dup sends every packet twice (a
// duplicating network). A refusal is a *messages.Error.
func (n *Node) Login(asAddr netip.AddrPort, dup bool) (*messages.LoginReply, error) {
	// On a shared socket the replies before a session exists name no
	// node: one login at a time may wait for them (socket's comment).
	s := n.sharedSocket()
	s.acquireLogin(n)
	defer s.releaseLogin(n)
	l, err := signaling.StartLogin(n.cfg, pki.RoleAS.ServiceFQDN(), n.FQDN, messages.LoginRequest{Software: "cloudsim"}, time.Now())
	if err != nil {
		return nil, err
	}
	n.mu.Lock()
	n.sess, n.loginPkt, n.confirmPkt = nil, l.Packet(), nil
	n.mu.Unlock()
	for sent := 1; ; sent++ {
		n.Send(asAddr, l.Packet())
		if dup {
			n.Send(asAddr, l.Packet())
		}
		wait, ok := n.retry.Delay(sent)
		if !ok {
			return nil, fmt.Errorf("cloudsim: login %s: %w", n.FQDN, ErrTimeout)
		}
		timer := time.NewTimer(wait)
	waiting:
		for {
			select {
			case pkt := <-n.login:
				if messages.PacketType(pkt[0]) == messages.TypeLoginCookie {
					// A loaded AS wants proof of our address: the first
					// cookie's copy goes at once, later ones wait.
					if first, err := l.TakeCookie(pkt, time.Now()); err == nil && first {
						n.Send(asAddr, l.Packet())
					}
					continue
				}
				advanced, res, err := n.loginStep(l, pkt)
				if err != nil || res != nil {
					timer.Stop()
					return res.reply(), err
				}
				if advanced {
					timer.Stop()
					if n.OnConfirm != nil {
						_, confirm := n.LoginPackets()
						if id, err := signaling.PeekSession(confirm); err == nil {
							n.OnConfirm(id)
						}
					}
					sent = 0 // the confirmation starts its own schedule
					break waiting
				}
			case <-timer.C:
				break waiting
			}
		}
	}
}

type loginDone struct{ r messages.LoginReply }

func (d *loginDone) reply() *messages.LoginReply {
	if d == nil {
		return nil
	}
	return &d.r
}

// loginStep feeds pkt to the login: advanced once the challenge is
// answered, a result once the sealed reply opens, an error on a refusal.
// Anything else (a duplicate, a forgery) is ignored.
func (n *Node) loginStep(l *signaling.Login, pkt []byte) (advanced bool, done *loginDone, err error) {
	var refused *messages.Error
	if !l.Confirmed() {
		if messages.PacketType(pkt[0]) != messages.TypeLoginReply {
			return false, nil, nil
		}
		confirm, err := l.Confirm(pkt, time.Now())
		if errors.As(err, &refused) {
			return false, nil, err
		}
		if err != nil {
			return false, nil, nil
		}
		n.mu.Lock()
		n.confirmPkt = confirm
		s := n.sock
		n.mu.Unlock()
		if id, err := signaling.PeekSession(confirm); err == nil {
			s.claimSession(n, id) // the login's sealed reply comes under it
		}
		return true, nil, nil
	}
	if messages.PacketType(pkt[0]) != messages.TypeSignaling {
		return false, nil, nil
	}
	res, err := l.Finish(pkt, time.Now())
	if errors.As(err, &refused) {
		return false, nil, err
	}
	if err != nil {
		return false, nil, nil
	}
	n.mu.Lock()
	n.sess, n.Reply = res.Session, res.Reply
	n.mu.Unlock()
	return false, &loginDone{r: res.Reply}, nil
}

// LoginPackets returns the packets of the node's last login: the login
// packet and the confirmation (nil if it was never challenged), for
// replays.
func (n *Node) LoginPackets() (login, confirm []byte) {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.loginPkt, n.confirmPkt
}

// Request sends body to NMS (retransmitting; dup sends each copy twice) and
// returns the reply envelope. A refusal is returned as a *messages.Error.
func (n *Node) Request(to netip.AddrPort, body messages.Body, dup bool) (messages.Envelope, error) {
	id := messages.NewMsgID()
	ch := make(chan messages.Envelope, 1)
	n.mu.Lock()
	if n.sess == nil {
		n.mu.Unlock()
		return messages.Envelope{}, errors.New("cloudsim: not logged in")
	}
	n.pending[id] = ch
	pkt, err := n.sess.SealMessage(nil, &n.enc, id, n.FQDN, time.Now(), body)
	n.mu.Unlock()
	defer func() {
		n.mu.Lock()
		delete(n.pending, id)
		n.mu.Unlock()
	}()
	if err != nil {
		return messages.Envelope{}, err
	}
	for sent := 1; ; sent++ {
		n.Send(to, pkt)
		if dup {
			n.Send(to, pkt)
		}
		wait, ok := n.retry.Delay(sent)
		if !ok {
			return messages.Envelope{}, fmt.Errorf("cloudsim: %s %s: %w", n.FQDN, body.MsgType(), ErrTimeout)
		}
		timer := time.NewTimer(wait)
		select {
		case env := <-ch:
			timer.Stop()
			if env.Type == messages.MsgError {
				e, err := messages.DecodeBody[messages.Error](env)
				if err != nil {
					return env, err
				}
				return env, &e
			}
			return env, nil
		case <-timer.C:
		}
	}
}

// RequestBurst seals bodies in order (each later than the one before),
// sends them back to back without waiting, and then retransmits the
// unanswered ones, still in order, on the node's schedule until every one
// is answered: the replies, in the bodies' order. A refusal is an error.
func (n *Node) RequestBurst(to netip.AddrPort, bodies []messages.Body) ([]messages.Envelope, error) {
	ids := make([]messages.MsgID, len(bodies))
	pkts := make([][]byte, len(bodies))
	chs := make([]chan messages.Envelope, len(bodies))
	n.mu.Lock()
	if n.sess == nil {
		n.mu.Unlock()
		return nil, errors.New("cloudsim: not logged in")
	}
	for i, b := range bodies {
		ids[i], chs[i] = messages.NewMsgID(), make(chan messages.Envelope, 1)
		n.pending[ids[i]] = chs[i]
		pkt, err := n.sess.SealMessage(nil, &n.enc, ids[i], n.FQDN, time.Now(), b)
		if err != nil {
			n.mu.Unlock()
			return nil, err
		}
		pkts[i] = pkt
	}
	n.mu.Unlock()
	defer func() {
		n.mu.Lock()
		for _, id := range ids {
			delete(n.pending, id)
		}
		n.mu.Unlock()
	}()
	out := make([]messages.Envelope, len(bodies))
	got := make([]bool, len(bodies))
	left := len(bodies)
	for sent := 1; ; sent++ {
		for i, pkt := range pkts {
			if !got[i] {
				if sent > 1 {
					n.burstResent.Add(1)
				}
				n.Send(to, pkt)
			}
		}
		wait, ok := n.retry.Delay(sent)
		if !ok {
			return out, fmt.Errorf("cloudsim: %s: %d of %d requests unanswered: %w", n.FQDN, left, len(bodies), ErrTimeout)
		}
		timer := time.NewTimer(wait)
	collect:
		for left > 0 {
			for i := range chs {
				if got[i] {
					continue
				}
				select {
				case env := <-chs[i]:
					out[i], got[i] = env, true
					left--
					continue
				default:
				}
			}
			if left == 0 {
				break
			}
			select {
			case <-timer.C:
				break collect
			case <-time.After(time.Millisecond):
			}
		}
		timer.Stop()
		if left == 0 {
			for _, env := range out {
				if env.Type == messages.MsgError {
					e, err := messages.DecodeBody[messages.Error](env)
					if err != nil {
						return out, err
					}
					return out, &e
				}
			}
			return out, nil
		}
	}
}

// BurstResent is how many requests RequestBurst has sent again. A
// resent keepalive that arrives after a newer one of its burst ran is
// refused as a replay, as it must be (its first copy ran; only the reply
// was slower than the retry delay).
func (n *Node) BurstResent() uint64 { return n.burstResent.Load() }

// RegisterBehind registers the node as if it sat behind a NAT of type nat,
// by what it declares: NATNone declares its socket's address (global);
// otherwise it declares a private address NMS never sees, and reports the
// second observation point's view of its mapping as the same mapping
// (endpoint-independent) or another one (NATSymmetric). NMS classifies it
// from that with its real rules.
func (n *Node) RegisterBehind(nat messages.NATType, dup bool) (messages.RegisterReply, error) {
	me := n.Addr()
	reg := messages.Register{IPv4: true, Port: me.Port()}
	switch nat {
	case messages.NATNone:
		reg.Locals = []netip.AddrPort{me}
	case messages.NATEndpointIndependent:
		reg.Locals = []netip.AddrPort{netip.MustParseAddrPort("10.0.0.2:41641")}
		reg.ProbeObserved = []netip.AddrPort{me}
	case messages.NATSymmetric:
		reg.Locals = []netip.AddrPort{netip.MustParseAddrPort("10.0.0.2:41641")}
		reg.ProbeObserved = []netip.AddrPort{netip.AddrPortFrom(me.Addr(), me.Port()+1)}
	default:
		reg.Locals = []netip.AddrPort{netip.MustParseAddrPort("10.0.0.2:41641")}
	}
	return n.register(reg, dup)
}

func (n *Node) register(reg messages.Register, dup bool) (messages.RegisterReply, error) {
	env, err := n.Request(n.Reply.NMS[0], reg, dup)
	if err != nil {
		return messages.RegisterReply{}, err
	}
	return messages.DecodeBody[messages.RegisterReply](env)
}

// Keepalive sends one keepalive (retransmitted until answered).
func (n *Node) Keepalive() (messages.KeepaliveAck, error) {
	env, err := n.Request(n.Reply.NMS[0], messages.Keepalive{}, false)
	if err != nil {
		return messages.KeepaliveAck{}, err
	}
	return messages.DecodeBody[messages.KeepaliveAck](env)
}

// Register registers the node's socket with NMS, after probing the alt
// port for the second observation.
func (n *Node) Register(dup bool) (messages.RegisterReply, error) {
	var observed []netip.AddrPort
	if len(n.Reply.NATProbe) > 0 {
		if o, err := n.probe(n.Reply.NATProbe[0]); err == nil {
			observed = append(observed, o)
		}
	}
	env, err := n.Request(n.Reply.NMS[0], messages.Register{
		Locals: []netip.AddrPort{n.Addr()}, IPv4: true, Port: n.Addr().Port(), ProbeObserved: observed,
	}, dup)
	if err != nil {
		return messages.RegisterReply{}, err
	}
	return messages.DecodeBody[messages.RegisterReply](env)
}

// probe asks a cloud observation point what it sees of the node's socket:
// the probe goes from that socket, so the mapping is the node's (on a
// shared socket, the one all its nodes share), and the reply comes back
// to it under the probe's random ID.
func (n *Node) probe(to netip.AddrPort) (netip.AddrPort, error) {
	id := rand.Uint64() | 1 // never 0: no probe pending
	n.mu.Lock()
	n.probeID = id
	s := n.sock
	n.mu.Unlock()
	s.claimProbe(n, id)
	defer func() {
		s.dropProbe(id)
		n.mu.Lock()
		n.probeID = 0
		n.mu.Unlock()
		select { // a reply that came after the wait
		case <-n.probed:
		default:
		}
	}()
	var b [messages.ProbeLen]byte
	messages.Probe{ID: id}.Put(b[:])
	if err := n.Send(to, b[:]); err != nil {
		return netip.AddrPort{}, err
	}
	t := time.NewTimer(2 * time.Second)
	defer t.Stop()
	select {
	case r := <-n.probed:
		return r.Observed, nil
	case <-t.C:
		return netip.AddrPort{}, fmt.Errorf("cloudsim: probe %v: %w", to, ErrTimeout)
	}
}

// Tunnel asks NMS for a tunnel to peer and returns the Path.
func (n *Node) Tunnel(peer string, dup bool) (messages.Path, error) {
	if len(n.Reply.NMS) == 0 {
		return messages.Path{}, fmt.Errorf("cloudsim: tunnel from %s: not logged in", n.FQDN)
	}
	env, err := n.Request(n.Reply.NMS[0], messages.TunnelRequest{PeerFQDN: peer}, dup)
	if err != nil {
		return messages.Path{}, err
	}
	return messages.DecodeBody[messages.Path](env)
}
