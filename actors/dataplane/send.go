package dataplane

import (
	"errors"
	"net/netip"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/cyphonic/cyphonic-go/messages"
	"github.com/cyphonic/cyphonic-go/transport/seal"
	"github.com/cyphonic/cyphonic-go/transport/udp"
	"github.com/cyphonic/cyphonic-go/tun"
)

// The outbound path, in the order a packet takes it (receive.go is the
// mirror):
//
//  1. routineReadTUN (goroutine, one per TUN queue) reads a batch from the
//     TUN device, looks each packet's destination VIP up in d.tables and
//     splits the batch per peer. A peer that is not up gets its packets
//     held (held.go); the rest go to sendToPeer, which takes a slot of the
//     peer's outbound in-flight bound (peerPipe.OutInflight) and hands the
//     batch to the peer actor: the one mailbox hop that orders it.
//  2. peerActor.outbound (the peer actor) stamps each packet with the
//     current session's next counter and the batch with its sequencer slot
//     and route, and submits it to the crypto workers through the peer's
//     seal queue (peerPipe.SealWork).
//  3. sealBatch (a crypto worker actor, crypto.go; the peer actor itself
//     for a batch of at most 2 packets, workerPool.submit) seals every
//     packet in place, in parallel with the other workers, and sends the
//     batch to the peer's sequencer-out.
//  4. toSocket (sequencer-out, package sequencer) runs on the batches in
//     slot order and queues them on the peer's flow at the socket writer.
//  5. routineWriteUDP (goroutine) serves control packets first, then the
//     peers' flows round-robin (fairQueue), applies the queue-delay drops
//     and writes the batches it took, several peers' in one sendmmsg
//     (udpWriter); Release gives the in-flight slot back.
//
// A batch is owned by one stage at a time and moved whole, so nothing on
// this path takes a lock per packet; the fair queues lock once per batch.

// routineReadTUN is a TUN reader goroutine, one per queue of the device: read a
// batch, route each packet by destination VIP, send one batch per peer to
// the peer actor. Which queue a packet comes on is the kernel's choice
// (tunqueues.go); a peer's flows come on the queue its flows are written
// on, so readers rarely hand one peer's packets to its actor at once.
func (d *Dataplane) routineReadTUN(dev tun.Device) {
	var groups [maxBatch]peerGroup[*peerHandle]
	var y yielder
	mc, _ := dev.(tun.MalformedCounter)
	var malformed uint64 // mc's count already added to d.global
	for {
		b := d.pool.Get()
		bufs, sizes, _ := b.ReadSlices(headroom)
		n, err := dev.Read(bufs, sizes, 0)
		if mc != nil {
			if m := mc.Malformed(); m != malformed {
				d.global.Add(TunMalformed, m-malformed)
				malformed = m
			}
		}
		if err != nil {
			b.Release()
			if errors.Is(err, tun.ErrClosed) || d.stopped() {
				return
			}
			d.log.Warn("tun read", "err", err)
			time.Sleep(readErrorPause)
			continue
		}
		b.Filled(n, headroom)
		now := time.Now()
		ng := 0
		for i := range b.N {
			p := &b.Pkts[i]
			dst, ok := dstAddr(p.Bytes())
			var h *peerHandle
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
			groups[i] = peerGroup[*peerHandle]{}
			gb.stats = &h.Stats
			if !h.Up() {
				d.holdBatch(h, gb, now) // still handshaking: wait for the session
				continue
			}
			d.sendToPeer(h, gb, now)
		}
		y.after()
	}
}

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
	b   *batch
}

// group finds or adds key's group among gs[:*n].
func group[K comparable](gs []peerGroup[K], n *int, key K, pool *batchPool) *batch {
	for i := range *n {
		if gs[i].key == key {
			return gs[i].b
		}
	}
	b := pool.GetEmpty() // it takes the buffers of the packets moved in
	gs[*n] = peerGroup[K]{key: key, b: b}
	*n++
	return b
}

// sendToPeer hands an outbound batch for h to its peer actor, within the
// peer's in-flight bound.
func (d *Dataplane) sendToPeer(h *peerHandle, gb *batch, now time.Time) {
	gb.stats = &h.Stats
	pipe := h.Pipe()
	if pipe == nil {
		gb.DropAll(NoSession, nil)
		gb.Release()
		return
	}
	if nb := gb.admit(pipe.OutInflight, pipe.OutShare); nb != gb {
		gb.DropAll(QueueFull, nil)
		gb.Release()
		if gb = nb; gb == nil {
			return
		}
	}
	gb.born = now
	if d.sojourn.enabled() {
		gb.ts.handed, gb.ts.class = now, classOf(gb)
		if gb.ts.class == classPing {
			d.sojourn.echoTUNRead(gb, now)
		}
	}
	d.sys.Root().Send(pipe.Peer, gb.peerMessage())
}

// outbound stamps a batch from the TUN reader and hands it to a worker.
func (p *peerActor) outbound(ctx actor.SenderContext, b *batch) {
	b.stats = &p.h.Stats
	if p.cur == nil || p.stopping {
		b.DropAll(NoSession, nil)
		b.Release()
		return
	}
	if time.Since(b.born) > p.d.timing.MaxQueueDelay {
		b.DropAll(QueueDelay, nil)
		b.Release()
		return
	}
	key := p.cur.Key
	for i := range b.N {
		pk := &b.Pkts[i]
		if pk.Drop != OK {
			continue
		}
		c, ok := key.NextCounter()
		if !ok {
			pk.Drop = CounterLimit
			p.h.Stats.Drops.Add(CounterLimit, 1)
			continue
		}
		pk.Counter = c
		pk.ICMP = isICMP(pk.Bytes()) // for its lane at the socket writer (pushLanes)
	}
	b.op, b.pipe, b.key, b.seq, b.route = opSeal, p.pipe, key, p.nextSeq, p.route
	p.nextSeq++
	if !b.ts.handed.IsZero() {
		b.ts.actor, b.ts.handed = b.ts.handed, time.Now()
	}
	p.d.crypto.submit(ctx, b)
}

// sendHeld sends the packets the data plane held for this peer while it
// had no tunnel (a first packet to its VIP, or packets during a
// re-handshake), right after a session is installed. It runs inside the
// actor after setUp, so the held packets take sequence numbers before any
// batch the TUN reader sends once it sees the peer up.
func (p *peerActor) sendHeld(now time.Time) {
	if p.pipe == nil {
		return
	}
	b := p.d.takeHeld(p.h)
	if b == nil {
		return
	}
	b.stats = &p.h.Stats
	if nb := b.admit(p.pipe.OutInflight, p.pipe.OutShare); nb != b {
		b.DropAll(QueueFull, nil)
		b.Release()
		if b = nb; b == nil {
			return
		}
	}
	b.born = now
	p.outbound(p.d.sys.Root(), b)
}

// sealBatch runs in a crypto worker: it seals every live packet in place,
// the data header written into the headroom in front of it and the tag
// after it, then (on a relayed route) the relay header in front of that.
// Failures are marked on the packet and counted; nothing allocates, and
// the keys' byte counter is updated once for the batch.
func sealBatch(b *batch) {
	sealed := 0
	for i := range b.N {
		p := &b.Pkts[i]
		if p.Drop != OK {
			continue
		}
		if p.Off < seal.HeaderLen+messages.RelayHeaderLen || cap(p.Buf)-p.Off-p.Len < seal.Overhead {
			p.Drop = Truncated // no headroom or tailroom: a caller bug, never input
			b.stats.Drops.Add(Truncated, 1)
			continue
		}
		dst := p.Buf[p.Off-seal.HeaderLen:]
		out, err := b.key.SealWith(&b.nonce, dst, 0, p.Counter, p.Buf[p.Off:p.Off+p.Len])
		if err != nil {
			p.Drop = CounterLimit
			b.stats.Drops.Add(CounterLimit, 1)
			continue
		}
		sealed += len(out)
		p.Off -= seal.HeaderLen
		p.Len = len(out)
		if b.route.Relay {
			p.Off -= messages.RelayHeaderLen
			p.Len += messages.PutRelayHeader(p.Buf[p.Off:], b.route.Token)
		}
	}
	b.key.CountSent(sealed)
}

// toSocket runs in sequencer-out: batches leave in order to the writer.
func (d *Dataplane) toSocket(b *batch) {
	if !b.ts.handed.IsZero() {
		b.ts.queued = time.Now()
	}
	if !d.pushLanes(d.out, d.out, b, sealedICMP) {
		b.DropAll(QueueFull, nil)
		b.Release()
	}
}

// routineWriteUDP is the socket writer goroutine: control packets first, then one
// batch per peer in turn; batches that waited too long are dropped.
func (d *Dataplane) routineWriteUDP() {
	w := udpWriter{d: d, maxDelay: d.timing.MaxQueueDelay}
	w.pkts = make([][]byte, 0, udpWriteBatches*maxBatch)
	w.eps = make([]netip.AddrPort, 0, udpWriteBatches*maxBatch)
	for {
		select {
		case <-d.done:
			return
		case <-d.out.Ready():
		}
		w.drain(d.out)
	}
}

// drain writes everything q holds: control packets singly, data batches
// several per WriteBatch.
func (w *udpWriter) drain(q *fairQueue) {
	for {
		it, ok := q.Next()
		if !ok {
			if w.flush() {
				w.y.after()
			}
			return
		}
		if it.Batch != nil {
			if w.add(it) && w.flush() {
				w.y.after() // as the readers do after their reads
			}
			continue
		}
		w.flush() // what was taken before it leaves first
		w.control(it.Control)
	}
}

// control sends one control packet.
func (w *udpWriter) control(ctl controlPkt) {
	c, err := w.d.cfg.Bind.ConnFor(ctl.To)
	if err != nil {
		w.d.global.Add(SendError, 1)
		return
	}
	if ctl.HopLimit != 0 {
		if err := c.WriteHopLimited(ctl.Pkt, ctl.To, int(ctl.HopLimit)); err != nil {
			w.d.global.Add(SendError, 1)
		}
		return
	}
	w.one[0], w.to[0] = ctl.Pkt, ctl.To
	if _, err := c.WriteBatch(w.one[:], w.to[:]); err != nil {
		w.d.global.Add(SendError, 1)
	}
	w.one[0] = nil
}

// udpWriteBatches bounds how many batches (of different peers) one
// WriteBatch takes.
const udpWriteBatches = 8

// udpWriter is the socket writer's state: the batches it holds for one
// WriteBatch.
//
// Under load most outbound batches are a peer's one or two TCP ACKs (the
// TUN reader splits each read per peer), and one sendmmsg per batch made
// the socket writer a serial stage of thousands of tiny syscalls a second,
// each a wait for every peer's next batch, an idle peer's ping reply
// included. It takes up to udpWriteBatches batches, in fair-queue order,
// up to about maxBatch packets, for one socket, and sends them with one
// WriteBatch (a sendmmsg with a destination per message; each peer's run
// still one GSO message); a batch alone in the queue still leaves at once.
type udpWriter struct {
	d        *Dataplane
	maxDelay time.Duration
	conn     *udp.Conn // the socket the held batches go to
	held     [udpWriteBatches]*batch
	counts   [udpWriteBatches]int // datagrams each held batch put in pkts
	n        int
	pkts     [][]byte
	eps      []netip.AddrPort
	one      [1][]byte // a control packet
	to       [1]netip.AddrPort
	y        yielder
}

// add takes a dequeued batch, drop policy applied, and reports whether the
// writer should flush now (it holds its limit of batches or packets).
func (w *udpWriter) add(it queueItem) bool {
	b := it.Batch
	if w.d.sojourn.enabled() && !b.ts.handed.IsZero() {
		w.d.sojourn.outbound(b, time.Now())
	}
	if !dequeueDrops(it, w.maxDelay, &w.d.global) {
		b.Release()
		return false
	}
	c, err := w.d.cfg.Bind.ConnFor(b.route.Addr)
	if err != nil {
		b.DropAll(SendError, &w.d.global)
		b.Release()
		return false
	}
	pkts, eps := b.WriteSlices()
	if len(pkts) == 0 {
		b.Release()
		return false
	}
	if w.n > 0 && (c != w.conn || len(w.pkts)+len(pkts) > udpWriteBatches*maxBatch) {
		w.flush()
	}
	w.conn = c
	w.pkts = append(w.pkts, pkts...)
	w.eps = append(w.eps, eps...)
	w.held[w.n], w.counts[w.n] = b, len(pkts)
	w.n++
	return w.n == len(w.held) || len(w.pkts) >= maxBatch
}

// flush sends the held datagrams and releases their batches. Datagrams
// the socket did not take are counted against the batches from the last
// one back (WriteBatch reports a number). It reports whether it wrote.
func (w *udpWriter) flush() bool {
	if w.n == 0 {
		return false
	}
	var t0 time.Time
	timed := w.d.sojourn.enabled()
	if timed {
		t0 = time.Now()
	}
	sent, _ := w.conn.WriteBatch(w.pkts, w.eps)
	now := time.Now()
	if timed {
		c := classOfLen(len(w.pkts))
		if w.n == 1 && !w.held[0].ts.handed.IsZero() {
			c = w.held[0].ts.class
		}
		w.d.sojourn.record(stUDPWrite, c, t0, now)
	}
	failed := len(w.pkts) - sent
	first := 0
	for i := range w.n {
		b, n := w.held[i], w.counts[i]
		if b.stats != nil {
			// Failures are put on the last batches, so this one's
			// failures are what of them reaches back into it.
			f := max(0, min(n, failed-(len(w.pkts)-first-n)))
			var bytes uint64
			for _, pk := range w.pkts[first : first+n-f] {
				bytes += uint64(len(pk))
			}
			b.stats.TxPackets.Add(uint64(n - f))
			b.stats.TxBytes.Add(bytes)
			b.stats.LastSent.Store(now.UnixNano())
			if f > 0 {
				b.stats.Drops.Add(SendError, uint64(f))
			}
		}
		first += n
		b.Release()
		w.held[i] = nil
	}
	w.n, w.conn = 0, nil
	clear(w.pkts)
	clear(w.eps)
	w.pkts, w.eps = w.pkts[:0], w.eps[:0]
	return true
}
