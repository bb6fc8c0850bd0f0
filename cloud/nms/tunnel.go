package nms

import (
	"context"
	"crypto/rand"
	"errors"
	"net"
	"net/netip"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/cyphonic/cyphonic-go/actors/retransmit"
	"github.com/cyphonic/cyphonic-go/actors/supervise"
	"github.com/cyphonic/cyphonic-go/cloud/path"
	"github.com/cyphonic/cyphonic-go/cloud/relay"
	"github.com/cyphonic/cyphonic-go/cloud/server/svc"
	"github.com/cyphonic/cyphonic-go/cloud/store"
	"github.com/cyphonic/cyphonic-go/messages"
	"github.com/cyphonic/cyphonic-go/transport/signaling"
)

// Tunnel requests and deliveries on the workers, without an actor each
// (issue 14: an actor per request cost ~300–430 µs of CPU per setup, most
// of it spawning, lifecycle messages and stack growth).
//
// The requester's worker reads both records on the store workers (the
// result comes back to it as tunnelLoaded), checks them, chooses the path
// and mints the relay tickets (with the TRS in this process; one in
// another process is asked for a session, whose answer comes back to the
// worker, which holds the request in relayWait under the tunnel ID). It
// then hands the Direction to the peer's worker as a delivery carrying
// the request (tunnelTx). The peer's worker sends the Direction and
// retransmits it on a timer; the delivery waits in the delivers cache
// under the Direction's message ID, the cloud paper's rule: the peer's ack
// arrives at the peer's worker, which finds the transaction by that ID
// and finishes it there, sealing the Path for the requester with the
// requester's session (the AEADs are safe on any goroutine; only the
// requester's worker mutates its session, and it never touches the
// tunnelTx again). A VIPLookup is one step: read, answer.
//
// What the worker does not do itself goes to a requestTx actor (tx.go):
// a peer homed at another NMS process or whose home is gone (home.go's
// lease watch and adoption), or one missing from the index.

// tunnelTx is one tunnel request (TunnelRequest, TunnelByVIP) or
// VIPLookup. The requester's worker fills it in; from the moment it hands
// it on (to the peer's worker or a requestTx) only the receiver touches it.
type tunnelTx struct {
	id   messages.MsgID // the request's
	typ  messages.MsgType
	st   *replyState
	sess *signaling.Session // the requester's
	fqdn string             // the requester's
	from netip.AddrPort
	conn *net.UDPConn

	peerFQDN     string
	peerVIP      netip.Addr // a TunnelByVIP's: the peer is whoever holds it
	me, peer     store.Node
	peerHomeDown bool // the peer's home NMS lost its lease (home.go)
	decision     path.Decision
	tunnelID     messages.MsgID
	ticketA      *messages.RelayTicket
	ticketB      *messages.RelayTicket
	relayTimer   *time.Timer // while in relayWait
}

// answer seals body as the reply to the request, keeps it for the node's
// retransmissions and sends it. enc is the calling goroutine's encoder.
func (t *tunnelTx) answer(s *Service, enc *messages.Encoder, body messages.Body) {
	pkt, err := t.sess.SealMessage(nil, enc, t.id, "nms", time.Now(), body)
	if err != nil {
		s.log.Warn("nms: seal reply", "err", err)
		s.replies.Delete(t.id)
		return
	}
	t.st.reply.Store(&pkt)
	_, _ = t.conn.WriteToUDPAddrPort(pkt, t.from)
}

// isTunnel reports whether the request sets up a tunnel (a VIPLookup does not).
func (t *tunnelTx) isTunnel() bool {
	return t.typ == messages.MsgTunnelRequest || t.typ == messages.MsgTunnelByVIP
}

// fail answers with an error.
func (t *tunnelTx) fail(s *Service, enc *messages.Encoder, e messages.Error) {
	if t.isTunnel() {
		s.Counters.TunnelErrors.Add(1)
	}
	t.answer(s, enc, e)
}

// Messages of the worker-run tunnel requests and deliveries.
type (
	// tunnelLoaded: a request's records, read on the store workers.
	tunnelLoaded struct {
		t *tunnelTx
		r nodesLoaded
	}
	// relayWaitOver: the TRS did not answer a relay allocation in time.
	relayWaitOver struct{ id messages.MsgID }
	// deliverLocal: a delivery for one of this worker's sessions from
	// another worker (a Direction from a tunnel request).
	deliverLocal struct{ d *delivery }
	// redeliver: a delivery's timer fired (gen: which arming).
	redeliver struct {
		d   *delivery
		gen uint32
	}
	// nodesLoaded: both records of a tunnel request.
	nodesLoaded struct {
		me, peer       store.Node
		meErr, peerErr error
		peerHomeDown   bool // the peer's home NMS lost its lease (home.go)
	}
)

// startRequest runs a tunnel request or VIPLookup that passed the guard
// (st: its claimed reply cache entry): its records are read on the store
// workers.
func (w *worker) startRequest(ctx actor.Context, p *svc.Packet, se *session, env messages.Envelope, st *replyState) {
	t := &tunnelTx{id: env.ID, typ: env.Type, st: st, sess: se.sess, fqdn: se.fqdn, from: p.From, conn: p.Conn}
	// The job captures what it needs by value: it runs on another
	// goroutine and must not read the worker's state.
	stor, fqdn, nms := w.s.cfg.Store, se.fqdn, w.s
	var job func(context.Context) nodesLoaded
	switch env.Type {
	case messages.MsgTunnelRequest:
		req, err := messages.DecodeBody[messages.TunnelRequest](env)
		if err != nil {
			t.fail(w.s, &w.enc, messages.Error{Code: messages.CodeBadRequest, Message: err.Error()})
			return
		}
		t.peerFQDN = req.PeerFQDN
		job = func(bg context.Context) nodesLoaded {
			var r nodesLoaded
			// Both in one read where the store can (bbolt: one
			// transaction).
			r.me, r.meErr, r.peer, r.peerErr = store.GetNodePair(bg, stor, fqdn, req.PeerFQDN)
			if r.meErr != nil {
				r.peer, r.peerErr = store.Node{}, nil // refused on the asker's record alone
				return r
			}
			r.peerHomeDown = r.peerErr == nil && nms.homeDown(bg, r.peer)
			return r
		}
	case messages.MsgTunnelByVIP:
		req, err := messages.DecodeBody[messages.TunnelByVIP](env)
		if err != nil {
			t.fail(w.s, &w.enc, messages.Error{Code: messages.CodeBadRequest, Message: err.Error()})
			return
		}
		t.peerVIP = req.VIP
		w.s.Counters.VIPLookups.Add(1)
		job = func(bg context.Context) nodesLoaded {
			r := loadByVIP(bg, stor, fqdn, req.VIP)
			r.peerHomeDown = r.peerErr == nil && nms.homeDown(bg, r.peer)
			return r
		}
	default: // MsgVIPLookup
		req, err := messages.DecodeBody[messages.VIPLookup](env)
		if err != nil {
			t.fail(w.s, &w.enc, messages.Error{Code: messages.CodeBadRequest, Message: err.Error()})
			return
		}
		t.peerVIP = req.VIP
		w.s.Counters.ReverseLookups.Add(1)
		job = func(bg context.Context) nodesLoaded { return loadByVIP(bg, stor, fqdn, req.VIP) }
	}
	if err := w.s.workers.Do(ctx.Self(), func(bg context.Context) any {
		return tunnelLoaded{t: t, r: job(bg)}
	}); err != nil {
		// Dropped unanswered, its message ID forgotten, so the node's
		// retransmission starts it afresh.
		w.s.Counters.Busy.Add(1)
		w.s.log.Debug("nms: store busy, dropping request", "type", env.Type, "fqdn", se.fqdn, "err", err)
		w.s.replies.Delete(env.ID)
	}
}

// loadByVIP reads a TunnelByVIP's records: the asker's, and the one of the
// node holding vip, found through the store's VIP index. From there on it
// is a tunnel request for that node's FQDN.
func loadByVIP(bg context.Context, st store.Store, fqdn string, vip netip.Addr) nodesLoaded {
	var r nodesLoaded
	if r.me, r.meErr = st.GetNode(bg, fqdn); r.meErr == nil {
		r.peer, r.peerErr = st.LookupVIP(bg, vip)
	}
	return r
}

// onTunnelLoaded goes on with a request once its records are read: answer
// a VIPLookup; for a tunnel, check both nodes, choose the path, allocate
// the fallback relay, then direct the peer.
func (w *worker) onTunnelLoaded(ctx actor.Context, m tunnelLoaded) {
	t, r := m.t, m.r
	if r.meErr != nil {
		w.s.log.Warn("nms: tunnel request: own record", "fqdn", t.fqdn, "err", r.meErr)
		t.fail(w.s, &w.enc, messages.Error{Code: messages.CodeInternal, Retry: true})
		return
	}
	if e := t.check(w.s, r); e != nil {
		t.fail(w.s, &w.enc, *e)
		return
	}
	if t.typ == messages.MsgVIPLookup {
		t.answer(w.s, &w.enc, messages.VIPHolder{VIP: t.peerVIP, FQDN: r.peer.FQDN})
		return
	}
	t.decision = path.Choose(toPath(t.me), toPath(t.peer))
	if t.decision.Kind == path.NoPath {
		t.fail(w.s, &w.enc, messages.Error{Code: messages.CodePeerUnreachable, Message: t.decision.Reason})
		return
	}
	t.tunnelID = messages.NewMsgID()
	if tk := w.s.relayTickets.Load(); t.decision.NeedsRelayTicket() && tk != nil {
		if err := t.mintRelay(w.s, tk); err != nil {
			w.s.log.Warn("nms: relay ticket", "err", err)
			t.fail(w.s, &w.enc, messages.Error{Code: messages.CodeInternal, Retry: true})
			return
		}
		w.direct(ctx, t)
		return
	}
	if t.decision.NeedsRelayTicket() && !w.s.cfg.TRS.IsZero() {
		w.allocRelay(ctx, t)
		return
	}
	if t.decision.Kind == path.Relay {
		t.fail(w.s, &w.enc, messages.Error{Code: messages.CodeNoRelay})
		return
	}
	w.direct(ctx, t)
}

// check takes a request's records: nil if it may go on, else the refusal.
// It sets the request's nodes (and, by VIP, the peer's FQDN).
func (t *tunnelTx) check(s *Service, r nodesLoaded) *messages.Error {
	t.me, t.peer, t.peerHomeDown = r.me, r.peer, r.peerHomeDown
	if t.peerVIP.IsValid() && r.peerErr == nil {
		t.peerFQDN = r.peer.FQDN // by VIP: the holder is the peer
	}
	switch err := r.peerErr; {
	case errors.Is(err, store.ErrNotFound), err == nil && t.isTunnel() && t.peerFQDN == t.fqdn:
		msg := t.peerFQDN
		if t.peerVIP.IsValid() {
			msg = "no node holds " + t.peerVIP.String()
		}
		return &messages.Error{Code: messages.CodeUnknownFQDN, Message: msg}
	case err != nil:
		return &messages.Error{Code: messages.CodeInternal, Retry: true}
	}
	if s.revokedAny(t.me.CertSerial, t.peer.CertSerial) {
		if t.isTunnel() {
			s.log.Warn("nms: tunnel refused: certificate revoked", "from", t.fqdn, "peer", t.peerFQDN)
		}
		return &messages.Error{Code: messages.CodeCertRevoked, Message: "revoked"}
	}
	if t.isTunnel() && (t.peer.Session.ID == 0 || t.peer.HomeNMS == "" || time.Now().After(t.peer.Session.Expires)) {
		return &messages.Error{Code: messages.CodePeerUnreachable, Message: "peer is offline", Retry: true}
	}
	return nil
}

// revokedAny reports whether any of serials is on the deny list as the
// cloud holds it now (not the list the workers last polled: a tunnel to or
// from a node revoked a moment ago is refused at once). With a DenyList it
// reads the list once for all of them (an atomic load: cloud/server's
// list is refreshed off this path) and looks the serials up as they are
// written, without parsing them.
func (s *Service) revokedAny(serials ...string) bool {
	if !s.listGiven {
		for _, x := range serials {
			if s.cfg.Revoked(x) {
				return true
			}
		}
		return false
	}
	dl := s.cfg.DenyList().DenyList()
	for _, x := range serials {
		if dl.ContainsSerial(x) {
			return true
		}
	}
	return false
}

// mintRelay makes the tunnel's relay tickets (the path itself, or the
// fallback) under the TRS's ticket key: no message to the TRS, which
// creates the session only when a side binds (issue 14: one session per
// tunnel set up filled its table above ~550 setups/s).
func (t *tunnelTx) mintRelay(s *Service, tk *relay.Tickets) error {
	exp := time.Now().Add(relayTicketTTL)
	a, b, err := tk.Mint(t.me.FQDN, t.peer.FQDN, exp)
	if err != nil {
		return err
	}
	exp = time.Unix(exp.Unix(), 0) // the tokens carry whole seconds
	t.ticketA = ticketFor(s.cfg.TRSAddrs, a.Token, a.Key, exp.UnixNano(), t.me)
	t.ticketB = ticketFor(s.cfg.TRSAddrs, b.Token, b.Key, exp.UnixNano(), t.peer)
	return nil
}

// allocRelay asks the TRS for the tunnel's relay session (the path
// itself, or the fallback a direct or punched path's nodes add after a
// couple of seconds). Its answer comes back to this worker by the tunnel
// ID.
func (w *worker) allocRelay(ctx actor.Context, t *tunnelTx) {
	alloc := messages.RelayAlloc{Session: t.tunnelID, FQDNA: t.me.FQDN, FQDNB: t.peer.FQDN, Expires: time.Now().Add(relayTicketTTL).UnixNano()}
	// Tokens name the sides; the bind keys, one per side, are what
	// lets a node move its side's endpoint at the TRS. Each node gets
	// only its own key, inside its sealed Path or Direction.
	rand.Read(alloc.TokenA[:])
	rand.Read(alloc.TokenB[:])
	rand.Read(alloc.KeyA[:])
	rand.Read(alloc.KeyB[:])
	f, err := svc.NewFrame("", t.tunnelID, "nms", time.Now(), alloc)
	if err != nil {
		t.fail(w.s, &w.enc, messages.Error{Code: messages.CodeInternal})
		return
	}
	t.ticketA = ticketFor(w.s.cfg.TRSAddrs, alloc.TokenA, alloc.KeyA, alloc.Expires, t.me)
	t.ticketB = ticketFor(w.s.cfg.TRSAddrs, alloc.TokenB, alloc.KeyB, alloc.Expires, t.peer)
	w.relayWait[t.tunnelID] = t
	if err := w.s.cfg.Link.Request(ctx.Self(), w.s.cfg.TRS, f); err != nil {
		// No way to the TRS: as if it refused the allocation.
		w.s.log.Warn("nms: relay allocation", "trs", w.s.cfg.TRS.String(), "err", err)
		w.onRelayReply(ctx, relayRefused(t.tunnelID))
		return
	}
	root, self, id := ctx.ActorSystem().Root, ctx.Self(), t.tunnelID
	t.relayTimer = time.AfterFunc(relayTimeout, func() { root.Send(self, relayWaitOver{id: id}) })
}

// onRelayReply goes on with the request waiting for the TRS's answer.
func (w *worker) onRelayReply(ctx actor.Context, env messages.Envelope) {
	t, ok := w.relayWait[env.ID]
	if !ok {
		return // timed out already
	}
	delete(w.relayWait, env.ID)
	if t.relayTimer != nil {
		t.relayTimer.Stop()
	}
	rep, err := messages.DecodeBody[messages.RelayAllocReply](env)
	if err != nil || !rep.OK {
		if t.decision.Kind == path.Relay {
			t.fail(w.s, &w.enc, messages.Error{Code: messages.CodeNoRelay, Retry: true})
			return
		}
		t.ticketA, t.ticketB = nil, nil // fallback only: go on without
	}
	w.direct(ctx, t)
}

// onRelayWaitOver fails a request whose relay allocation went unanswered.
func (w *worker) onRelayWaitOver(m relayWaitOver) {
	t, ok := w.relayWait[m.id]
	if !ok {
		return
	}
	delete(w.relayWait, m.id)
	t.fail(w.s, &w.enc, messages.Error{Code: messages.CodePeerUnreachable, Message: "timed out", Retry: true})
}

// direct hands the Direction to the peer's worker when the peer is homed
// here and in the index; anything else (another NMS process, a home that
// is gone) goes on in a requestTx.
func (w *worker) direct(ctx actor.Context, t *tunnelTx) {
	if !t.peerHomeDown && t.peer.HomeNMS == w.s.cfg.Home {
		if id, ok := w.s.index.get(t.peer.FQDN); ok {
			w.directLocal(ctx, t, id)
			return
		}
	}
	tx := &requestTx{s: w.s, tunnelTx: t}
	if _, err := supervise.Spawn(ctx, t.typ.String(), "tx-"+t.id.String(), actor.PropsFromProducer(func() actor.Actor { return tx })); err != nil {
		w.s.replies.Delete(t.id)
		w.s.log.Warn("nms: spawn transaction", "err", err)
	}
}

// directLocal sends the Direction for t to the worker holding the peer's
// session id.
func (w *worker) directLocal(ctx actor.Context, t *tunnelTx, id uint32) {
	// The body is encoded once, straight into the sealed packet
	// (startDelivery), not into an envelope first.
	env := messages.Envelope{Version: messages.Version, Type: messages.MsgDirection, ID: messages.NewMsgID(), Sender: "nms"}
	d := &delivery{env: env, body: messages.Direction(t.pathFor(false)), fqdn: t.peer.FQDN, sid: id, tunnel: t}
	if shard := w.s.shard(id); shard.Id == ctx.Self().Id {
		w.startDelivery(ctx, d)
	} else {
		ctx.Send(shard, deliverLocal{d: d})
	}
}

// finishTunnel ends a tunnel request with its Direction's answer: ack is
// the peer's (a DirectionAck or an Error), nil if it never answered.
func (w *worker) finishTunnel(t *tunnelTx, ack *messages.Envelope) {
	switch {
	case ack == nil:
		t.fail(w.s, &w.enc, messages.Error{Code: messages.CodePeerUnreachable, Message: "peer did not answer", Retry: true})
	case ack.Type == messages.MsgDirectionAck:
		w.s.Counters.Tunnels.Add(1)
		w.s.tunnelUp(t.me.FQDN, t.peer.FQDN, t.decision.Kind == path.Relay)
		t.answer(w.s, &w.enc, messages.Path(t.pathFor(true)))
	default:
		e, err := messages.DecodeBody[messages.Error](*ack)
		if err != nil {
			e = messages.Error{Code: messages.CodePeerUnreachable}
		}
		t.fail(w.s, &w.enc, e)
	}
}

func toPath(n store.Node) path.Locator {
	return path.Locator{
		FQDN: n.FQDN, Observed4: n.Locator.Observed4, Observed6: n.Locator.Observed6,
		Locals: n.Locator.Locals, NAT4: n.Locator.NAT4, NAT6: n.Locator.NAT6,
		HasIPv4: n.Locator.HasIPv4, HasIPv6: n.Locator.HasIPv6,
	}
}

// ticketFor is n's side of a relay session. It names the TRS only in the
// address families NMS has observed n using: a node on an IPv6-only
// network still binds a wildcard IPv4 socket, and given a TRS4 it would
// try it first and never reach the relay (the IPv4-only to IPv6-only
// case, where the relay is the only path). If NMS has observed neither
// family (it always has one), both go in.
func ticketFor(trs []netip.AddrPort, tok messages.RelayToken, key messages.RelayBindKey, exp int64, n store.Node) *messages.RelayTicket {
	tk := &messages.RelayTicket{Token: tok, Expires: exp, BindKey: key}
	has4, has6 := n.Locator.Observed4.IsValid(), n.Locator.Observed6.IsValid()
	if !has4 && !has6 {
		has4, has6 = true, true
	}
	for _, a := range trs {
		if a.Addr().Unmap().Is4() {
			if has4 {
				tk.TRS4 = a
			}
		} else if has6 {
			tk.TRS6 = a
		}
	}
	return tk
}

var pathKinds = map[path.Kind]messages.PathKind{path.Direct: messages.PathDirect, path.HolePunch: messages.PathHolePunch, path.Relay: messages.PathRelay}

func (t *tunnelTx) pathFor(a bool) messages.PathInfo {
	d := t.decision
	pi := messages.PathInfo{Kind: pathKinds[d.Kind], TunnelID: t.tunnelID}
	if a { // what the requester (side A) is told about the peer
		pi.PeerFQDN, pi.PeerVIP6, pi.PeerVIP4 = t.peer.FQDN, t.peer.VIP6, t.peer.VIP4
		pi.Endpoints, pi.Relay = d.AEndpoints, t.ticketA
		pi.Initiator = initiates(d, true)
	} else {
		pi.PeerFQDN, pi.PeerVIP6, pi.PeerVIP4 = t.me.FQDN, t.me.VIP6, t.me.VIP4
		pi.Endpoints, pi.Relay = d.BEndpoints, t.ticketB
		pi.Initiator = initiates(d, false)
	}
	if len(pi.Endpoints) > messages.MaxAddrs {
		pi.Endpoints = pi.Endpoints[:messages.MaxAddrs]
	}
	return pi
}

// initiates reports whether side A (a) or B (!a) sends the handshake
// init. Hole punching and relays need both: a punched path opens only once
// each side's packet has left its own NAT toward the other (a lone
// initiator's init is dropped at the peer's NAT until the first attempt
// times out), and on a relay each side's first frame is what binds its
// token to its address at the TRS, without which the TRS has nowhere to
// forward the other side's init. The nodes break the tie when both inits
// arrive (the smaller FQDN's wins). A direct path keeps one initiator (A
// for BothSides): the peer is reachable as is.
func initiates(d path.Decision, a bool) bool {
	switch {
	case d.Kind == path.Relay, d.Kind == path.HolePunch && d.Initiator == path.BothSides:
		return true
	case d.Initiator == path.SideB:
		return !a
	}
	return a
}

// delivery is one message NMS sends to one of its nodes and retransmits
// with backoff (the Retry schedule) until the node answers with the same
// message ID, run by the worker holding the node's session: no actor. It
// waits in the delivers cache under that ID, where the node's answer
// finds it. What it was for decides what its end does: a Direction
// finishes its tunnel request, a deny-list chunk moves its push on, a
// delivery another actor asked for (asker) answers that actor.
type delivery struct {
	env   messages.Envelope // with body set: the header only
	body  messages.Body     // encoded into the packet by startDelivery (then nil), or nil: env.Body is
	fqdn  string
	sid   uint32 // the session it goes to
	sess  *signaling.Session
	to    netip.AddrPort
	conn  *net.UDPConn
	asker svc.Ref // zero: nobody waits for the answer

	tunnel *tunnelTx // a Direction's request, or nil
	push   *denyPush // a deny-list chunk's push, or nil

	pkt   []byte // sealed by the first send, resent unchanged
	sends int
	next  int64 // Unix ns: the next send (or, after the last, the end)
	gen   uint32
	timer *time.Timer
	done  bool
}

// deliver takes a delivery of a Direction or PeerUpdate through the root
// (from a requestTx or another NMS process, m.f.ReplyTo waiting for the
// answer, or none).
func (w *worker) deliver(ctx actor.Context, m deliverReq) {
	f := m.f
	d := &delivery{env: f.Envelope, fqdn: f.To, sid: m.id, asker: f.ReplyTo}
	if f.Envelope.Type == messages.MsgDirection {
		if dir, err := messages.DecodeBody[messages.Direction](f.Envelope); err == nil {
			defer w.s.tunnelUp(f.To, dir.PeerFQDN, dir.Kind == messages.PathRelay)
		}
	}
	w.startDelivery(ctx, d)
}

// startDelivery sends d to its session on this worker, if the worker
// still holds it, and arms its retransmission.
func (w *worker) startDelivery(ctx actor.Context, d *delivery) {
	se := w.sessions[d.sid]
	if se == nil || se.fqdn != d.fqdn || se.conn == nil {
		w.s.Counters.DeliverFailed.Add(1)
		w.endDelivery(ctx, d, nil)
		return
	}
	// A Direction of a request here links the pair when the peer acks
	// (finishTunnel); one from elsewhere was linked by deliver.
	d.sess, d.to, d.conn = se.sess, se.from, se.conn
	if _, loaded, err := w.s.delivers.PutIfAbsent(d.env.ID, d, dedupTTL); err != nil || loaded {
		w.s.log.Debug("nms: delivery not started", "id", d.env.ID, "running", loaded, "err", err)
		if !loaded {
			w.s.Counters.DeliverFailed.Add(1)
			w.endDelivery(ctx, d, nil)
		}
		return
	}
	// Encoded into the worker's encoder and sealed at once: the sealed
	// packet is the only copy kept (for the retransmissions).
	now := time.Now()
	var err error
	if d.body != nil {
		d.pkt, err = d.sess.SealMessage(nil, &w.enc, d.env.ID, d.env.Sender, now, d.body)
		d.body = nil
	} else {
		var plain []byte
		if plain, err = w.enc.Encode(d.env); err == nil {
			d.pkt = d.sess.Seal(nil, plain)
		}
	}
	if err != nil {
		w.s.log.Warn("nms: encode delivery", "type", d.env.Type, "err", err)
		w.s.delivers.Delete(d.env.ID)
		w.endDelivery(ctx, d, nil)
		return
	}
	w.sendDelivery(ctx, d, now)
}

// sendDelivery sends d once more and arms the timer for the next send (or,
// after the last, for giving up).
func (w *worker) sendDelivery(ctx actor.Context, d *delivery, now time.Time) {
	_, _ = d.conn.WriteToUDPAddrPort(d.pkt, d.to)
	d.sends++
	wait, ok := w.s.cfg.Retry.Delay(d.sends)
	if !ok {
		wait = retransmit.LastWait(w.s.cfg.Retry)
	}
	d.next = now.Add(wait).UnixNano()
	w.armDelivery(ctx, d, wait)
}

// armDelivery arms d's timer. A Direction looks at the peer's session
// every sessionCheckEvery meanwhile (onRedeliver).
func (w *worker) armDelivery(ctx actor.Context, d *delivery, wait time.Duration) {
	if d.tunnel != nil {
		wait = min(wait, sessionCheckEvery)
	}
	d.gen++
	root, self, m := ctx.ActorSystem().Root, ctx.Self(), redeliver{d: d, gen: d.gen}
	d.timer = time.AfterFunc(wait, func() { root.Send(self, m) })
}

// onRedeliver resends d when its time has come, gives up after the last
// send, and moves a Direction to the peer's new session if it logged in
// again meanwhile: a peer never answers a Direction sealed under its old
// key (a failover, where this NMS adopted the peer's old session a moment
// before its new login reached it).
func (w *worker) onRedeliver(ctx actor.Context, m redeliver) {
	d := m.d
	if d.done || m.gen != d.gen {
		return
	}
	if t := d.tunnel; t != nil {
		if id, ok := w.s.index.get(d.fqdn); ok && id != d.sid {
			w.s.log.Debug("nms: peer has a new session, directing it there", "peer", d.fqdn, "old", d.sid, "new", id)
			d.done = true
			w.s.delivers.Delete(d.env.ID)
			w.directLocal(ctx, t, id)
			return
		}
	}
	now := time.Now()
	if left := time.Duration(d.next - now.UnixNano()); left > 0 {
		w.armDelivery(ctx, d, left)
		return
	}
	if d.sends >= w.s.cfg.Retry.Attempts {
		d.done = true
		w.s.delivers.Delete(d.env.ID)
		w.s.Counters.DeliverFailed.Add(1)
		w.s.log.Warn("nms: node did not acknowledge", "fqdn", d.fqdn, "type", d.env.Type, "tries", d.sends)
		w.endDelivery(ctx, d, nil)
		return
	}
	w.sendDelivery(ctx, d, now)
}

// onDeliveryAck takes the node's answer (from se, on this worker) to d.
func (w *worker) onDeliveryAck(ctx actor.Context, d *delivery, se *session, env messages.Envelope) {
	if d.done || d.fqdn != se.fqdn {
		return
	}
	d.done = true
	if d.timer != nil {
		d.timer.Stop()
	}
	w.s.delivers.Delete(env.ID)
	w.s.Counters.Delivered.Add(1)
	w.endDelivery(ctx, d, &env)
}

// endDelivery acts on d's end: ack is the node's answer, nil if none.
func (w *worker) endDelivery(ctx actor.Context, d *delivery, ack *messages.Envelope) {
	switch {
	case d.tunnel != nil:
		w.finishTunnel(d.tunnel, ack)
	case d.push != nil:
		w.onPushed(ctx, d.push, ack != nil)
	case !d.asker.IsZero():
		var f []byte
		var err error
		if ack != nil {
			f, err = svc.Frame{Envelope: *ack}.Encode()
		} else {
			f, err = svc.NewFrame("", d.env.ID, "nms", time.Now(), messages.Error{Code: messages.CodePeerUnreachable, Message: "peer did not answer", Retry: true})
		}
		if err == nil {
			if err := w.s.cfg.Link.Send(d.asker, f); err != nil {
				w.s.log.Debug("nms: answer delivery", "to", d.asker.String(), "err", err)
			}
		}
	}
}

// Deny-list pushes are windowed: a push has at most denyWindow chunks in
// flight to its node (the next goes out when one is acknowledged), and a
// worker runs at most maxPushes pushes at a time. A node left out is
// offered the list with its next keepalive or registration
// (offerDenyList), so a new list reaches every node within a keepalive
// period or so without a burst of one delivery per chunk per node.
const (
	denyWindow = 4
	maxPushes  = 512
)

// denyPush is one deny list's push to one node, on the node's worker.
type denyPush struct {
	se       *session
	number   uint64
	chunks   []messages.DenyList
	next     int // the next chunk to send
	inFlight int
	failed   bool // a chunk went unacknowledged: the rest are not sent
}

// startPush pushes the worker's deny list to se, if a push slot is free.
func (w *worker) startPush(ctx actor.Context, se *session, now time.Time) bool {
	if w.pushes >= maxPushes {
		return false
	}
	if len(w.crlChunks) == 0 || w.crlChunks[0].Number != w.crl.Number {
		w.crlChunks = messages.DenyListChunks(w.crl.Number, w.crl.DER)
	}
	if len(w.crlChunks) == 0 {
		return false
	}
	if old := se.push; old != nil {
		old.failed = true // superseded: its chunks in flight end on their own
	}
	w.pushes++
	p := &denyPush{se: se, number: w.crl.Number, chunks: w.crlChunks}
	se.push = p
	for p.next < len(p.chunks) && p.inFlight < denyWindow && !p.failed {
		w.pushChunk(ctx, p, now)
	}
	return true
}

// pushChunk delivers p's next chunk, retransmitted until the node acks it;
// the node puts the chunks together and checks the CA's signature.
func (w *worker) pushChunk(ctx actor.Context, p *denyPush, now time.Time) {
	env, err := messages.NewEnvelope(messages.NewMsgID(), "nms", now, p.chunks[p.next])
	p.next++
	p.inFlight++
	if err != nil {
		w.s.log.Warn("nms: deny list envelope", "err", err)
		w.onPushed(ctx, p, false)
		return
	}
	w.startDelivery(ctx, &delivery{env: env, fqdn: p.se.fqdn, sid: p.se.id, push: p})
}

// onPushed moves p on after one of its chunks was acknowledged (ok) or
// given up on.
func (w *worker) onPushed(ctx actor.Context, p *denyPush, ok bool) {
	p.inFlight--
	if !ok {
		p.failed = true
	}
	if !p.failed && p.next < len(p.chunks) {
		w.pushChunk(ctx, p, time.Now())
		return
	}
	if p.inFlight == 0 {
		w.pushes--
		if p.se.push == p {
			p.se.push = nil
		}
	}
}
