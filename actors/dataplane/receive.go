package dataplane

import (
	"bytes"
	"errors"
	"net/netip"
	"time"

	"github.com/cyphonic/cyphonic-go/messages"
	"github.com/cyphonic/cyphonic-go/transport/seal"
	"github.com/cyphonic/cyphonic-go/transport/udp"
	"github.com/cyphonic/cyphonic-go/tun"
)

// The inbound path, in the order a datagram takes it (send.go is the
// mirror):
//
//  1. routineReadUDP (goroutine, one per socket) reads a batch with
//     recvmmsg and classifies each datagram (classify): a data packet is
//     looked up by its receiver index in d.tables and grouped by session;
//     handshake messages, cookie replies, unknown-index answers and probes
//     go to their handlers (ingress.go, recovery.go) and signaling to the
//     control plane. Each group takes a slot of its peer's inbound
//     in-flight bound (peerPipe.InInflight) and its sequencer-in slot in
//     toCrypto, which submits it to the crypto workers through the peer's
//     open queue (peerPipe.OpenWork): no peer actor on the way in.
//  2. openBatch (a crypto worker actor, crypto.go; the reader itself
//     for a batch of at most 2 packets, workerPool.submit) authenticates
//     and opens every packet in place and sends the batch to the peer's
//     sequencer-in.
//  3. toTun (sequencer-in, package sequencer) runs on the batches in slot
//     order: the sequential stage. It checks the replay window and the
//     inner source address, updates the peer's counters, tells the peer
//     actor of a confirmed session or a roam (a message per batch, only
//     when something changed), and queues the batch on the peer's flow at
//     the TUN writer (deliver).
//  4. routineWriteTUN (goroutine) takes batches of several peers in
//     fair-queue order, applies the queue-delay drops and writes them with
//     one Device.Write; Release gives the in-flight slot back.
//
// As outbound, one stage owns a batch at a time; the replay window is
// touched only by the session's sequencer-in, so it needs no lock.

// routineReadUDP is a socket reader goroutine: read a batch, send data packets per
// session to the crypto workers, and everything else to whoever handles it.
//
// Each session's batch is born when the kernel received its oldest packet,
// so the queue-delay drops downstream (CoDel, MaxQueueDelay) count the time
// spent in the socket's receive queue. That queue is a FIFO shared by all
// peers that only the kernel's tail drop bounds (at megabytes); with the
// wait counted, CoDel drops early enough for TCP senders to back off before
// it fills, and the queue an idle peer's packet waits behind stays short.
func (d *Dataplane) routineReadUDP(c *udp.Conn) {
	var groups inGroups
	var stamps [maxBatch]int64
	var y yielder
	for {
		b := d.pool.Get()
		bufs, sizes, eps := b.ReadSlices(0)
		n, err := c.ReadBatchTimes(bufs, sizes, eps, stamps[:])
		if err != nil {
			b.Release()
			if errors.Is(err, udp.ErrClosed) || d.stopped() {
				return
			}
			d.log.Warn("udp read", "err", err)
			time.Sleep(readErrorPause)
			continue
		}
		b.Filled(n, 0)
		for i := range b.N {
			p := &b.Pkts[i]
			if p.Drop != OK {
				d.global.Add(p.Drop, 1)
				continue
			}
			if s := d.classify(p); s != nil {
				groups.add(s, b, i, stamps[i], d.pool)
			}
		}
		b.Release()
		now := time.Now()
		timed := d.sojourn.enabled()
		for i := range groups.n {
			g := &groups.g[i]
			if timed {
				g.b.ts.handed = now
			}
			d.toCrypto(g.key, g.b, bornAt(groups.oldest[i], now))
		}
		groups.reset()
		y.after()
	}
}

// classify looks at one datagram. For a data packet it returns its session
// (the caller batches it); everything else is handled here and nil
// returned. Every packet that goes nowhere is counted.
func (d *Dataplane) classify(p *packet) *peerSession {
	pkt := p.Bytes()
	var token messages.RelayToken
	if len(pkt) > 0 && messages.PacketType(pkt[0]) == messages.TypeRelay {
		tok, inner, err := messages.ParseRelay(pkt)
		if err != nil {
			d.global.Add(reasonFor(err), 1)
			return nil
		}
		if len(inner) == 0 {
			return nil // a bind echo: nothing to do
		}
		// The inner packet is end-to-end authenticated; the token only
		// mattered to TRS (and names our side: a cookie reply goes back
		// under it).
		p.Off += messages.RelayHeaderLen
		p.Len -= messages.RelayHeaderLen
		p.Relayed = true
		pkt, token = inner, tok
	}
	t, err := messages.PeekType(pkt)
	if err != nil {
		d.global.Add(reasonFor(err), 1)
		return nil
	}
	switch t {
	case messages.TypeData:
		h, err := messages.ParseDataHeader(pkt)
		if err != nil {
			d.global.Add(reasonFor(err), 1)
			return nil
		}
		s := d.tables.Session(h.Receiver)
		if s == nil {
			d.global.Add(UnknownIndex, 1)
			d.answerUnknown(p, h, token)
			return nil
		}
		if s.Key == nil {
			d.global.Add(UnknownIndex, 1) // reserved for a handshake in progress
			return nil
		}
		return s
	case messages.TypeHandshakeInit:
		d.onInit(p, pkt, token)
	case messages.TypeHandshakeResp:
		h, msg, err := messages.ParseHandshake(pkt)
		if err != nil {
			d.global.Add(reasonFor(err), 1)
			return nil
		}
		d.onReply(hsJob{resp: &rawResponse{Header: h, Msg: bytes.Clone(msg), From: p.From, Relayed: p.Relayed}}, h.Receiver)
	case messages.TypeCookieReply:
		rcv, body, err := messages.ParseCookieReply(pkt)
		if err != nil {
			d.global.Add(reasonFor(err), 1)
			return nil
		}
		d.onReply(hsJob{ckRcv: rcv, ck: bytes.Clone(body)}, rcv)
	case messages.TypeUnknownIndex:
		u, err := messages.ParseUnknownIndex(pkt)
		if err != nil {
			d.global.Add(reasonFor(err), 1)
			return nil
		}
		d.lost(u, p.From, p.Relayed)
	case messages.TypeProbe:
		pr, err := messages.ParseProbe(pkt)
		if err != nil {
			d.global.Add(reasonFor(err), 1)
			return nil
		}
		if p.Relayed {
			return nil // the observed address would be TRS's
		}
		reply := make([]byte, messages.ProbeReplyLen)
		messages.ProbeReply{ID: pr.ID, Observed: p.From}.Put(reply)
		if !d.out.PushControl(controlPkt{Pkt: reply, To: p.From}) {
			d.global.Add(QueueFull, 1)
		}
	case messages.TypeSignaling, messages.TypeLoginReply, messages.TypeLoginCookie, messages.TypeProbeReply:
		if d.cfg.OnControl != nil && !p.Relayed {
			d.cfg.OnControl(bytes.Clone(pkt), p.From)
		}
	default:
		d.global.Add(Malformed, 1)
	}
	return nil
}

func reasonFor(err error) Reason {
	switch {
	case errors.Is(err, messages.ErrTruncated):
		return Truncated
	default:
		return Malformed
	}
}

// inGroups splits one read batch into batches of one session each (a
// batch is opened with one key) without reordering any peer's packets.
//
// The sequence a peer's inbound batches get (toCrypto, peerPipe.InSeq) is the
// order the groups are handed on, and sequencer-in releases in that order,
// so a peer's groups must follow each other as its packets did on the
// wire. Around a rekey one read can hold both sessions of a peer, even
// interleaved: the initiator confirms a new session with a keepalive that
// leaves ahead of its data still queued on the old one, so the socket
// holds [new, old..., new...]. Grouping by session alone would put the old
// packets after the new ones; so a packet joins its session's group only
// if that group is still the latest of its pipe, and otherwise starts a
// new group. Peers never interleave with each other's order (each has its
// own sequencer), so they share groups' slots freely.
type inGroups struct {
	g      [maxBatch]peerGroup[*peerSession]
	oldest [maxBatch]int64 // per group, the earliest kernel stamp
	n      int
}

// add moves packet i of src, of session s and kernel stamp stamp, into its
// group.
func (gs *inGroups) add(s *peerSession, src *batch, i int, stamp int64, pool *batchPool) {
	for j := gs.n - 1; j >= 0; j-- {
		if o := gs.g[j].key; o.Pipe == s.Pipe {
			if o == s {
				gs.g[j].b.Move(src, i)
				gs.oldest[j] = min(gs.oldest[j], stamp)
				return
			}
			break // the pipe's latest group is another session's
		}
	}
	b := pool.GetEmpty() // it takes the buffers of the packets moved in
	b.Move(src, i)
	gs.g[gs.n] = peerGroup[*peerSession]{key: s, b: b}
	gs.oldest[gs.n] = stamp
	gs.n++
}

// reset forgets the groups (their batches were handed on).
func (gs *inGroups) reset() {
	clear(gs.g[:gs.n])
	gs.n = 0
}

// bornAt is when a batch whose oldest packet the kernel stamped at stamp
// (Unix ns, 0 if unknown) entered the pipeline. The stamp is wall-clock
// time: one from the future (the clock stepped back) counts as now.
func bornAt(stamp int64, now time.Time) time.Time {
	if stamp <= 0 || stamp >= now.UnixNano() {
		return now
	}
	return time.Unix(0, stamp)
}

// toCrypto hands an inbound batch of one session to a worker, which passes
// it on to the peer's sequencer-in.
func (d *Dataplane) toCrypto(s *peerSession, b *batch, born time.Time) {
	b.stats = &s.Peer.Stats
	pipe := s.Pipe
	if pipe == nil || pipe != s.Peer.Pipe() {
		b.DropAll(UnknownIndex, nil) // a session of a past incarnation
		b.Release()
		return
	}
	if nb := b.admit(pipe.InInflight, pipe.InShare); nb != b {
		b.shedUnopened()
		b.Release()
		if b = nb; b == nil {
			return
		}
	}
	b.op, b.pipe, b.key, b.session, b.born = opOpen, pipe, s.Key, s, born
	b.seq = pipe.InSeq.Add(1) - 1
	d.crypto.submit(d.sys.Root(), b)
}

// openBatch runs in a crypto worker: it authenticates and decrypts every
// live packet in place, leaving the inner packet and its counter (the
// replay window is checked later, in order, by toTun). A packet that fails
// is marked with why and counted against the peer; nothing allocates, and
// the keys' counters are updated once for the batch.
func openBatch(b *batch) {
	opened, openedBytes := 0, 0
	for i := range b.N {
		p := &b.Pkts[i]
		if p.Drop != OK {
			continue
		}
		pt, counter, err := b.key.OpenWith(&b.nonce, p.Bytes())
		if err != nil {
			r := Auth
			switch {
			case errors.Is(err, seal.ErrTruncated):
				r = Truncated
			case errors.Is(err, seal.ErrWrongIndex), errors.Is(err, seal.ErrBadType):
				r = Malformed
			case errors.Is(err, seal.ErrCounterLimit):
				r = CounterLimit
			}
			p.Drop = r
			b.stats.Drops.Add(r, 1)
			continue
		}
		opened++
		openedBytes += p.Len
		p.Off += seal.HeaderLen
		p.Len = len(pt)
		p.Counter = counter
	}
	b.key.CountRecv(opened, openedBytes)
}

// toTun runs in sequencer-in, the sequential stage: the replay window is
// checked here, after authentication and in order, then the batch goes to
// the TUN writer.
func (d *Dataplane) toTun(b *batch) {
	sess, pipe := b.session, b.pipe
	if sess == nil || b.key == nil {
		b.Release()
		return
	}
	if !b.ts.handed.IsZero() {
		b.ts.queued = time.Now()
	}
	h := sess.Peer
	route := h.route.Load()
	var roam netip.AddrPort
	var rx, rxBytes uint64
	lost := b.key.Replay.Lost()
	for i := range b.N {
		pk := &b.Pkts[i]
		if pk.Drop != OK {
			continue
		}
		if !b.key.Replay.Accept(pk.Counter) {
			pk.Drop = Replay
			h.Stats.Drops.Add(Replay, 1)
			continue
		}
		if payload := pk.Buf[pk.Off : pk.Off+pk.Len]; isProbe(payload) {
			// An echo may be the initiator's first data packet: the peer
			// actor must install the session before it answers on it.
			if !sess.confirmed.Load() && sess.confirmed.CompareAndSwap(false, true) {
				d.sys.Root().Send(pipe.Peer, confirmed{sess})
			}
			d.onProbe(h, pipe, payload, pk.From, pk.Relayed)
			pk.Len = 0 // counted like a keepalive, never written to the TUN
		} else if !h.SourceAllowed(payload) {
			pk.Drop = SpoofedSource
			h.Stats.Drops.Add(SpoofedSource, 1)
			continue
		}
		rx++
		rxBytes += uint64(pk.Len + seal.HeaderLen + seal.Overhead) // wire bytes, like TxBytes
		if !pk.Relayed && route != nil && sess.Confirmed() && (route.Relay || route.Addr != pk.From) {
			roam = pk.From // roaming, or a relayed peer reaching us directly
		}
	}
	if n := b.key.Replay.Lost() - lost; n > 0 {
		h.Stats.Lost.Add(n) // the batch slid the window over counters never seen
	}
	if rx > 0 {
		h.Stats.RxPackets.Add(rx)
		h.Stats.RxBytes.Add(rxBytes)
		h.Stats.LastRecv.Store(time.Now().UnixNano())
		if !sess.confirmed.Load() && sess.confirmed.CompareAndSwap(false, true) {
			d.sys.Root().Send(pipe.Peer, confirmed{sess})
		}
		if roam.IsValid() {
			d.sys.Root().Send(pipe.Peer, roamed{roam})
		}
	}
	if !d.deliver(b) {
		b.DropAll(QueueFull, nil)
		b.Release()
	}
}

// deliver queues an in-order inbound batch, on its peer's inbound flow
// (b.flow()), for the TUN writer. The writer serves peers round-robin, by
// packets, so a bulk sender cannot make another peer's packets wait behind
// its backlog.
func (d *Dataplane) deliver(b *batch) bool {
	return d.pushLanes(d.in, b, openedICMP)
}

// routineWriteTUN is the TUN writer goroutine: peers' batches in turn, each
// first passed through its flow's CoDel (sojourn measured from the socket
// read, so it covers the crypto workers and the sequencer too).
func (d *Dataplane) routineWriteTUN() {
	w := tunWriter{dev: d.cfg.Device, global: &d.global, maxDelay: d.timing.MaxQueueDelay, sojourn: &d.sojourn, offset: tun.WriteHeadroom}
	w.pkts = make([][]byte, 0, tunWriteBatches*maxBatch)
	for {
		select {
		case <-d.done:
			return
		case <-d.in.Ready():
		}
		for w.fill(d.in) {
			w.flush()
			yield()
		}
	}
}

// tunWriteBatches bounds how many batches (of different peers) one
// Device.Write takes.
const tunWriteBatches = 8

// tunWritePkts is where the writer stops taking batches for one
// Device.Write: a write ends once it holds this many packets (a batch is
// never cut, so one may carry up to maxBatch). Under 10 pushers a write
// of 64 packets took ~0.6–0.9 ms of the writer's time (the kernel's TCP
// receive of what it delivers runs inside it), and an idle peer's ping
// that came during one waited for all of it, then for the yield after it;
// the reader, which runs in the writer's yields, drained the socket's
// shared FIFO (where the ping waits behind every peer's bulk) less often.
// Half of that: the ping's residual wait and the socket buffer's both
// fell, the throughput and the CPU per byte did not rise (BENCHMARKS.md,
// session 6). A quarter (16) gave about as much again, but in 4 of its
// 14 runs one of the ten flows took 1.8-3 times the median's share (2 of
// 17 at 32, 2 of 18 before): the smaller the writes, the more of the
// queue stands in the socket's FIFO, where no fair queue evens the flows
// out.
const tunWritePkts = maxBatch / 2

// tunWriter is the TUN writer's state: the batches it holds for one write.
//
// Under load the TUN writer is the data plane's busiest goroutine (each
// write(2) runs the kernel's TCP receive path for what it delivers), and
// with many peers their batches are small: one Device.Write per batch
// spends as much on the call as on the packets. It takes about
// tunWritePkts packets, from several peers' batches in fair-queue order, per
// write, so the offload device can coalesce them in one pass; a sparse
// flow's packet still leaves in the first write after it arrives.
type tunWriter struct {
	dev      tun.Device
	global   *dropCounters
	maxDelay time.Duration
	sojourn  *sojourns // nil: not recorded (tests)
	held     [tunWriteBatches]*batch
	counts   [tunWriteBatches]int  // payloads each held batch put in pkts
	pings    [tunWriteBatches]bool // a held batch is a ping's (sojourn recording only)
	n        int
	pkts     [][]byte
	offset   int // headroom before each packet in pkts: tun.WriteHeadroom while every packet has it
}

// take appends b's live payloads (as batch.Payloads) to w.pkts, each with
// tun.WriteHeadroom bytes before it, so the offload device writes a packet
// that heads no GRO run from the batch's buffer, where the seal header was,
// instead of copying it. A packet without that much room before it (none
// does in this pipeline: every opened packet follows its seal header)
// turns the whole write to no headroom. It returns how many it took.
func (w *tunWriter) take(b *batch) int {
	n := 0
	for i := range b.N {
		p := &b.Pkts[i]
		if p.Drop != OK || p.Len == 0 {
			continue
		}
		if p.Off < w.offset {
			for j := range w.pkts {
				w.pkts[j] = w.pkts[j][w.offset:]
			}
			w.offset = 0
		}
		w.pkts = append(w.pkts, p.Buf[p.Off-w.offset:p.Off+p.Len])
		n++
	}
	return n
}

// fill takes batches from q, drop policy applied, until it holds about
// tunWritePkts packets or q is empty; it reports whether it holds any.
func (w *tunWriter) fill(q *fairQueue) bool {
	for w.n < len(w.held) && len(w.pkts) < tunWritePkts {
		it, ok := q.Next()
		if !ok {
			break
		}
		b := it.Batch
		ping := false
		if w.sojourn != nil && !b.ts.handed.IsZero() {
			ping = w.sojourn.inbound(b, time.Now()) == classPing
		}
		if !dequeueDrops(it, w.maxDelay, w.global) {
			b.Release()
			continue
		}
		w.held[w.n], w.counts[w.n], w.pings[w.n] = b, w.take(b), ping
		w.n++
	}
	return w.n > 0
}

// flush writes the held packets and releases their batches. Packets the
// device rejects are counted against the batches from the last one back
// (the device reports a number, not which ones).
func (w *tunWriter) flush() {
	failed := 0
	if len(w.pkts) > 0 {
		var t0 time.Time
		timed := w.sojourn != nil && w.sojourn.enabled()
		if timed {
			t0 = time.Now()
		}
		written, err := w.dev.Write(w.pkts, w.offset)
		if err != nil {
			failed = len(w.pkts) - written
		}
		if timed {
			done := time.Now()
			w.sojourn.record(stTunWrite, classOfLen(len(w.pkts)), t0, done)
			for i := range w.n {
				if w.pings[i] {
					w.sojourn.echoTUNWritten(w.held[i], done)
				}
			}
		}
	}
	for i := w.n - 1; i >= 0; i-- {
		b := w.held[i]
		if f := min(failed, w.counts[i]); f > 0 && b.stats != nil {
			b.stats.Drops.Add(TunError, uint64(f))
			failed -= f
		}
		b.Release()
		w.held[i], w.pings[i] = nil, false
	}
	w.n = 0
	clear(w.pkts)
	w.pkts = w.pkts[:0]
	w.offset = tun.WriteHeadroom
}
