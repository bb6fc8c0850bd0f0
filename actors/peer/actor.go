package peer

import (
	"errors"
	"net/netip"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/cyphonic/cyphonic-go/actors/dataplane/batch"
	"github.com/cyphonic/cyphonic-go/actors/runtime"
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

	ini       *handshake.Initiator
	iniIdx    uint32
	iniSent   time.Time
	attemptAt time.Time // when the current handshaking phase began

	timer    *time.Timer
	stopping bool
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
			p.setRoute(Route{Addr: m.from})
		}
	case *Update:
		p.h.setInfo(m.Info)
		if p.cur == nil && m.Info.Initiator {
			p.startHandshake(time.Now())
		}
	case tick:
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
	pipe := &Pipe{Peer: ctx.Self(), Flow: batch.NewFlow(t.FlowDepth)}
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
	if h.Info().Initiator {
		p.startHandshake(now)
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
	b.Dest, b.Relay, b.Token, b.Flow = p.route.Addr, p.route.Relay, p.route.Token, p.pipe.Flow
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

// startHandshake sends a fresh msg1 to every candidate; the first answer
// wins (hole punching: both sides' packets open the NAT mappings).
func (p *peerActor) startHandshake(now time.Time) {
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
	for _, r := range p.candidates(&info) {
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
	now := time.Now()
	kp, err := res.Keypair(now)
	res.Wipe()
	if err != nil {
		p.h.Stats.Drops.Add(batch.Handshake, 1)
		return
	}
	s := &Session{Peer: p.h, Pipe: p.pipe, Key: kp}
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
	// Both sides initiating: the smaller FQDN's init wins, the other side
	// answers it.
	if p.ini != nil && p.env.Self < p.h.FQDN {
		return
	}
	if err := p.env.Guard.Check(R.PeerIdentity, R.PeerTimestamp); err != nil {
		p.h.Stats.Drops.Add(batch.Handshake, 1)
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
	s := &Session{Peer: p.h, Pipe: p.pipe, Key: kp, msg1Time: R.PeerTimestamp.UnixNano()}
	p.env.Tables.Set(idx, s)
	p.env.Tables.Remove(p.nextIdx) // a newer init supersedes an unconfirmed one
	r := Route{Addr: m.From}
	if m.Relayed {
		info := p.h.Info()
		r, _ = p.env.relayRoute(info.Relay)
	}
	p.next, p.nextIdx, p.nextRt = s, idx, r
	if p.ini != nil { // we lost the tie
		p.env.Tables.Remove(p.iniIdx)
		p.ini, p.iniIdx = nil, 0
	}
	hdr := messages.HandshakeHeader{Type: messages.TypeHandshakeResp, Sender: idx, Receiver: R.PeerIndex}
	buf := make([]byte, messages.RelayHeaderLen+hdr.Len()+len(msg2))
	n := hdr.Put(buf[messages.RelayHeaderLen:])
	copy(buf[messages.RelayHeaderLen+n:], msg2)
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
	p.h.setUp(now)
}

// sendKeepalive sends an empty data packet on the current session.
func (p *peerActor) sendKeepalive(now time.Time) {
	if p.cur == nil {
		return
	}
	c, ok := p.cur.Key.NextCounter()
	if !ok {
		return
	}
	buf := make([]byte, batch.Headroom+seal.Overhead)
	if _, err := p.cur.Key.Seal(buf[messages.RelayHeaderLen:], 0, c, buf[batch.Headroom:batch.Headroom]); err != nil {
		return
	}
	if p.env.sendFramed(buf, p.route) {
		p.h.Stats.LastSent.Store(now.UnixNano())
	}
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
			p.startHandshake(now)
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
		if p.cur.Key.NeedsRekey(now) && (p.ini == nil || now.Sub(p.iniSent) >= t.HandshakeRetry) {
			p.startHandshake(now)
		}
	}
	auth, rx := p.h.Stats.Drops.Get(batch.Auth), p.h.Stats.RxPackets.Load()
	if auth-p.lastAuth > t.AuthFailLimit && rx == p.lastRx {
		p.fail("repeated authentication failures")
	}
	p.lastAuth, p.lastRx = auth, rx
	p.timer.Reset(t.Tick)
}
