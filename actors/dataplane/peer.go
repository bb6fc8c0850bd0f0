package dataplane

import (
	"net/netip"
	"slices"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/cyphonic/cyphonic-go/actors/dataplane/fallback"
	"github.com/cyphonic/cyphonic-go/actors/supervise"
	"github.com/cyphonic/cyphonic-go/messages"
	"github.com/cyphonic/cyphonic-go/sequencer"
	"github.com/cyphonic/cyphonic-go/transport/handshake"
	"github.com/cyphonic/cyphonic-go/transport/relaybind"
	"github.com/cyphonic/cyphonic-go/transport/seal"
)

// peerProps returns the props of the peer actor for h. The actor keeps its
// per-incarnation state (handshake, keys, timers, sequencers) to itself;
// what must survive a restart lives in h.
func peerProps(d *Dataplane, h *peerHandle) *actor.Props {
	return actor.PropsFromProducer(func() actor.Actor { return &peerActor{d: d, h: h} })
}

type peerActor struct {
	d    *Dataplane
	h    *peerHandle
	pipe *peerPipe
	self *actor.PID
	root *actor.RootContext

	nextSeq uint64
	route   peerRoute
	cur     *peerSession // confirmed session data goes out on
	prev    *peerSession // the one before, still accepted inbound during a rekey
	curIdx  uint32
	prevIdx uint32
	// pending are the responder's sessions we answered and that wait for
	// the initiator's first data packet, the only proof that the init came
	// from the peer (IX's msg1 is not authenticated). A new init never
	// replaces one: a forged init must not cancel the handshake the real
	// peer is completing. At most maxPending; see onInit.
	pending []pendingInit

	ini       *peerSession // initiator: our reserved session while a msg1 is out
	iniIdx    uint32
	iniCookie bool // that msg1 carried a mac2 (we held the peer's cookie)
	iniSent   time.Time
	iniPkt    []byte // that msg1 as sent (handshake header to MAC trailer), for onPrimeDue
	iniResent bool   // resendInit sent it once more
	// primed are the punched endpoints we sent a low-TTL primer to, and
	// primeTimer the pending primeDue (punch.go).
	primed     primer
	primeTimer *time.Timer
	attemptAt  time.Time // when the current handshaking phase began

	bindAt  time.Time         // last relay bind
	binds   relaybind.Counter // relay bind counters (wall-clock seeded: fresh after a restart)
	probeAt time.Time         // last direct probe while relayed (upgrade to direct)
	recov   recovery          // re-establishment after the peer lost our session (recovery.go)
	silent  silence           // sending with nothing back (recovery.go)

	pings    map[uint64]pendingPing // echoes sent for Ping, by ID (ping.go)
	timer    *time.Timer
	stopping bool
	closing  bool // asked the manager to close us (revoked)
	lastAuth uint64
	lastRx   uint64
}

func (p *peerActor) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *actor.Started:
		p.start(ctx)
	case *batch:
		p.outbound(ctx, m)
	case *answeredInit:
		p.onInit(m)
	case *finished:
		p.onFinished(m)
	case cookieTaken:
		p.onCookie(m.pending)
	case confirmed:
		p.onConfirmed(m.s)
	case roamed:
		if p.cur != nil && !m.from.Addr().IsUnspecified() {
			wasRelayed := p.route.Relay
			p.setRoute(peerRoute{Addr: m.from})
			if wasRelayed {
				// The peer's direct probe got through: answer on the direct
				// path at once so the peer moves too (it stopped probing).
				p.sendKeepalive(time.Now())
			}
		}
	case lost:
		p.onLost(m)
	case *updatePath:
		p.h.setInfo(m.Info)
		info := p.h.Info()
		p.onRelayTicket(&info, time.Now())
		switch {
		case p.cur == nil && info.Initiator:
			p.startHandshake(time.Now(), p.candidates(&info, time.Now()))
		case p.cur == nil && !p.h.initiates():
			p.primeOnly(&info, time.Now())
		case p.cur != nil && p.recov.active && info.Initiator:
			// The path we asked for because the peer lost our session:
			// handshake beside the live session (which keeps running
			// until the new one is installed, as in a rekey).
			p.startHandshake(time.Now(), p.candidates(&info, time.Now()))
		case p.cur != nil && p.route.Relay && len(info.Endpoints) > 0:
			// NMS found a direct path for a relayed tunnel (or the peer
			// moved): probe the new endpoints now rather than at the next
			// probe tick. The session stays as it is; the peer does the
			// same toward us, so each NAT admits the other's probes.
			p.probeDirect(&info, time.Now())
		}
		if m.Ready != nil {
			p.h.whenReady(m.Ready) // our pipe is published: at once
		}
	case *rebindRelays:
		if info := p.h.Info(); p.cur == nil || p.route.Relay {
			p.bindRelay(&info, time.Now())
		}
	case primeDue:
		p.onPrimeDue()
	case tick:
		if p.revoked() {
			// The deny list the node now holds names this peer: end the
			// tunnel for good (a restart would only be refused again).
			p.h.Stats.Drops.Add(Revoked, 1)
			p.d.log.Warn("peer: certificate revoked, closing the tunnel", "peer", p.h.FQDN)
			p.closing = true
			ctx.Send(ctx.Parent(), &closePeer{FQDN: p.h.FQDN})
			return
		}
		p.onTick()
	case pingReq:
		p.onPing(ctx)
	case probed:
		p.onProbed(ctx, m)
	case Crash:
		p.fail(m.Reason)
	case *actor.Stopping, *actor.Restarting:
		p.teardown()
	}
}

// fail hands the peer to its supervisor (protoactor turns a panic in
// Receive into a failure of this actor). Only timers and the Crash message
// get here, never a packet's content.
// reasonHandshakeTimeout is the failure of a handshake attempt series
// that got no answer (counted in PeerStatus.HandshakeTimeouts).
const reasonHandshakeTimeout = "handshake timeout"

func (p *peerActor) fail(reason string) {
	p.h.setFailure(reason)
	panic(&peerFailure{FQDN: p.h.FQDN, Reason: reason})
}

func (p *peerActor) start(ctx actor.Context) {
	p.self = ctx.Self()
	restarts := p.h.started()
	p.h.setDown(StateHandshaking)
	if restarts > 0 && p.d.cfg.OnPeerNeedsPath != nil {
		p.d.cfg.OnPeerNeedsPath(p.h.FQDN)
	}
	t := p.d.timing
	pipe := &peerPipe{Peer: ctx.Self(), Flow: newFlow(t.FlowDepth), InFlow: newFlow(t.FlowDepth),
		FlowICMP: newFlow(t.FlowDepth), InFlowICMP: newFlow(t.FlowDepth),
		// The in-flight bounds keep these from filling.
		SealWork: newFlow(t.OutInflight), OpenWork: newFlow(t.InInflight),
		OutInflight: supervise.NewLimiter(t.OutInflight), InInflight: supervise.NewLimiter(t.InInflight),
		OutShare: p.d.outBudget.share(), InShare: p.d.inBudget.share()}
	for _, f := range []*flowQueue{pipe.Flow, pipe.InFlow, pipe.FlowICMP, pipe.InFlowICMP} {
		f.CoDel = codel{Target: t.CoDelTarget, Interval: t.CoDelInterval}
	}
	d, h := p.d, p.h
	cfg := sequencer.Config{Window: t.SeqWindow, GapTimeout: t.GapTimeout}
	outProps, err := sequencer.PropsReturning(cfg, sequencer.ToFunc(func(sb *sequencer.Batch[*batch]) {
		for _, e := range sb.Entries {
			d.toSocket(e.Item)
		}
	}), dropLate)
	if err == nil {
		pipe.SeqOut, err = supervise.Spawn(ctx, "sequencer", "sequencer-out", outProps)
	}
	var inProps *actor.Props
	if err == nil {
		inProps, err = sequencer.PropsReturning(cfg, sequencer.ToFunc(func(sb *sequencer.Batch[*batch]) {
			for _, e := range sb.Entries {
				d.toTun(e.Item)
			}
		}), dropLate)
	}
	if err == nil {
		pipe.SeqIn, err = supervise.Spawn(ctx, "sequencer", "sequencer-in", inProps)
	}
	if err != nil {
		p.fail("start: " + err.Error())
	}
	p.pipe = pipe
	h.pipe.Store(pipe)
	now := time.Now()
	p.attemptAt = now
	root, self := ctx.ActorSystem().Root, ctx.Self()
	p.root = root
	p.timer = time.AfterFunc(t.Tick, func() { root.Send(self, tick{}) })
	info := h.Info()
	p.bindRelay(&info, now)
	if h.initiates() {
		p.startHandshake(now, p.candidates(&info, now))
	} else {
		p.primeOnly(&info, now)
	}
	// Only now: on a relayed path the TRS forwards the initiator's init to
	// us only once it has our bind, which is queued ahead of the ack this
	// releases (the same socket queue).
	h.readied()
}

// dropLate takes a batch its sequencer refused: it came after the
// sequencer had given its slot up (a worker stalled past GapTimeout), so
// its packets are lost to queue delay. Releasing it gives its in-flight slot
// back; forgotten, it would shrink the peer's bound for good.
func dropLate(b *batch) {
	b.DropAll(QueueDelay, nil)
	b.Release()
}

func (p *peerActor) teardown() {
	if p.stopping {
		return
	}
	p.stopping = true
	if p.timer != nil {
		p.timer.Stop()
	}
	if p.primeTimer != nil {
		p.primeTimer.Stop()
	}
	for _, idx := range []uint32{p.curIdx, p.prevIdx, p.iniIdx} {
		p.d.tables.Remove(idx)
	}
	for _, pi := range p.pending {
		p.d.tables.Remove(pi.idx)
	}
	p.pending = nil
	p.h.pipe.Store(nil)
	p.h.route.Store(nil)
	p.h.setDown(StateBackoff)
}

func (p *peerActor) setRoute(r peerRoute) {
	p.route = r
	p.h.route.Store(&r)
}

// attempt is what package fallback needs to know about our path.
func (p *peerActor) attempt(info *messages.PathInfo) fallback.Attempt {
	_, ticket := p.d.relayRoute(info.Relay)
	return fallback.Attempt{
		Relayed: info.Kind == messages.PathRelay,
		Direct:  slices.ContainsFunc(info.Endpoints, func(ep netip.AddrPort) bool { return ep.IsValid() && p.d.canSend(ep) }),
		Ticket:  ticket,
		After:   p.d.timing.FallbackAfter, Retry: p.d.timing.HandshakeRetry,
	}
}

// candidates are the routes a handshake init goes to now: every direct
// endpoint we have a socket for and, once package fallback says so (at
// once for a relayed path, after the fallback deadline for a direct or
// punched one), the TRS.
func (p *peerActor) candidates(info *messages.PathInfo, now time.Time) []peerRoute {
	want := p.attempt(info).Routes(now.Sub(p.attemptAt))
	var rs []peerRoute
	if want.Direct {
		for _, ep := range info.Endpoints {
			if ep.IsValid() && p.d.canSend(ep) {
				rs = append(rs, peerRoute{Addr: ep})
			}
		}
	}
	if r, ok := p.d.relayRoute(info.Relay); ok && want.Relay {
		rs = append(rs, r)
	}
	return rs
}

// bindRelay tells TRS where we are with a bind MACed under our side's
// bind key (messages.RelayBind): TRS forwards to a side, and accepts its
// frames, only from the address of its last accepted bind, and keeps the
// relay session only while binds come. So we bind while waiting for a
// session (a responder that waited silently would never receive the
// initiator's msg1), once a keepalive period while our route is the
// relay, and more often when the relay has gone quiet (our NAT mapping
// may have moved: see onTick).
func (p *peerActor) bindRelay(info *messages.PathInfo, now time.Time) {
	p.bindAt = now
	p.bindTicket(info.Relay, now)
	// The ticket this one replaced, while it lasts: the peer may be
	// sending on it (both asked NMS at once; see peerHandle.prevRelay).
	if prev := p.h.prevTicket(); prev != nil && (info.Relay == nil || prev.Token != info.Relay.Token) &&
		now.Before(time.Unix(0, prev.Expires)) {
		p.bindTicket(prev, now)
	}
}

func (p *peerActor) bindTicket(t *messages.RelayTicket, now time.Time) {
	r, ok := p.d.relayRoute(t)
	if !ok {
		return
	}
	pkt, err := relaybind.Seal(t.BindKey, t.Token, p.binds.Next(now))
	if err != nil {
		p.d.log.Warn("peer: relay bind", "peer", p.h.FQDN, "err", err)
		return
	}
	if !p.d.out.PushControl(controlPkt{Pkt: pkt, To: r.Addr}) {
		p.h.Stats.Drops.Add(QueueFull, 1)
	}
}

// onRelayTicket handles a path update that may carry a new relay ticket
// (a new relay session: the peer asked NMS again). Binds go out under the
// ticket in the handle's info, so a relayed route moves to the same
// ticket, or our frames would stay on a session nobody binds any more
// and die with it. Without a session, bind the new ticket at once so the
// initiator's msg1 finds us.
func (p *peerActor) onRelayTicket(info *messages.PathInfo, now time.Time) {
	r, ok := p.d.relayRoute(info.Relay)
	switch {
	case !ok:
	case p.cur == nil:
		p.bindRelay(info, now)
	case p.route.Relay && r != p.route:
		p.setRoute(r)
		p.bindRelay(info, now)
	}
}

// startHandshake sends a fresh msg1 to every route in rs; the first answer
// wins (hole punching: both sides' packets open the NAT mappings). The
// msg1 ends in the MAC trailer: mac1 for the peer's name, and mac2 if the
// peer gave us a cookie (it is busy).
func (p *peerActor) startHandshake(now time.Time, rs []peerRoute) {
	p.d.tables.Remove(p.iniIdx)
	p.ini, p.iniIdx = nil, 0
	info := p.h.Info()
	s := &peerSession{Peer: p.h, Pipe: p.pipe}
	idx := p.d.tables.Reserve(&peerSession{Peer: p.h, Pipe: p.pipe})
	ini, err := handshake.NewInitiator(p.d.handshake, info.PeerFQDN, idx)
	var msg1 []byte
	if err == nil {
		msg1, err = ini.Start(initPadding(len(p.d.handshake.CertDER)), now)
	}
	hdr := messages.HandshakeHeader{Type: messages.TypeHandshakeInit, Sender: idx}
	pkt := make([]byte, hdr.Len()+len(msg1)+messages.HandshakeTrailerLen)
	copy(pkt[hdr.Put(pkt):], msg1)
	hadCookie := p.h.cookies.HasCookie(now)
	if err == nil {
		err = p.h.cookies.AddMACs(pkt, now)
	}
	if err != nil {
		p.d.tables.Remove(idx)
		p.d.log.Warn("peer: handshake init", "peer", p.h.FQDN, "err", err)
		return
	}
	s.ini = ini
	p.d.tables.Set(idx, s) // the workers find the initiator here
	p.ini, p.iniIdx, p.iniSent, p.iniCookie, p.iniPkt = s, idx, now, hadCookie, pkt
	p.iniResent = false
	held := false
	for _, r := range rs {
		buf := make([]byte, messages.RelayHeaderLen+len(pkt))
		copy(buf[messages.RelayHeaderLen:], pkt)
		// A punched endpoint gets a primer first (punch.go).
		held = p.sendInit(&info, buf, r, now) || held
	}
	if held {
		p.schedulePrimeDue()
	}
}

// initPadTo is what an init's certificate and padding (its app payload,
// zeros) add up to at least. The responder never sends a response larger
// than the init it answers (respond), and msg2 carries the responder's
// certificate where msg1 carries ours: padded, an init is larger than any
// response with a certificate of up to initPadTo-4 bytes (a node
// certificate is ~500), so a spoofed init gets no amplification.
const initPadTo = 1024

func initPadding(certLen int) []byte {
	return make([]byte, max(0, initPadTo-certLen))
}

// onCookie: the peer is busy and gave us a cookie for our pending init.
// Send a fresh init at once, which now carries mac2, unless the init
// already carried one: then the next retry uses the new cookie. (The
// cookie key derives from the peer's public name, so someone who sees our
// inits could forge replies; this way they get us to resend at most once
// per cookie-less init, never in a loop.)
func (p *peerActor) onCookie(s *peerSession) {
	if p.stopping || s != p.ini || p.iniCookie {
		return
	}
	if p.cur == nil {
		info := p.h.Info()
		p.startHandshake(time.Now(), p.candidates(&info, time.Now()))
		return
	}
	p.startHandshake(time.Now(), []peerRoute{p.route})
}

// onFinished takes a handshake response a worker authenticated (finish).
func (p *peerActor) onFinished(m *finished) {
	if p.ini == nil || m.pending != p.ini {
		if m.key != nil {
			p.h.Stats.Drops.Add(Handshake, 1) // an attempt we gave up meanwhile
		}
		return
	}
	if m.err != nil {
		// Authenticated but unacceptable: this attempt is spent.
		p.d.tables.Remove(p.iniIdx)
		p.ini, p.iniIdx = nil, 0
		return
	}
	now := time.Now()
	s := &peerSession{Peer: p.h, Pipe: p.pipe, Key: m.key, serial: m.serial}
	s.confirmed.Store(true) // msg2 authenticated the responder
	idx := p.iniIdx
	p.d.tables.Set(idx, s)
	p.ini, p.iniIdx = nil, 0
	r := peerRoute{Addr: m.from}
	if m.relayed {
		info := p.h.Info()
		r, _ = p.d.relayRoute(info.Relay)
	}
	p.install(s, idx, r, now)
	// The responder may not send until we have: confirm at once.
	p.sendKeepalive(now)
}

// maxPending bounds the responder sessions a peer keeps waiting for their
// first data packet. pendingLifetime is how long one waits: the initiator
// sends data the moment msg2 reaches it, and sends a fresh init (a new
// pending) every HandshakeRetry until then.
const (
	maxPending      = 4
	pendingLifetime = 5 * time.Second
)

// pendingInit is one answered init.
type pendingInit struct {
	s         *peerSession
	idx       uint32
	route     peerRoute
	resp      []byte // our answer (handshake header and msg2), for copies of the init
	peerIndex uint32
	proven    bool // the init carried a valid mac2: its sender receives at its source
	at        time.Time
}

// onInit keeps or refuses an init a handshake worker answered (respond).
//
// After msg1 a Noise IX responder knows only what the initiator claims:
// anyone can build a msg1 from the peer's public certificate. So nothing
// here replaces state. An answered init becomes one more pending session;
// only its confirmation (the initiator's first data packet opened on it,
// which only the holder of the peer's static key can produce) installs it,
// and then the others go. A flood of forged inits can fill the pending
// slots; then new inits are refused (and the data plane goes busy, so
// every init must carry a cookie), except that an init whose source is
// proven by a cookie may take the slot of the oldest unproven one. The
// live session, our own initiator attempt and other pending sessions are
// never touched by an init.
func (p *peerActor) onInit(m *answeredInit) {
	drop := func() { p.d.tables.Remove(m.Index) }
	if p.stopping {
		drop()
		return
	}
	// Data may already have confirmed a pending session while its
	// confirmed message waits behind this init: install it now.
	for _, pi := range p.pending {
		if pi.s.Confirmed() {
			p.onConfirmed(pi.s)
			break
		}
	}
	// The peer's init came through our primed mapping: our own full
	// inits to that endpoint need wait no longer (punch.go).
	if !m.Relayed {
		p.primed.heard(m.From)
	}
	// Both sides initiating: the smaller FQDN's init wins, the other side
	// answers it.
	if p.ini != nil && p.d.self < p.h.FQDN {
		drop()
		p.resendInit(m)
		return
	}
	r := peerRoute{Addr: m.From}
	if m.Relayed {
		info := p.h.Info()
		r, _ = p.d.relayRoute(info.Relay)
	}
	// The initiator sends one msg1 to every candidate (local addresses,
	// public mapping, relay), so copies of an init we answered arrive by
	// the other routes. The initiator keeps whichever answer reaches it
	// first, so a copy gets the same answer again rather than a new
	// session the initiator would never use.
	for _, pi := range p.pending {
		if pi.peerIndex == m.PeerIndex && pi.s.msg1Time == m.Session.msg1Time {
			drop()
			p.sendResp(pi.resp, r)
			return
		}
	}
	now := time.Now()
	p.expirePending(now)
	if len(p.pending) >= maxPending {
		victim := -1
		if m.SourceProven {
			for i, pi := range p.pending {
				if !pi.proven {
					victim = i
					break
				}
			}
		}
		if victim < 0 {
			drop()
			p.h.Stats.Drops.Add(Handshake, 1)
			p.d.hs.setBusy() // every init must now carry a cookie for a while
			return
		}
		p.d.tables.Remove(p.pending[victim].idx)
		p.pending = append(p.pending[:victim], p.pending[victim+1:]...)
	}
	p.pending = append(p.pending, pendingInit{s: m.Session, idx: m.Index, route: r, resp: m.Resp,
		peerIndex: m.PeerIndex, proven: m.SourceProven, at: now})
	p.sendResp(m.Resp, r)
}

// expirePending forgets answered inits whose initiator never confirmed.
func (p *peerActor) expirePending(now time.Time) {
	keep := p.pending[:0]
	for _, pi := range p.pending {
		if now.Sub(pi.at) < pendingLifetime {
			keep = append(keep, pi)
		} else {
			p.d.tables.Remove(pi.idx)
		}
	}
	clear(p.pending[len(keep):])
	p.pending = keep
}

func (p *peerActor) sendResp(resp []byte, r peerRoute) {
	buf := make([]byte, messages.RelayHeaderLen+len(resp))
	copy(buf[messages.RelayHeaderLen:], resp)
	if !p.d.sendFramed(buf, r) {
		p.h.Stats.Drops.Add(QueueFull, 1)
	}
}

// onConfirmed installs a pending session the initiator has sent data on:
// a completed, authenticated handshake, the only thing that replaces the
// live session. The other pending sessions and our own attempt go.
func (p *peerActor) onConfirmed(s *peerSession) {
	i := slices.IndexFunc(p.pending, func(pi pendingInit) bool { return pi.s == s })
	if i < 0 {
		return
	}
	pi := p.pending[i]
	p.d.guard.Commit(p.h.FQDN, time.Unix(0, s.msg1Time))
	for j, o := range p.pending {
		if j != i {
			p.d.tables.Remove(o.idx)
		}
	}
	p.pending = p.pending[:0]
	if p.ini != nil {
		p.d.tables.Remove(p.iniIdx)
		p.ini, p.iniIdx = nil, 0
	}
	p.install(s, pi.idx, pi.route, time.Now())
}

// install makes s the session data goes out on; the previous one keeps
// receiving until the next install.
func (p *peerActor) install(s *peerSession, idx uint32, r peerRoute, now time.Time) {
	p.d.tables.Remove(p.prevIdx)
	p.prev, p.prevIdx = p.cur, p.curIdx
	p.cur, p.curIdx = s, idx
	p.setRoute(r)
	p.recov.installed()
	p.h.Stats.LastRecv.Store(now.UnixNano())
	p.h.setUp(now, s.Key.Suite())
	p.sendHeld(now)
}

// sendKeepalive sends an empty data packet on the current session.
func (p *peerActor) sendKeepalive(now time.Time) {
	if p.sendEmpty(p.route) {
		p.h.Stats.LastSent.Store(now.UnixNano())
	}
}

// sendEmpty sends an empty data packet on the current session to r.
func (p *peerActor) sendEmpty(r peerRoute) bool {
	if p.cur == nil {
		return false
	}
	c, ok := p.cur.Key.NextCounter()
	if !ok {
		return false
	}
	buf := make([]byte, headroom+seal.Overhead)
	if _, err := p.cur.Key.Seal(buf[messages.RelayHeaderLen:], 0, c, buf[headroom:headroom]); err != nil {
		return false
	}
	return p.d.sendFramed(buf, r)
}

// probeDirect sends an authenticated empty packet straight to each of the
// peer's direct endpoints while our route goes through TRS. A peer that
// gets one roams to us directly (toTun: an authenticated packet from a new
// endpoint), its traffic then reaches us directly and we roam too: the
// relayed tunnel upgrades itself without another round through NMS. If no
// probe gets through, nothing changes.
func (p *peerActor) probeDirect(info *messages.PathInfo, now time.Time) {
	p.probeAt = now
	for _, ep := range info.Endpoints {
		if ep.IsValid() && p.d.canSend(ep) {
			p.sendEmpty(peerRoute{Addr: ep})
		}
	}
}

// needsRekey adds Timing's limits to the keypair's own (bytes sent).
func (p *peerActor) needsRekey(now time.Time) bool {
	k, t := p.cur.Key, p.d.timing
	if k.NeedsRekey(now) || k.Stats().SentPackets >= t.RekeyAfterMessages {
		return true
	}
	return k.Initiator() && now.Sub(k.Created()) >= t.RekeyAfterTime
}

func (p *peerActor) onTick() {
	if p.stopping {
		return
	}
	now := time.Now()
	t := p.d.timing
	info := p.h.Info()
	p.expirePending(now)
	if p.cur == nil {
		if now.Sub(p.attemptAt) > t.HandshakeTimeout {
			p.fail(reasonHandshakeTimeout)
		}
		lastSent := time.Duration(-1)
		if p.ini != nil {
			lastSent = p.iniSent.Sub(p.attemptAt)
		}
		if p.h.initiates() && p.attempt(&info).Due(now.Sub(p.attemptAt), lastSent) {
			p.startHandshake(now, p.candidates(&info, now))
		}
		if now.Sub(p.bindAt) >= t.HandshakeRetry {
			p.bindRelay(&info, now)
		}
	} else {
		if now.Sub(time.Unix(0, p.h.Stats.LastRecv.Load())) > t.DeadAfter {
			p.fail("keepalive silence")
		}
		if p.cur.Key.Expired(now) {
			p.fail("session expired")
		}
		lastSent, lastRecv := time.Unix(0, p.h.Stats.LastSent.Load()), time.Unix(0, p.h.Stats.LastRecv.Load())
		if now.Sub(lastSent) >= t.Keepalive || passiveDue(now, lastSent, lastRecv, t.PassiveKeepalive) {
			p.sendKeepalive(now)
		}
		if p.silent.observe(now, lastSent, lastRecv, t.SilenceAfter) && !p.recov.active {
			p.recover(now, "nothing heard back for "+t.SilenceAfter.String())
		}
		// A rekey goes where the live session goes, not to NMS's
		// candidates, which may be stale after a roam.
		p.recov.expire(now, t.HandshakeTimeout)
		if p.needsRekey(now) && (p.ini == nil || now.Sub(p.iniSent) >= t.HandshakeRetry) {
			p.startHandshake(now, []peerRoute{p.route})
		} else if p.recov.active && p.ini != nil && now.Sub(p.iniSent) >= t.HandshakeRetry {
			// Recovering: the restarted peer may have heard of us from
			// NMS only after our init arrived.
			p.startHandshake(now, p.candidates(&info, now))
		}
		if p.route.Relay && len(info.Endpoints) > 0 && now.Sub(p.probeAt) >= t.HandshakeRetry {
			p.probeDirect(&info, now)
		}
		if p.route.Relay {
			// Bind once a keepalive period to keep our side of the relay
			// session alive; when nothing has come through the relay for
			// longer than the peer's keepalive period, our NAT mapping
			// may have moved (TRS drops our frames from the new one and
			// sends the peer's to the old): bind at the retry pace.
			every := t.Keepalive
			if now.Sub(time.Unix(0, p.h.Stats.LastRecv.Load())) > t.Keepalive {
				every = t.HandshakeRetry
			}
			if now.Sub(p.bindAt) >= every {
				p.bindRelay(&info, now)
			}
		}
	}
	auth, rx := p.h.Stats.Drops.Get(Auth), p.h.Stats.RxPackets.Load()
	overdue := now.Sub(time.Unix(0, p.h.Stats.LastRecv.Load())) > t.Keepalive
	if p.cur != nil && overdue && rx == p.lastRx && auth-p.lastAuth > t.AuthFailLimit {
		p.fail("repeated authentication failures")
	}
	p.lastAuth, p.lastRx = auth, rx
	p.timer.Reset(t.Tick)
}

// revoked reports whether the deny list names the certificate of a session
// the peer has (live, or waiting for confirmation).
func (p *peerActor) revoked() bool {
	if p.d.cfg.Revoked == nil || p.stopping || p.closing {
		return false
	}
	if s := p.cur; s != nil && s.serial != nil && p.d.cfg.Revoked(s.serial) {
		return true
	}
	for _, pi := range p.pending {
		if pi.s.serial != nil && p.d.cfg.Revoked(pi.s.serial) {
			return true
		}
	}
	return false
}
