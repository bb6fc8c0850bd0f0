package peer

import (
	"errors"
	"math/big"
	"net/netip"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/cyphonic/cyphonic-go/actors/dataplane/batch"
	"github.com/cyphonic/cyphonic-go/actors/runtime"
	"github.com/cyphonic/cyphonic-go/cloud/pki"
	"github.com/cyphonic/cyphonic-go/messages"
	"github.com/cyphonic/cyphonic-go/sequencer"
	"github.com/cyphonic/cyphonic-go/transport/handshake"
	"github.com/cyphonic/cyphonic-go/transport/seal"
)

// Props returns the props of the peer actor for h. The actor keeps its
// per-incarnation state (handshake, keys, timers, sequencers) to itself;
// what must survive a restart lives in h.
func Props(env *Env, h *Handle) *actor.Props {
	return actor.PropsFromProducer(func() actor.Actor { return &peerActor{env: env, h: h} })
}

type peerActor struct {
	env  *Env
	h    *Handle
	pipe *Pipe
	self *actor.PID

	nextSeq uint64
	route   Route
	cur     *Session // confirmed session data goes out on
	prev    *Session // the one before, still accepted inbound during a rekey
	next    *Session // responder: replied, waiting for the first packet
	nextIdx uint32
	curIdx  uint32
	prevIdx uint32
	nextRt  Route
	// nextResp is our answer to the init behind next (handshake header
	// and msg2), and nextFor that init's sender index: copies of the same
	// init get the same answer again.
	nextResp []byte
	nextFor  uint32

	ini       *handshake.Initiator
	iniIdx    uint32
	iniSent   time.Time
	attemptAt time.Time // when the current handshaking phase began

	bindAt  time.Time // last relay bind (responder waiting on a relayed path)
	probeAt time.Time // last direct probe while relayed (upgrade to direct)

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
	case *batch.Batch:
		p.outbound(ctx, m)
	case *Init:
		p.onInit(m)
	case *Response:
		p.onResponse(m)
	case confirmed:
		p.onConfirmed(m.s)
	case roamed:
		if p.cur != nil && !m.from.Addr().IsUnspecified() {
			wasRelayed := p.route.Relay
			p.setRoute(Route{Addr: m.from})
			if wasRelayed {
				// The peer's direct probe got through: answer on the direct
				// path at once so the peer moves too (it stopped probing).
				p.sendKeepalive(time.Now())
			}
		}
	case *Update:
		p.h.setInfo(m.Info)
		info := p.h.Info()
		switch {
		case p.cur == nil && info.Initiator:
			p.startHandshake(time.Now(), p.candidates(&info))
		case p.cur != nil && p.route.Relay && len(info.Endpoints) > 0:
			// NMS found a direct path for a relayed tunnel (or the peer
			// moved): probe the new endpoints now rather than at the next
			// probe tick. The session stays as it is; the peer does the
			// same toward us, so each NAT admits the other's probes.
			p.probeDirect(&info, time.Now())
		}
	case tick:
		if p.revoked() {
			// The deny list the node now holds names this peer: end the
			// tunnel for good (a restart would only be refused again).
			p.h.Stats.Drops.Add(batch.Revoked, 1)
			p.env.Logger.Warn("peer: certificate revoked, closing the tunnel", "peer", p.h.FQDN)
			p.closing = true
			ctx.Send(ctx.Parent(), &Close{FQDN: p.h.FQDN})
			return
		}
		p.onTick()
	case Crash:
		p.fail(m.Reason)
	case *actor.Stopping, *actor.Restarting:
		p.teardown()
	}
}

// fail hands the peer to its supervisor (protoactor turns a panic in
// Receive into a failure of this actor). Only timers and the Crash message
// get here, never a packet's content.
func (p *peerActor) fail(reason string) {
	p.h.setFailure(reason)
	panic(&Failure{FQDN: p.h.FQDN, Reason: reason})
}

func (p *peerActor) start(ctx actor.Context) {
	p.self = ctx.Self()
	restarts := p.h.started()
	p.h.setDown(StateHandshaking)
	if restarts > 0 && p.env.NeedsPath != nil {
		p.env.NeedsPath(p.h.FQDN)
	}
	t := p.env.Timing
	pipe := &Pipe{Peer: ctx.Self(), Flow: batch.NewFlow(t.FlowDepth), InFlow: batch.NewFlow(t.FlowDepth),
		// The in-flight bounds keep these from filling.
		SealWork: batch.NewFlow(int(t.OutInflight)), OpenWork: batch.NewFlow(int(t.InInflight))}
	for _, f := range []*batch.Flow{pipe.Flow, pipe.InFlow} {
		f.CoDel = batch.CoDel{Target: t.CoDelTarget, Interval: t.CoDelInterval}
	}
	env, h := p.env, p.h
	cfg := sequencer.Config{Window: t.SeqWindow, GapTimeout: t.GapTimeout}
	outProps, err := sequencer.Props(cfg, sequencer.ToFunc(func(sb *sequencer.Batch[*batch.Batch]) {
		for _, e := range sb.Entries {
			toSocket(env, e.Item)
		}
	}))
	if err == nil {
		pipe.SeqOut, err = runtime.Spawn(ctx, "sequencer", "sequencer-out", outProps)
	}
	var inProps *actor.Props
	if err == nil {
		inProps, err = sequencer.Props(cfg, sequencer.ToFunc(func(sb *sequencer.Batch[*batch.Batch]) {
			for _, e := range sb.Entries {
				toTun(env, h, pipe, e.Item)
			}
		}))
	}
	if err == nil {
		pipe.SeqIn, err = runtime.Spawn(ctx, "sequencer", "sequencer-in", inProps)
	}
	if err != nil {
		p.fail("start: " + err.Error())
	}
	p.pipe = pipe
	h.pipe.Store(pipe)
	now := time.Now()
	p.attemptAt = now
	root, self := ctx.ActorSystem().Root, ctx.Self()
	p.timer = time.AfterFunc(t.Tick, func() { root.Send(self, tick{}) })
	info := h.Info()
	p.bindRelay(&info, now)
	if info.Initiator {
		p.startHandshake(now, p.candidates(&info))
	}
}

func (p *peerActor) teardown() {
	if p.stopping {
		return
	}
	p.stopping = true
	if p.timer != nil {
		p.timer.Stop()
	}
	for _, idx := range []uint32{p.curIdx, p.prevIdx, p.nextIdx, p.iniIdx} {
		p.env.Tables.Remove(idx)
	}
	p.h.pipe.Store(nil)
	p.h.route.Store(nil)
	p.h.setDown(StateBackoff)
}

// outbound stamps a batch from the TUN reader and hands it to a worker.
func (p *peerActor) outbound(ctx actor.Context, b *batch.Batch) {
	b.Stats = &p.h.Stats
	if p.cur == nil || p.stopping {
		b.DropAll(batch.NoSession, nil)
		b.Release()
		return
	}
	if time.Since(b.Born) > p.env.Timing.MaxQueueDelay {
		b.DropAll(batch.QueueDelay, nil)
		b.Release()
		return
	}
	key := p.cur.Key
	for i := range b.N {
		pk := &b.Pkts[i]
		if pk.Drop != batch.OK {
			continue
		}
		c, ok := key.NextCounter()
		if !ok {
			pk.Drop = batch.CounterLimit
			p.h.Stats.Drops.Add(batch.CounterLimit, 1)
			continue
		}
		pk.Counter = c
	}
	b.Op, b.Key, b.Seq, b.Reply = batch.Seal, key, p.nextSeq, p.pipe.SeqOut
	b.Dest, b.Relay, b.Token, b.Flow, b.Work = p.route.Addr, p.route.Relay, p.route.Token, p.pipe.Flow, p.pipe.SealWork
	p.nextSeq++
	p.env.Crypto.Submit(ctx, b)
}

// toSocket runs in sequencer-out: batches leave in order to the writer.
func toSocket(env *Env, b *batch.Batch) {
	if !env.Out.Push(b.Flow, b) {
		b.DropAll(batch.QueueFull, nil)
		b.Release()
	}
}

// toTun runs in sequencer-in, the sequential stage: the replay window is
// checked here, after authentication and in order, then the batch goes to
// the TUN writer.
func toTun(env *Env, h *Handle, pipe *Pipe, b *batch.Batch) {
	sess, _ := b.Session.(*Session)
	if sess == nil || b.Key == nil {
		b.Release()
		return
	}
	route := h.route.Load()
	var roam netip.AddrPort
	var rx, rxBytes uint64
	for i := range b.N {
		pk := &b.Pkts[i]
		if pk.Drop != batch.OK {
			continue
		}
		if !b.Key.Replay.Accept(pk.Counter) {
			pk.Drop = batch.Replay
			h.Stats.Drops.Add(batch.Replay, 1)
			continue
		}
		if !h.SourceAllowed(pk.Buf[pk.Off : pk.Off+pk.Len]) {
			pk.Drop = batch.SpoofedSource
			h.Stats.Drops.Add(batch.SpoofedSource, 1)
			continue
		}
		rx++
		rxBytes += uint64(pk.Len + seal.HeaderLen + seal.Overhead) // wire bytes, like TxBytes
		if !pk.Relayed && route != nil && sess.Confirmed() && (route.Relay || route.Addr != pk.From) {
			roam = pk.From // roaming, or a relayed peer reaching us directly
		}
	}
	if rx > 0 {
		h.Stats.RxPackets.Add(rx)
		h.Stats.RxBytes.Add(rxBytes)
		h.Stats.LastRecv.Store(time.Now().UnixNano())
		if !sess.confirmed.Load() && sess.confirmed.CompareAndSwap(false, true) {
			env.Root.Send(pipe.Peer, confirmed{sess})
		}
		if roam.IsValid() {
			env.Root.Send(pipe.Peer, roamed{roam})
		}
	}
	b.Flow = pipe.InFlow
	if !env.Deliver(b) {
		b.DropAll(batch.QueueFull, nil)
		b.Release()
	}
}

func (p *peerActor) setRoute(r Route) {
	p.route = r
	p.h.route.Store(&r)
}

// candidates are the routes a handshake init goes to: every endpoint we
// have a socket for, or TRS for a relayed path.
func (p *peerActor) candidates(info *messages.PathInfo) []Route {
	if info.Kind == messages.PathRelay {
		if r, ok := p.env.relayRoute(info.Relay); ok {
			return []Route{r}
		}
		return nil
	}
	var rs []Route
	for _, ep := range info.Endpoints {
		if ep.IsValid() && p.env.CanSend(ep) {
			rs = append(rs, Route{Addr: ep})
		}
	}
	if r, ok := p.env.relayRoute(info.Relay); ok {
		rs = append(rs, r)
	}
	return rs
}

// bindRelay tells TRS where we are (an empty relay frame) when the path
// has a relay ticket and no session yet: TRS forwards to a side only once
// it has heard from it, so a responder that waited silently would never
// receive the initiator's msg1.
func (p *peerActor) bindRelay(info *messages.PathInfo, now time.Time) {
	r, ok := p.env.relayRoute(info.Relay)
	if !ok {
		return
	}
	p.bindAt = now
	if !p.env.sendFramed(make([]byte, messages.RelayHeaderLen), r) {
		p.h.Stats.Drops.Add(batch.QueueFull, 1)
	}
}

// startHandshake sends a fresh msg1 to every route in rs; the first answer
// wins (hole punching: both sides' packets open the NAT mappings).
func (p *peerActor) startHandshake(now time.Time, rs []Route) {
	p.env.Tables.Remove(p.iniIdx)
	p.ini, p.iniIdx = nil, 0
	info := p.h.Info()
	idx := p.env.Tables.Reserve(&Session{Peer: p.h, Pipe: p.pipe})
	ini, err := handshake.NewInitiator(p.env.Handshake, info.PeerFQDN, idx)
	var msg1 []byte
	if err == nil {
		msg1, err = ini.Start(nil, now)
	}
	if err != nil {
		p.env.Tables.Remove(idx)
		p.env.Logger.Warn("peer: handshake init", "peer", p.h.FQDN, "err", err)
		return
	}
	p.ini, p.iniIdx, p.iniSent = ini, idx, now
	hdr := messages.HandshakeHeader{Type: messages.TypeHandshakeInit, Sender: idx}
	for _, r := range rs {
		buf := make([]byte, messages.RelayHeaderLen+hdr.Len()+len(msg1))
		n := hdr.Put(buf[messages.RelayHeaderLen:])
		copy(buf[messages.RelayHeaderLen+n:], msg1)
		if !p.env.sendFramed(buf, r) {
			p.h.Stats.Drops.Add(batch.QueueFull, 1)
		}
	}
}

func (p *peerActor) onResponse(m *Response) {
	if p.ini == nil || m.Header.Receiver != p.iniIdx {
		p.h.Stats.Drops.Add(batch.Handshake, 1)
		return
	}
	res, err := p.ini.Finish(m.Msg)
	if err != nil {
		p.h.Stats.Drops.Add(batch.Handshake, 1)
		if !errors.Is(err, handshake.ErrDecrypt) && !errors.Is(err, handshake.ErrMalformed) {
			// Authenticated but unacceptable: this attempt is spent.
			p.env.Logger.Warn("peer: handshake response rejected", "peer", p.h.FQDN, "err", err)
			p.env.Tables.Remove(p.iniIdx)
			p.ini, p.iniIdx = nil, 0
		}
		return
	}
	serial, ok := p.bound(res.PeerCertDER)
	if !ok {
		// Authenticated, but the peer's certificate binds other VIPs than
		// the path routes to it: NMS (or whoever wrote the path) lied.
		p.env.Logger.Warn("peer: handshake refused: certificate VIPs differ from the path's", "peer", p.h.FQDN)
		res.Wipe()
		p.env.Tables.Remove(p.iniIdx)
		p.ini, p.iniIdx = nil, 0
		return
	}
	now := time.Now()
	kp, err := res.Keypair(now)
	res.Wipe()
	if err != nil {
		p.h.Stats.Drops.Add(batch.Handshake, 1)
		return
	}
	s := &Session{Peer: p.h, Pipe: p.pipe, Key: kp, serial: serial}
	s.confirmed.Store(true) // msg2 authenticated the responder
	idx := p.iniIdx
	p.env.Tables.Set(idx, s)
	p.ini, p.iniIdx = nil, 0
	r := Route{Addr: m.From}
	if m.Relayed {
		info := p.h.Info()
		r, _ = p.env.relayRoute(info.Relay)
	}
	p.install(s, idx, r, now)
	// The responder may not send until we have: confirm at once.
	p.sendKeepalive(now)
}

func (p *peerActor) onInit(m *Init) {
	R := m.Responder
	// Data may already have confirmed our pending session while its
	// confirmed message waits behind this init: install it now, or the
	// init would supersede (and drop) a session the peer is sending on.
	if p.next != nil && p.next.Confirmed() {
		p.onConfirmed(p.next)
	}
	// Both sides initiating: the smaller FQDN's init wins, the other side
	// answers it.
	if p.ini != nil && p.env.Self < p.h.FQDN {
		return
	}
	if err := p.env.Guard.Check(R.PeerIdentity, R.PeerTimestamp); err != nil {
		p.h.Stats.Drops.Add(batch.Handshake, 1)
		return
	}
	// Before any DH of ours: the certificate must bind the VIPs the path
	// routes to this peer (msg1 is unauthenticated, so only count it).
	serial, ok := p.bound(R.PeerCertDER)
	if !ok {
		p.env.Logger.Debug("peer: handshake init refused: certificate VIPs differ from the path's", "peer", p.h.FQDN)
		return
	}
	r := Route{Addr: m.From}
	if m.Relayed {
		info := p.h.Info()
		r, _ = p.env.relayRoute(info.Relay)
	}
	// The initiator sends one msg1 to every candidate (local addresses,
	// public mapping, relay), so copies of the init we are answering
	// arrive by the other routes. Answering a copy afresh would replace
	// p.next and free the index our first answer named, while the
	// initiator keeps whichever answer reaches it first: if that was the
	// first, every packet it sends would be dropped as unknown-index until
	// the handshake timed out. So a copy gets the same answer again.
	if p.next != nil && p.nextFor == R.PeerIndex && p.next.msg1Time == R.PeerTimestamp.UnixNano() {
		buf := make([]byte, messages.RelayHeaderLen+len(p.nextResp))
		copy(buf[messages.RelayHeaderLen:], p.nextResp)
		if !p.env.sendFramed(buf, r) {
			p.h.Stats.Drops.Add(batch.QueueFull, 1)
		}
		return
	}
	now := time.Now()
	idx := p.env.Tables.Reserve(&Session{Peer: p.h, Pipe: p.pipe})
	msg2, res, err := R.Reply(idx, nil, now)
	var kp *seal.Keypair
	if err == nil {
		kp, err = res.Keypair(now)
		res.Wipe()
	}
	if err != nil {
		p.env.Tables.Remove(idx)
		p.h.Stats.Drops.Add(batch.Handshake, 1)
		return
	}
	s := &Session{Peer: p.h, Pipe: p.pipe, Key: kp, msg1Time: R.PeerTimestamp.UnixNano(), serial: serial}
	p.env.Tables.Set(idx, s)
	p.env.Tables.Remove(p.nextIdx) // a newer init supersedes an unconfirmed one
	p.next, p.nextIdx, p.nextRt = s, idx, r
	if p.ini != nil { // we lost the tie
		p.env.Tables.Remove(p.iniIdx)
		p.ini, p.iniIdx = nil, 0
	}
	hdr := messages.HandshakeHeader{Type: messages.TypeHandshakeResp, Sender: idx, Receiver: R.PeerIndex}
	buf := make([]byte, messages.RelayHeaderLen+hdr.Len()+len(msg2))
	n := hdr.Put(buf[messages.RelayHeaderLen:])
	copy(buf[messages.RelayHeaderLen+n:], msg2)
	p.nextResp = append(p.nextResp[:0], buf[messages.RelayHeaderLen:]...)
	p.nextFor = R.PeerIndex
	if !p.env.sendFramed(buf, r) {
		p.h.Stats.Drops.Add(batch.QueueFull, 1)
	}
}

func (p *peerActor) onConfirmed(s *Session) {
	if s != p.next {
		return
	}
	p.env.Guard.Commit(p.h.FQDN, time.Unix(0, s.msg1Time))
	idx := p.nextIdx
	p.next, p.nextIdx = nil, 0
	p.install(s, idx, p.nextRt, time.Now())
}

// install makes s the session data goes out on; the previous one keeps
// receiving until the next install.
func (p *peerActor) install(s *Session, idx uint32, r Route, now time.Time) {
	p.env.Tables.Remove(p.prevIdx)
	p.prev, p.prevIdx = p.cur, p.curIdx
	p.cur, p.curIdx = s, idx
	p.setRoute(r)
	p.h.Stats.LastRecv.Store(now.UnixNano())
	p.h.setUp(now, s.Key.Suite())
}

// sendKeepalive sends an empty data packet on the current session.
func (p *peerActor) sendKeepalive(now time.Time) {
	if p.sendEmpty(p.route) {
		p.h.Stats.LastSent.Store(now.UnixNano())
	}
}

// sendEmpty sends an empty data packet on the current session to r.
func (p *peerActor) sendEmpty(r Route) bool {
	if p.cur == nil {
		return false
	}
	c, ok := p.cur.Key.NextCounter()
	if !ok {
		return false
	}
	buf := make([]byte, batch.Headroom+seal.Overhead)
	if _, err := p.cur.Key.Seal(buf[messages.RelayHeaderLen:], 0, c, buf[batch.Headroom:batch.Headroom]); err != nil {
		return false
	}
	return p.env.sendFramed(buf, r)
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
		if ep.IsValid() && p.env.CanSend(ep) {
			p.sendEmpty(Route{Addr: ep})
		}
	}
}

// needsRekey adds Timing's limits to the keypair's own (bytes sent).
func (p *peerActor) needsRekey(now time.Time) bool {
	k, t := p.cur.Key, p.env.Timing
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
	t := p.env.Timing
	info := p.h.Info()
	if p.cur == nil {
		if now.Sub(p.attemptAt) > t.HandshakeTimeout {
			p.fail("handshake timeout")
		}
		if info.Initiator && (p.ini == nil || now.Sub(p.iniSent) >= t.HandshakeRetry) {
			p.startHandshake(now, p.candidates(&info))
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
		if now.Sub(time.Unix(0, p.h.Stats.LastSent.Load())) >= t.Keepalive {
			p.sendKeepalive(now)
		}
		// A rekey goes where the live session goes, not to NMS's
		// candidates, which may be stale after a roam.
		if p.needsRekey(now) && (p.ini == nil || now.Sub(p.iniSent) >= t.HandshakeRetry) {
			p.startHandshake(now, []Route{p.route})
		}
		if p.route.Relay && len(info.Endpoints) > 0 && now.Sub(p.probeAt) >= t.HandshakeRetry {
			p.probeDirect(&info, now)
		}
	}
	auth, rx := p.h.Stats.Drops.Get(batch.Auth), p.h.Stats.RxPackets.Load()
	overdue := now.Sub(time.Unix(0, p.h.Stats.LastRecv.Load())) > t.Keepalive
	if p.cur != nil && overdue && rx == p.lastRx && auth-p.lastAuth > t.AuthFailLimit {
		p.fail("repeated authentication failures")
	}
	p.lastAuth, p.lastRx = auth, rx
	p.timer.Reset(t.Tick)
}

// bound checks the peer's certificate (already verified by the handshake)
// against its path: the VIPs we route to this peer and accept as its
// sources came from NMS, the certificate's were signed by the offline CA,
// and they must be the same, or a compromised NMS could name bob's VIPs
// for mallory and have mallory's packets arrive as bob's. It returns the
// certificate's serial, for the deny list.
func (p *peerActor) bound(certDER []byte) (*big.Int, bool) {
	serial, vip6, vip4, err := pki.NodeBinding(certDER)
	// A path may leave a family out (then it is neither routed nor
	// accepted); every VIP it does name must be the certificate's.
	if err != nil || p.h.vip6.IsValid() && vip6 != p.h.vip6 || p.h.vip4.IsValid() && vip4 != p.h.vip4 {
		p.h.Stats.Drops.Add(batch.WrongVIPs, 1)
		return nil, false
	}
	return serial, true
}

// revoked reports whether the deny list names the certificate of a session
// the peer has (live, or waiting for confirmation).
func (p *peerActor) revoked() bool {
	if p.env.Revoked == nil || p.stopping || p.closing {
		return false
	}
	for _, s := range []*Session{p.cur, p.next} {
		if s != nil && s.serial != nil && p.env.Revoked(s.serial) {
			return true
		}
	}
	return false
}
