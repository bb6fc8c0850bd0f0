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
	"github.com/cyphonic/cyphonic-go/cloud/path"
	"github.com/cyphonic/cyphonic-go/cloud/server/svc"
	"github.com/cyphonic/cyphonic-go/cloud/store"
	"github.com/cyphonic/cyphonic-go/messages"
	"github.com/cyphonic/cyphonic-go/transport/signaling"
)

// How long a tunnel transaction waits for the TRS and for the peer.
const (
	relayTimeout = 5 * time.Second
	// relayTicketTTL only caps a relay session's life: it lives while its
	// nodes keep sending authenticated binds (once a keepalive period),
	// and the TRS sweeps it an idle timeout (minutes) after they stop.
	relayTicketTTL = 24 * time.Hour
)

// tunnelStage is where a tunnel request is: which answer it waits for.
type tunnelStage uint8

const (
	stageDeciding tunnelStage = iota // loading the nodes, choosing the path
	stageRelay                       // waiting for the TRS's RelayAllocReply
	stagePeer                        // waiting for the peer's DirectionAck (through its NMS)
	stageAdopting                    // the peer's home is gone: making this NMS its home (home.go)
)

// requestTx answers one tunnel request (TunnelRequest, TunnelByVIP) or
// VIPLookup from a node; registrations and keepalives run on the worker
// itself (ka.go), logouts too (nms.go). It sends
// nothing twice: the node retransmits the request, answered from the reply
// cache, and the peer's NMS retransmits a Direction (deliverTx).
type requestTx struct {
	s    *Service
	st   *replyState
	env  messages.Envelope
	se   session // a copy: the worker owns the original
	from netip.AddrPort
	conn *net.UDPConn

	// tunnel request state
	peerFQDN string
	peerVIP  netip.Addr // a TunnelByVIP's: the peer is whoever holds it
	me, peer store.Node
	decision path.Decision
	tunnelID messages.MsgID
	ticketA  *messages.RelayTicket
	ticketB  *messages.RelayTicket
	stage    tunnelStage
	enc      messages.Encoder
	// The peer's home NMS: known down (its lease lapsed), and the watch
	// on it while the request waits for it (home.go).
	peerHomeDown bool
	homeStage    int
	adoptedID    uint32 // the peer's session this NMS adopted (home.go), or 0
	adoptTries   int    // record re-reads of a peer with no live session (home.go)
	deliveredTo  uint32 // the peer's session the Direction went to, when homed here
	homeTimer    *time.Timer
}

func (t *requestTx) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *actor.Started:
		t.start(ctx)
	case *actor.Stopping:
		if t.homeTimer != nil {
			t.homeTimer.Stop()
		}
	case homeCheck:
		t.onHomeCheck(ctx, m)
	case homeChecked:
		t.onHomeChecked(ctx, m)
	case adopted:
		t.onAdopted(ctx, m)
	case readopt:
		if t.stage == stageAdopting {
			t.adopt(ctx)
		}
	case nodesLoaded:
		t.onNodes(ctx, m)
	case *actor.ReceiveTimeout:
		t.fail(ctx, messages.Error{Code: messages.CodePeerUnreachable, Message: "timed out", Retry: true})
	default:
		f, ok, err := svc.DecodeFrame(m)
		if !ok {
			return
		}
		if err != nil {
			t.fail(ctx, messages.Error{Code: messages.CodeInternal})
			return
		}
		t.onFrame(ctx, f.Envelope)
	}
}

// Results of a request's store jobs (run on the store workers, never on
// the actor's run loop).
type (
	// nodesLoaded: both records of a tunnel request.
	nodesLoaded struct {
		me, peer       store.Node
		meErr, peerErr error
		peerHomeDown   bool // the peer's home NMS lost its lease (home.go)
	}
)

func (t *requestTx) start(ctx actor.Context) {
	// The jobs capture what they need by value: they run on another
	// goroutine and must not read the actor's fields.
	st, fqdn := t.s.cfg.Store, t.se.fqdn
	nms := t.s // for homeDown, safe on the workers (home.go)
	switch t.env.Type {
	case messages.MsgTunnelRequest:
		req, err := messages.DecodeBody[messages.TunnelRequest](t.env)
		if err != nil {
			t.fail(ctx, messages.Error{Code: messages.CodeBadRequest, Message: err.Error()})
			return
		}
		t.peerFQDN = req.PeerFQDN
		t.offload(ctx, func(bg context.Context) any {
			var r nodesLoaded
			if r.me, r.meErr = st.GetNode(bg, fqdn); r.meErr == nil {
				r.peer, r.peerErr = st.GetNode(bg, req.PeerFQDN)
			}
			r.peerHomeDown = r.peerErr == nil && nms.homeDown(bg, r.peer)
			return r
		})
	case messages.MsgTunnelByVIP:
		req, err := messages.DecodeBody[messages.TunnelByVIP](t.env)
		if err != nil {
			t.fail(ctx, messages.Error{Code: messages.CodeBadRequest, Message: err.Error()})
			return
		}
		t.peerVIP = req.VIP
		t.s.Counters.VIPLookups.Add(1)
		t.offload(ctx, func(bg context.Context) any {
			r := loadByVIP(bg, st, fqdn, req.VIP)
			r.peerHomeDown = r.peerErr == nil && nms.homeDown(bg, r.peer)
			return r
		})
	case messages.MsgVIPLookup:
		req, err := messages.DecodeBody[messages.VIPLookup](t.env)
		if err != nil {
			t.fail(ctx, messages.Error{Code: messages.CodeBadRequest, Message: err.Error()})
			return
		}
		t.peerVIP = req.VIP
		t.s.Counters.ReverseLookups.Add(1)
		t.offload(ctx, func(bg context.Context) any {
			return loadByVIP(bg, st, fqdn, req.VIP)
		})
	}
}

// lookedUp answers a VIPLookup from its records: the holder's FQDN, with
// the same refusals as a TunnelByVIP's (an unknown VIP, a revoked holder
// or asker), and nothing set up.
func (t *requestTx) lookedUp(ctx actor.Context, m nodesLoaded) {
	switch err := m.peerErr; {
	case errors.Is(err, store.ErrNotFound):
		t.fail(ctx, messages.Error{Code: messages.CodeUnknownFQDN, Message: "no node holds " + t.peerVIP.String()})
		return
	case err != nil:
		t.fail(ctx, messages.Error{Code: messages.CodeInternal, Retry: true})
		return
	}
	if t.s.cfg.Revoked(m.me.CertSerial) || t.s.cfg.Revoked(m.peer.CertSerial) {
		t.fail(ctx, messages.Error{Code: messages.CodeCertRevoked, Message: "revoked"})
		return
	}
	t.reply(ctx, messages.VIPHolder{VIP: t.peerVIP, FQDN: m.peer.FQDN})
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

// offload runs job on the store workers. When they are saturated the
// request is dropped without an answer, its message ID forgotten, so the
// node's retransmission starts it afresh.
func (t *requestTx) offload(ctx actor.Context, job svc.Job) {
	if err := t.s.workers.Do(ctx.Self(), job); err != nil {
		t.s.Counters.Busy.Add(1)
		t.s.log.Debug("nms: store busy, dropping request", "type", t.env.Type, "fqdn", t.se.fqdn, "err", err)
		t.s.replies.Delete(t.env.ID)
		ctx.Stop(ctx.Self())
	}
}

func toPath(n store.Node) path.Locator {
	return path.Locator{
		FQDN: n.FQDN, Observed4: n.Locator.Observed4, Observed6: n.Locator.Observed6,
		Locals: n.Locator.Locals, NAT4: n.Locator.NAT4, NAT6: n.Locator.NAT6,
		HasIPv4: n.Locator.HasIPv4, HasIPv6: n.Locator.HasIPv6,
	}
}

// onNodes goes on with a tunnel request once both records are read: check
// both nodes, choose the path, allocate a relay if needed, direct the peer
// through its home NMS, then answer with the path.
func (t *requestTx) onNodes(ctx actor.Context, m nodesLoaded) {
	if m.meErr != nil {
		t.s.log.Warn("nms: tunnel request: own record", "fqdn", t.se.fqdn, "err", m.meErr)
		t.fail(ctx, messages.Error{Code: messages.CodeInternal, Retry: true})
		return
	}
	if t.env.Type == messages.MsgVIPLookup {
		t.lookedUp(ctx, m)
		return
	}
	t.me, t.peer, t.peerHomeDown = m.me, m.peer, m.peerHomeDown
	if t.peerVIP.IsValid() && m.peerErr == nil {
		t.peerFQDN = m.peer.FQDN // by VIP: the holder is the peer
	}
	switch err := m.peerErr; {
	case errors.Is(err, store.ErrNotFound), err == nil && t.peerFQDN == t.se.fqdn:
		msg := t.peerFQDN
		if t.peerVIP.IsValid() {
			msg = "no node holds " + t.peerVIP.String()
		}
		t.fail(ctx, messages.Error{Code: messages.CodeUnknownFQDN, Message: msg})
		return
	case err != nil:
		t.fail(ctx, messages.Error{Code: messages.CodeInternal, Retry: true})
		return
	}
	if t.s.cfg.Revoked(t.me.CertSerial) || t.s.cfg.Revoked(t.peer.CertSerial) {
		t.s.log.Warn("nms: tunnel refused: certificate revoked", "from", t.se.fqdn, "peer", t.peerFQDN)
		t.fail(ctx, messages.Error{Code: messages.CodeCertRevoked, Message: "revoked"})
		return
	}
	if t.peer.Session.ID == 0 || t.peer.HomeNMS == "" || time.Now().After(t.peer.Session.Expires) {
		t.fail(ctx, messages.Error{Code: messages.CodePeerUnreachable, Message: "peer is offline", Retry: true})
		return
	}
	t.decision = path.Choose(toPath(t.me), toPath(t.peer))
	if t.decision.Kind == path.NoPath {
		t.fail(ctx, messages.Error{Code: messages.CodePeerUnreachable, Message: t.decision.Reason})
		return
	}
	t.tunnelID = messages.NewMsgID()
	if t.decision.NeedsRelayTicket() && !t.s.cfg.TRS.IsZero() {
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
			t.fail(ctx, messages.Error{Code: messages.CodeInternal})
			return
		}
		t.ticketA = t.ticket(alloc.TokenA, alloc.KeyA, alloc.Expires, t.me)
		t.ticketB = t.ticket(alloc.TokenB, alloc.KeyB, alloc.Expires, t.peer)
		t.stage = stageRelay
		if err := t.s.cfg.Link.Request(ctx.Self(), t.s.cfg.TRS, f); err != nil {
			// No way to the TRS: as if it refused the allocation.
			t.s.log.Warn("nms: relay allocation", "trs", t.s.cfg.TRS.String(), "err", err)
			t.onFrame(ctx, relayRefused(t.tunnelID))
			return
		}
		ctx.SetReceiveTimeout(relayTimeout)
		return
	}
	if t.decision.Kind == path.Relay {
		t.fail(ctx, messages.Error{Code: messages.CodeNoRelay})
		return
	}
	t.direct(ctx)
}

// ticket is n's side of a relay session. It names the TRS only in the
// address families NMS has observed n using: a node on an IPv6-only
// network still binds a wildcard IPv4 socket, and given a TRS4 it would
// try it first and never reach the relay (the IPv4-only to IPv6-only
// case, where the relay is the only path). If NMS has observed neither
// family (it always has one), both go in.
func (t *requestTx) ticket(tok messages.RelayToken, key messages.RelayBindKey, exp int64, n store.Node) *messages.RelayTicket {
	tk := &messages.RelayTicket{Token: tok, Expires: exp, BindKey: key}
	has4, has6 := n.Locator.Observed4.IsValid(), n.Locator.Observed6.IsValid()
	if !has4 && !has6 {
		has4, has6 = true, true
	}
	for _, a := range t.s.cfg.TRSAddrs {
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

func (t *requestTx) pathFor(a bool) messages.PathInfo {
	d := t.decision
	kind := map[path.Kind]messages.PathKind{path.Direct: messages.PathDirect, path.HolePunch: messages.PathHolePunch, path.Relay: messages.PathRelay}[d.Kind]
	pi := messages.PathInfo{Kind: kind, TunnelID: t.tunnelID}
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

// direct asks the peer's home NMS to deliver the Direction: when that is
// this NMS and it holds the peer's session, straight to the peer's worker
// (no frame to encode and decode, no hop through the root); otherwise
// through the peer's home NMS root, which finds the worker itself.
func (t *requestTx) direct(ctx actor.Context) {
	if t.peerHomeDown {
		t.adopt(ctx)
		return
	}
	env, err := messages.NewEnvelope(messages.NewMsgID(), "nms", time.Now(), messages.Direction(t.pathFor(false)))
	if err != nil {
		t.fail(ctx, messages.Error{Code: messages.CodeInternal})
		return
	}
	t.stage = stagePeer
	// Delivery retransmits for about DefaultRetry's span; wait a bit longer.
	wait := t.s.cfg.Retry.Total() + 2*time.Second
	if t.peer.HomeNMS == t.s.cfg.Home {
		id, ok := t.s.index.get(t.peer.FQDN)
		if !ok && t.adoptedID != 0 {
			// Just adopted (home.go): the adoptSession sent to the
			// peer's worker arrives before this delivery, so the worker
			// holds the session by then even if the index does not yet.
			id, ok = t.adoptedID, true
		}
		if ok {
			link := t.s.cfg.Link
			f := svc.Frame{To: t.peer.FQDN, Envelope: env, ReplyTo: svc.Ref{Process: link.Addr(), Service: link.Service(), ID: ctx.Self().Id}}
			ctx.Send(t.s.shard(id), deliverReq{f: f, id: id})
			ctx.SetReceiveTimeout(wait)
			t.deliveredTo = id
			t.watchHome(ctx)
			return
		}
	}
	f, err := svc.Frame{To: t.peer.FQDN, Envelope: env}.Encode()
	if err != nil {
		t.fail(ctx, messages.Error{Code: messages.CodeInternal})
		return
	}
	if err := t.s.cfg.Link.Request(ctx.Self(), svc.RootOf(t.peer.HomeNMS, svc.NMS), f); err != nil {
		t.s.log.Warn("nms: direct peer", "peer", t.peer.FQDN, "home", t.peer.HomeNMS, "err", err)
		t.fail(ctx, messages.Error{Code: messages.CodePeerUnreachable, Message: "peer's NMS unreachable", Retry: true})
		return
	}
	ctx.SetReceiveTimeout(wait)
	t.watchHome(ctx)
}

// relayRefused is the TRS's "no" to an allocation, for when the TRS cannot
// be reached at all.
func relayRefused(id messages.MsgID) messages.Envelope {
	env, _ := messages.NewEnvelope(id, "trs", time.Now(), messages.RelayAllocReply{OK: false})
	return env
}

func (t *requestTx) onFrame(ctx actor.Context, env messages.Envelope) {
	switch {
	case t.stage == stageRelay && env.Type == messages.MsgRelayAllocReply:
		rep, err := messages.DecodeBody[messages.RelayAllocReply](env)
		if err != nil || !rep.OK {
			if t.decision.Kind == path.Relay {
				t.fail(ctx, messages.Error{Code: messages.CodeNoRelay, Retry: true})
				return
			}
			t.ticketA, t.ticketB = nil, nil // fallback only: go on without
		}
		t.direct(ctx)
	case t.stage == stagePeer && env.Type == messages.MsgDirectionAck:
		ctx.SetReceiveTimeout(0)
		t.s.Counters.Tunnels.Add(1)
		t.s.tunnelUp(t.me.FQDN, t.peer.FQDN, t.decision.Kind == path.Relay)
		t.reply(ctx, messages.Path(t.pathFor(true)))
	case t.stage == stagePeer && env.Type == messages.MsgError:
		e, err := messages.DecodeBody[messages.Error](env)
		if err != nil {
			e = messages.Error{Code: messages.CodePeerUnreachable}
		}
		t.fail(ctx, e)
	}
}

func (t *requestTx) fail(ctx actor.Context, e messages.Error) {
	if t.env.Type == messages.MsgTunnelRequest || t.env.Type == messages.MsgTunnelByVIP {
		t.s.Counters.TunnelErrors.Add(1)
	}
	t.reply(ctx, e)
}

// reply seals body with the request's ID, caches it for duplicates, sends
// it and ends the transaction.
func (t *requestTx) reply(ctx actor.Context, body messages.Body) {
	ctx.SetReceiveTimeout(0)
	pkt, err := t.se.sess.SealMessage(nil, &t.enc, t.env.ID, "nms", time.Now(), body)
	if err != nil {
		t.s.log.Warn("nms: seal reply", "err", err)
		t.s.replies.Delete(t.env.ID)
	} else {
		t.st.reply.Store(&pkt)
		_, _ = t.conn.WriteToUDPAddrPort(pkt, t.from)
	}
	ctx.Stop(ctx.Self())
}

// deliverTx sends one message to one of this NMS's nodes, retransmitting
// with backoff (it runs in a retransmit.Tx) until the node answers with the
// same message ID.
type deliverTx struct {
	s     *Service
	env   messages.Envelope
	sess  *signaling.Session
	to    netip.AddrPort
	conn  *net.UDPConn
	asker svc.Ref // zero: nobody waits for the answer
	fqdn  string

	pkt   []byte // sealed by the first send, resent unchanged
	sends int
	ack   *messages.Envelope // the node's answer
}

// props runs d in a retransmit.Tx.
func (d *deliverTx) props() *actor.Props {
	return actor.PropsFromProducer(func() actor.Actor {
		return retransmit.NewTx(d.s.cfg.Retry, d)
	})
}

// Transmit sends the sealed message. The first send registers the
// delivery (the root routes the node's answer by message ID to this
// actor) and seals the packet; if either fails, the delivery ends unsent.
func (d *deliverTx) Transmit(ctx actor.Context) bool {
	if d.pkt == nil {
		if err := d.s.delivers.Put(d.env.ID, ctx.Self(), dedupTTL); err != nil {
			return false
		}
		plain, err := messages.Marshal(d.env)
		if err != nil {
			return false
		}
		d.pkt = d.sess.Seal(nil, plain)
	}
	_, _ = d.conn.WriteToUDPAddrPort(d.pkt, d.to)
	d.sends++
	return true
}

// Reply takes the node's answer, routed here by the root.
func (d *deliverTx) Reply(_ actor.Context, msg any) retransmit.Verdict {
	m, ok := msg.(messages.Envelope)
	if !ok {
		return retransmit.Wait
	}
	d.s.Counters.Delivered.Add(1)
	d.ack = &m
	return retransmit.Done
}

// End answers the asker with the node's answer (or an Error) and forgets
// the delivery.
func (d *deliverTx) End(_ actor.Context, how retransmit.End) {
	defer d.s.delivers.Delete(d.env.ID)
	switch how {
	case retransmit.Stopped:
		return
	case retransmit.Expired:
		d.s.Counters.DeliverFailed.Add(1)
		d.s.log.Warn("nms: node did not acknowledge", "fqdn", d.fqdn, "type", d.env.Type, "tries", d.sends)
	}
	if d.asker.IsZero() {
		return
	}
	var f []byte
	var err error
	if d.ack != nil {
		f, err = svc.Frame{Envelope: *d.ack}.Encode()
	} else {
		f, err = svc.NewFrame("", d.env.ID, "nms", time.Now(), messages.Error{Code: messages.CodePeerUnreachable, Message: "peer did not answer", Retry: true})
	}
	if err == nil {
		if err := d.s.cfg.Link.Send(d.asker, f); err != nil {
			d.s.log.Debug("nms: answer delivery", "to", d.asker.String(), "err", err)
		}
	}
}
