package dataplane

import (
	"bytes"
	"errors"
	"net/netip"
	"runtime"
	"time"

	"github.com/cyphonic/cyphonic-go/messages"
	"github.com/cyphonic/cyphonic-go/transport/udp"
	"github.com/cyphonic/cyphonic-go/tun"
)

// yield lets the Go scheduler run another goroutine. The readers and
// writers call it after every batch: under load they never block (there
// is always more to read or write), and a goroutine that does not block
// keeps its P until sysmon preempts it after 10 ms, while the goroutines
// that a ping needs next (a crypto worker, a sequencer, the other writer)
// wait in its run queue. A batch is tens of microseconds of work; the
// yield costs about a hundred nanoseconds.
func yield() { runtime.Gosched() }

// readErrorPause keeps a reader that hits a persistent error from spinning.
const readErrorPause = 10 * time.Millisecond

// dstAddr returns the destination of an IP packet.
func dstAddr(pkt []byte) (netip.Addr, bool) {
	if len(pkt) == 0 {
		return netip.Addr{}, false
	}
	switch pkt[0] >> 4 {
	case 4:
		if len(pkt) >= 20 {
			return netip.AddrFrom4([4]byte(pkt[16:20])), true
		}
	case 6:
		if len(pkt) >= 40 {
			return netip.AddrFrom16([16]byte(pkt[24:40])), true
		}
	}
	return netip.Addr{}, false
}

// peerGroup collects one destination's packets out of a read batch.
type peerGroup[K comparable] struct {
	key K
	b   *Batch
}

// group finds or adds key's group among gs[:*n].
func group[K comparable](gs []peerGroup[K], n *int, key K, pool *batchPool) *Batch {
	for i := range *n {
		if gs[i].key == key {
			return gs[i].b
		}
	}
	b := pool.Get()
	gs[*n] = peerGroup[K]{key: key, b: b}
	*n++
	return b
}

// readTun is the TUN reader goroutine: read a batch, route each packet by
// destination VIP, send one batch per peer to the peer actor.
func (d *Dataplane) readTun() {
	var groups [MaxBatch]peerGroup[*Handle]
	for {
		b := d.pool.Get()
		bufs, sizes, _ := b.ReadSlices(Headroom)
		n, err := d.cfg.Device.Read(bufs, sizes, 0)
		if err != nil {
			b.Release()
			if errors.Is(err, tun.ErrClosed) || d.stopped() {
				return
			}
			d.log.Warn("tun read", "err", err)
			time.Sleep(readErrorPause)
			continue
		}
		b.Filled(n, Headroom)
		now := time.Now()
		ng := 0
		for i := range b.N {
			p := &b.Pkts[i]
			dst, ok := dstAddr(p.Bytes())
			var h *Handle
			if ok {
				h = d.tables.Route(dst)
			}
			if h == nil {
				if ok {
					d.holdNoRoute(dst, p.Bytes(), now) // the slow path: a tunnel on the first packet
				} else {
					d.global.Add(NoRoute, 1)
				}
				continue
			}
			group(groups[:], &ng, h, d.pool).Move(b, i)
		}
		b.Release()
		for i := range ng {
			h, gb := groups[i].key, groups[i].b
			groups[i] = peerGroup[*Handle]{}
			gb.Stats = &h.Stats
			if !h.Up() {
				d.holdBatch(h, gb, now) // still handshaking: wait for the session
				continue
			}
			d.sendToPeer(h, gb, now)
		}
		yield()
	}
}

// sendToPeer hands an outbound batch for h to its peer actor, within the
// peer's in-flight bound.
func (d *Dataplane) sendToPeer(h *Handle, gb *Batch, now time.Time) {
	gb.Stats = &h.Stats
	pipe := h.Pipe()
	if pipe == nil {
		gb.DropAll(NoSession, nil)
		gb.Release()
		return
	}
	if pipe.OutInflight.Add(1) > d.timing.OutInflight {
		pipe.OutInflight.Add(-1)
		gb.DropAll(QueueFull, nil)
		gb.Release()
		return
	}
	gb.Track(&pipe.OutInflight)
	gb.Born = now
	d.sys.Root().Send(pipe.Peer, gb)
}

func (d *Dataplane) stopped() bool {
	select {
	case <-d.done:
		return true
	default:
		return false
	}
}

// writeTun is the TUN writer goroutine: one batch per peer in turn, each
// first passed through its flow's CoDel (sojourn measured from the socket
// read, so it covers the crypto workers and the sequencer too).
func (d *Dataplane) writeTun() {
	w := tunWriter{dev: d.cfg.Device, global: &d.global, maxDelay: d.timing.MaxQueueDelay}
	w.pkts = make([][]byte, 0, tunWriteBatches*MaxBatch)
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

// tunWriter is the TUN writer's state: the batches it holds for one write.
//
// Under load the TUN writer is the data plane's busiest goroutine (each
// write(2) runs the kernel's TCP receive path for what it delivers), and
// with many peers their batches are small: one Device.Write per batch
// spends as much on the call as on the packets. It takes up to about
// MaxBatch packets, from several peers' batches in fair-queue order, per
// write, so the offload device can coalesce them in one pass; a sparse
// flow's packet still leaves in the first write after it arrives.
type tunWriter struct {
	dev      tun.Device
	global   *Counters
	maxDelay time.Duration
	held     [tunWriteBatches]*Batch
	counts   [tunWriteBatches]int // payloads each held batch put in pkts
	n        int
	pkts     [][]byte
}

// fill takes batches from q, drop policy applied, until it holds about
// MaxBatch packets or q is empty; it reports whether it holds any.
func (w *tunWriter) fill(q *FairQueue) bool {
	for w.n < len(w.held) && len(w.pkts) < MaxBatch {
		it, ok := q.Next()
		if !ok {
			break
		}
		b := it.Batch
		if !dequeueDrops(it, w.maxDelay, w.global) {
			b.Release()
			continue
		}
		p := b.Payloads()
		w.pkts = append(w.pkts, p...)
		w.held[w.n], w.counts[w.n] = b, len(p)
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
		written, err := w.dev.Write(w.pkts, 0)
		if err != nil {
			failed = len(w.pkts) - written
		}
	}
	for i := w.n - 1; i >= 0; i-- {
		b := w.held[i]
		if f := min(failed, w.counts[i]); f > 0 && b.Stats != nil {
			b.Stats.Drops.Add(TunError, uint64(f))
			failed -= f
		}
		b.Release()
		w.held[i] = nil
	}
	w.n = 0
	clear(w.pkts)
	w.pkts = w.pkts[:0]
}

// dequeueDrops is the queue-delay policy where a batch leaves its flow:
// past maxDelay the whole batch goes (a hard bound for a stalled consumer),
// otherwise the flow's CoDel picks packets to drop early. It reports
// whether anything is left to write.
func dequeueDrops(it Item, maxDelay time.Duration, global *Counters) bool {
	b, now := it.Batch, time.Now()
	if now.Sub(b.Born) > maxDelay {
		b.DropAll(QueueDelay, global)
		return false
	}
	if b.Flow != nil {
		b.DropLate(&b.Flow.CoDel, now, it.Backlog, global)
	}
	return true
}

// readUDP is a socket reader goroutine: read a batch, send data packets per
// session to the crypto workers, and everything else to whoever handles it.
//
// Each session's batch is born when the kernel received its oldest packet,
// so the queue-delay drops downstream (CoDel, MaxQueueDelay) count the time
// spent in the socket's receive queue. That queue is a FIFO shared by all
// peers that only the kernel's tail drop bounds (at megabytes); with the
// wait counted, CoDel drops early enough for TCP senders to back off before
// it fills, and the queue an idle peer's packet waits behind stays short.
func (d *Dataplane) readUDP(c *udp.Conn) {
	var groups inGroups
	var stamps [MaxBatch]int64
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
		for i := range groups.n {
			g := &groups.g[i]
			d.toCrypto(g.key, g.b, bornAt(groups.oldest[i], now))
		}
		groups.reset()
		yield()
	}
}

// inGroups splits one read batch into batches of one session each (a
// batch is opened with one key) without reordering any peer's packets.
//
// The sequence a peer's inbound batches get (toCrypto, Pipe.InSeq) is the
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
	g      [MaxBatch]peerGroup[*Session]
	oldest [MaxBatch]int64 // per group, the earliest kernel stamp
	n      int
}

// add moves packet i of src, of session s and kernel stamp stamp, into its
// group.
func (gs *inGroups) add(s *Session, src *Batch, i int, stamp int64, pool *batchPool) {
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
	b := pool.Get()
	b.Move(src, i)
	gs.g[gs.n] = peerGroup[*Session]{key: s, b: b}
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
func (d *Dataplane) toCrypto(s *Session, b *Batch, born time.Time) {
	b.Stats = &s.Peer.Stats
	pipe := s.Pipe
	if pipe == nil || pipe != s.Peer.Pipe() {
		b.DropAll(UnknownIndex, nil) // a session of a past incarnation
		b.Release()
		return
	}
	if pipe.InInflight.Add(1) > d.timing.InInflight {
		pipe.InInflight.Add(-1)
		b.DropAll(QueueFull, nil)
		b.Release()
		return
	}
	b.Track(&pipe.InInflight)
	b.Op, b.Key, b.Reply, b.Session, b.Born, b.Work = opOpen, s.Key, pipe.SeqIn, s, born, pipe.OpenWork
	b.Seq = pipe.InSeq.Add(1) - 1
	d.crypto.Submit(d.sys.Root(), b)
}

// classify looks at one datagram. For a data packet it returns its session
// (the caller batches it); everything else is handled here and nil
// returned. Every packet that goes nowhere is counted.
func (d *Dataplane) classify(p *Packet) *Session {
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
		d.onReply(hsJob{resp: &Response{Header: h, Msg: bytes.Clone(msg), From: p.From, Relayed: p.Relayed}}, h.Receiver)
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
		if !d.out.PushControl(Control{Pkt: reply, To: p.From}) {
			d.global.Add(QueueFull, 1)
		}
	case messages.TypeSignaling, messages.TypeLoginReply, messages.TypeProbeReply:
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

// writeUDP is the socket writer goroutine: control packets first, then one
// batch per peer in turn; batches that waited too long are dropped.
func (d *Dataplane) writeUDP() {
	var one [1][]byte
	var to [1]netip.AddrPort
	maxDelay := d.timing.MaxQueueDelay
	for {
		select {
		case <-d.done:
			return
		case <-d.out.Ready():
		}
		for {
			it, ok := d.out.Next()
			if !ok {
				break
			}
			if it.Batch == nil {
				c, err := d.cfg.Bind.ConnFor(it.Control.To)
				if err != nil {
					d.global.Add(SendError, 1)
					continue
				}
				one[0], to[0] = it.Control.Pkt, it.Control.To
				if _, err := c.WriteBatch(one[:], to[:]); err != nil {
					d.global.Add(SendError, 1)
				}
				one[0] = nil
				continue
			}
			d.writeBatch(it, maxDelay)
			yield()
		}
	}
}

func (d *Dataplane) writeBatch(it Item, maxDelay time.Duration) {
	b := it.Batch
	defer b.Release()
	if !dequeueDrops(it, maxDelay, &d.global) {
		return
	}
	now := time.Now()
	c, err := d.cfg.Bind.ConnFor(b.Dest)
	if err != nil {
		b.DropAll(SendError, &d.global)
		return
	}
	pkts, eps := b.WriteSlices()
	if len(pkts) == 0 {
		return
	}
	sent, _ := c.WriteBatch(pkts, eps)
	if b.Stats == nil {
		return
	}
	var bytes uint64
	for _, pk := range pkts[:sent] {
		bytes += uint64(len(pk))
	}
	b.Stats.TxPackets.Add(uint64(sent))
	b.Stats.TxBytes.Add(bytes)
	b.Stats.LastSent.Store(now.UnixNano())
	if sent < len(pkts) {
		b.Stats.Drops.Add(SendError, uint64(len(pkts)-sent))
	}
}
