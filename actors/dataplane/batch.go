// The unit of work of the data path: a fixed array of up to maxBatch
// packets in pooled buffers, plus what the stages of send.go and receive.go
// stamp on it. A *batch changes hands with every message; whoever holds it
// last calls Release.
//
// Nothing here allocates in steady state: buffers are made once and moved
// between batches by swapping slices (see batchPool), and the batch carries
// its own scratch slices for the batch I/O calls and its own sequencer
// message.

package dataplane

import (
	"net/netip"
	"runtime/debug"
	"sync"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/cyphonic/cyphonic-go/actors/supervise"
	"github.com/cyphonic/cyphonic-go/messages"
	"github.com/cyphonic/cyphonic-go/sequencer"
	"github.com/cyphonic/cyphonic-go/transport/seal"
)

// maxBatch is the most packets one batch holds: what one recvmmsg/sendmmsg
// moves, and the size at which a mailbox hop costs less than the crypto.
const maxBatch = 64

// headroom is the room kept in front of an inner packet read from the TUN
// device, so the data header and (on a relayed path) the relay header are
// written in place, without a copy.
const headroom = messages.RelayHeaderLen + messages.DataHeaderLen

// batchOp is what a crypto worker does with a batch.
type batchOp uint8

const (
	opSeal batchOp = iota + 1 // outbound: inner packets at headroom become data packets
	opOpen                    // inbound: data packets become inner packets
)

// packet is one packet in a batch: Buf[Off:Off+Len].
type packet struct {
	Buf     []byte         // the whole pooled buffer
	Off     int            // start of the packet in Buf
	Len     int            // its length
	Counter uint64         // the data packet's counter (nonce)
	From    netip.AddrPort // inbound: the datagram's source
	Relayed bool           // inbound: it came inside a relay frame
	ICMP    bool           // outbound: the inner packet is ICMP (set by the peer actor, before it is sealed)
	Drop    Reason         // non-zero: dropped, skip it (the slot still counts)
}

// Bytes returns the packet.
func (p *packet) Bytes() []byte { return p.Buf[p.Off : p.Off+p.Len] }

// batch is up to maxBatch packets and what the pipeline knows about them.
//
// Ownership: exactly one stage holds a batch at a time (a reader, the peer
// actor, a crypto worker, a sequencer, a writer) and hands it on whole, so
// no field needs a lock. Which stage sets which field is said beside it;
// where a batch goes next follows from op and pipe (next, work, flow), so
// it carries no continuation of its own.
type batch struct {
	Pkts [maxBatch]packet
	N    int

	born  time.Time  // set by the reader: when it entered the path, for queue-delay drops
	stats *peerStats // set by the reader: the peer's counters (nil: none yet)
	// limit is the peer's in-flight bound the reader took a slot of;
	// Release gives the slot back.
	limit *supervise.Limiter
	// share is the peer's part of the node's in-flight budget the reader
	// took charged packets of (admit); Release gives them back.
	share   *share
	charged int

	op   batchOp       // set by the peer actor (send) or the socket reader (receive)
	pipe *peerPipe     // the peer incarnation whose sequencer and flows it goes through
	seq  uint64        // its slot in pipe's sequencer for op
	key  *seal.Keypair // the session keys that seal or open it
	// nonce is the crypto worker's nonce buffer for this batch: inside
	// the pooled batch, so no packet takes one from a pool.
	nonce seal.Nonce
	// route is where a sealed batch goes (send; set by the peer actor).
	route peerRoute
	// session is the session an inbound batch was opened with (receive;
	// set by the socket reader), for the sequential checks in toTun.
	session *peerSession
	// ts: when stages handed it on, for the sojourn histograms
	// (sojourn.go); zero while they are off.
	ts stamps
	// icmp: it holds only ICMP packets and goes on its peer's ICMP lane
	// at the device writer (pushLanes).
	icmp bool

	pool *batchPool
	held int // slots with a buffer (the pool's and Move's count)
	// toPeer and toSeq are b and its sequencer message wrapped as
	// protoactor envelopes, made once with the batch: an actor with
	// receiver middleware (all of supervise's) wraps every other message
	// in a new envelope, one allocation per hop. They never change, so a
	// batch in one mailbox while its other envelope is read races with
	// nothing.
	toPeer, toSeq actor.MessageEnvelope
	seqMsg        sequencer.Batch[*batch]
	seqEntry      [1]sequencer.Entry[*batch]
	bufs          [maxBatch][]byte
	sizes         [maxBatch]int
	eps           [maxBatch]netip.AddrPort
}

// track makes Release give back a slot of l, which the caller has taken:
// the batches a peer has in flight in one direction, bounding its queues.
func (b *batch) track(l *supervise.Limiter) { b.limit = l }

// admit takes a slot of l, the batches a peer may have in flight in one
// direction (bounding its queues), and b's packets of s, its share of the
// node's budget for that direction (bounding the memory of all peers'
// queues together), for Release to give back. It returns the batch to
// hand on: b; or, if the budget refused b, a batch of b's first small
// packets (at most sparseLen of smallPacket bytes: a ping, a TCP ACK),
// which the budget takes anyway, so that a peer over its share still gets
// its pings and ACKs through; or nil if nothing is taken. Whatever is not
// b is the caller's to drop and release.
func (b *batch) admit(l *supervise.Limiter, s *share) *batch {
	if !l.Acquire() {
		return nil
	}
	if s == nil || s.take(b.N) {
		b.track(l)
		b.share, b.charged = s, b.N
		return b
	}
	nb := b.pool.GetEmpty()
	kept := 0
	b.splitOff(nb, func(p *packet) bool {
		if kept < sparseLen && p.Len <= smallPacket {
			kept++
			return true
		}
		return false
	})
	if nb.N == 0 {
		l.Release()
		nb.Release()
		return nil
	}
	s.force(nb.N)
	nb.stats, nb.born, nb.ts = b.stats, b.born, b.ts
	nb.track(l)
	nb.share, nb.charged = s, nb.N
	return nb
}

// smallPacket is the largest packet (inner or sealed) a batch the budget
// refused still lets through (admit): pings, TCP ACKs and DNS queries
// with the data header and tag, not bulk segments.
const smallPacket = 256

// next is the sequencer that takes b after the crypto worker.
func (b *batch) next() *actor.PID {
	if b.op == opOpen {
		return b.pipe.SeqIn
	}
	return b.pipe.SeqOut
}

// work is the peer's queue in front of the crypto workers for b's
// direction.
func (b *batch) work() *flowQueue {
	if b.op == opOpen {
		return b.pipe.OpenWork
	}
	return b.pipe.SealWork
}

// flow is the peer's queue at the device writer for b's direction: the
// socket writer's for a sealed batch, the TUN writer's for an opened one.
func (b *batch) flow() *flowQueue {
	switch {
	case b.op == opOpen && b.icmp:
		return b.pipe.InFlowICMP
	case b.op == opOpen:
		return b.pipe.InFlow
	case b.icmp:
		return b.pipe.FlowICMP
	}
	return b.pipe.Flow
}

// seqMessage returns the message that hands b to its sequencer as slot
// b.seq. It lives inside b, so sending it does not allocate; the sequencer
// reads it once and keeps only b.
func (b *batch) seqMessage() *actor.MessageEnvelope {
	b.seqEntry[0] = sequencer.Entry[*batch]{Seq: b.seq, Item: b}
	b.seqMsg.Entries = b.seqEntry[:]
	return &b.toSeq
}

// peerMessage returns the message that hands b to its peer actor.
func (b *batch) peerMessage() *actor.MessageEnvelope { return &b.toPeer }

// newBatch makes a batch of pool p without buffers.
func newBatch(p *batchPool) *batch {
	b := &batch{pool: p}
	b.toPeer.Message, b.toSeq.Message = b, &b.seqMsg
	return b
}

// Move moves packet i of src to the end of b by swapping slots: src's slot
// i gets b's spare buffer, or none if b came from GetEmpty. It reports
// false if b is full.
func (b *batch) Move(src *batch, i int) bool {
	if b.N == maxBatch {
		return false
	}
	d := 0 // buffers b gains
	if src.Pkts[i].Buf != nil {
		d++
	}
	if b.Pkts[b.N].Buf != nil {
		d--
	}
	b.held, src.held = b.held+d, src.held-d
	b.Pkts[b.N], src.Pkts[i] = src.Pkts[i], b.Pkts[b.N]
	b.N++
	return true
}

// splitOff moves b's live packets that pick chooses, in order, to the end
// of dst (an empty batch: GetEmpty), and closes the gaps they leave in b,
// keeping the order of the rest. It reports how many it moved; dst takes
// only what fits. Slots are swapped, so no packet is copied and the
// buffer counts stay right (Move).
func (b *batch) splitOff(dst *batch, pick func(*packet) bool) int {
	moved, j := 0, 0
	for i := range b.N {
		if p := &b.Pkts[i]; p.Drop == OK && pick(p) && dst.Move(b, i) {
			moved++
			continue // slot i now holds dst's empty slot: a gap
		}
		b.Pkts[i], b.Pkts[j] = b.Pkts[j], b.Pkts[i]
		j++
	}
	b.N = j
	return moved
}

// ReadSlices returns per-packet buffers starting at offset, with sizes and
// endpoints slices, for a batch read (tun.Device.Read, udp.Conn.ReadBatch).
func (b *batch) ReadSlices(offset int) ([][]byte, []int, []netip.AddrPort) {
	for i := range b.bufs {
		b.bufs[i] = b.Pkts[i].Buf[offset:]
	}
	return b.bufs[:], b.sizes[:], b.eps[:]
}

// Filled records n packets read with ReadSlices(offset).
func (b *batch) Filled(n, offset int) {
	b.N = n
	for i := range n {
		p := &b.Pkts[i]
		p.Off, p.Len, p.From, p.Drop, p.Relayed, p.Counter, p.ICMP = offset, b.sizes[i], b.eps[i], OK, false, 0, false
		if p.Len == 0 {
			p.Drop = Truncated
		}
	}
}

// WriteSlices returns the packets not dropped, as slices for a batch write,
// and the matching destinations (all b.route.Addr).
func (b *batch) WriteSlices() ([][]byte, []netip.AddrPort) {
	n := 0
	for i := range b.N {
		p := &b.Pkts[i]
		if p.Drop != OK {
			continue
		}
		b.bufs[n] = p.Bytes()
		b.eps[n] = b.route.Addr
		n++
	}
	return b.bufs[:n], b.eps[:n]
}

// Live counts the packets not dropped.
func (b *batch) Live() int {
	n := 0
	for i := range b.N {
		if b.Pkts[i].Drop == OK {
			n++
		}
	}
	return n
}

// shedUnopened drops an inbound batch's live packets as QueueFull before
// they are opened, and counts them as the peer's Unopened: their counters
// never reach the replay window, which counts them as Lost as well.
func (b *batch) shedUnopened() {
	if b.stats != nil {
		b.stats.Unopened.Add(uint64(b.Live()))
	}
	b.DropAll(QueueFull, nil)
}

// DropAll marks every packet dropped for r and counts them in b.stats (if
// any) or in global (if not nil).
func (b *batch) DropAll(r Reason, global *dropCounters) {
	n := 0
	for i := range b.N {
		if b.Pkts[i].Drop == OK {
			b.Pkts[i].Drop = r
			n++
		}
	}
	switch {
	case b.stats != nil:
		b.stats.Drops.Add(r, uint64(n))
	case global != nil:
		global.Add(r, uint64(n))
	}
}

// Release returns b to its pool. b must not be used afterwards.
func (b *batch) Release() {
	if b.limit != nil {
		b.limit.Release()
	}
	if b.share != nil {
		b.share.give(b.charged)
	}
	p := b.pool
	b.reset()
	if p != nil {
		p.put(b)
	}
}

func (b *batch) reset() {
	b.N, b.born, b.stats, b.limit, b.share, b.charged = 0, time.Time{}, nil, nil, nil, 0
	b.op, b.pipe, b.seq, b.key, b.route, b.session = 0, nil, 0, nil, peerRoute{}, nil
	b.seqEntry[0] = sequencer.Entry[*batch]{}
	b.ts = stamps{}
	b.icmp = false
	b.seqMsg.Entries = nil
	clear(b.bufs[:])
}

// batchPool recycles batches and their buffers.
//
// Memory follows the packets in flight, not the batches: a reader's batch
// has a buffer in every slot, but the per-peer batches it is split into
// (GetEmpty) start with none and take only the buffers of the packets moved
// into them. Under many peers a read of 64 packets becomes ten batches of
// six, which used to hold 64 buffers each (96 KB at MTU 1420; 10-pusher
// load: tens of MB of buffers holding a few packets). A released batch with
// buffers goes to full, one without to empty; Get tops a batch up with the
// buffers of released ones, so buffers flow back to the readers in bulk, a
// pool operation (one lock) per batch and none per packet.
//
// The spares are lists of our own, not sync.Pools: a sync.Pool drops what
// two GCs in a row found unused, and under a soft memory limit
// (cmd/cyphonic --memory-limit) GCs came tens of times a second, so the
// spares of a bursty load were dropped between its bursts and made again
// in the next, and those allocations brought on the next GC. The lists
// instead give back, every spareKeep while they hold any, the batches that
// stayed unused all that time (trim): those the load did not need. The
// data path no longer brings on GCs (the in-flight budget keeps the heap
// far under the limit, budget.go), so a load could end with nothing to
// collect what it left behind for minutes (the runtime forces a GC every
// two): a trim that sheds at least freeAfter also returns it to the
// system, so memory falls back a second or two after a load.
type batchPool struct {
	mu      sync.Mutex
	full    spares // released batches holding buffers
	empty   spares // released batches holding none (a few KB each)
	armed   bool   // a trim is due (every spareKeep while spares are held)
	timer   *time.Timer
	closed  bool // the data plane stopped: nothing is pooled or trimmed any more
	bufSize int
	// free returns the memory of what a trim shed to the system
	// (debug.FreeOSMemory; tests count calls).
	free func()
}

// spares is a stack of released batches, the last released on top.
type spares struct {
	b []*batch
	// low is the fewest batches b held since the last trim: its bottom
	// low were not needed meanwhile.
	low int
}

func (s *spares) push(b *batch) {
	if len(s.b) < maxSpare {
		s.b = append(s.b, b)
	}
}

func (s *spares) pop() *batch {
	n := len(s.b)
	if n == 0 {
		return nil
	}
	b := s.b[n-1]
	s.b[n-1] = nil
	s.b = s.b[:n-1]
	s.low = min(s.low, n-1)
	return b
}

// trim drops the batches unused since the last trim and returns the
// bytes of buffers they held.
func (s *spares) trim(bufSize int) int {
	shed := 0
	for _, b := range s.b[:s.low] {
		shed += b.held * bufSize
	}
	n := copy(s.b, s.b[s.low:])
	clear(s.b[n:])
	s.b = s.b[:n]
	s.low = n
	return shed
}

// maxSpare bounds each list: more released batches than readers and peers
// ever have in flight are dropped.
const maxSpare = 1024

// spareKeep is how long spare batches must go unused before a trim drops
// them.
const spareKeep = time.Second

// freeAfter is the least a trim must shed to return memory to the system
// at once: a load's worth, not the odd batch of a quiet tunnel.
const freeAfter = 1 << 20

// newBatchPool makes a pool of batches whose buffers are bufSize bytes.
func newBatchPool(bufSize int) *batchPool {
	return &batchPool{bufSize: bufSize, free: debug.FreeOSMemory}
}

// armLocked schedules a trim spareKeep from now, unless one is due.
func (p *batchPool) armLocked() {
	if p.armed || p.closed {
		return
	}
	p.armed = true
	if p.timer == nil {
		p.timer = time.AfterFunc(spareKeep, p.trimTick)
	} else {
		p.timer.Reset(spareKeep)
	}
}

// Close stops the trims and drops the spares: the data plane stopped.
// Batches released afterwards are left to the GC.
func (p *batchPool) Close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	p.armed = false
	if p.timer != nil {
		p.timer.Stop()
	}
	clear(p.full.b)
	clear(p.empty.b)
	p.full, p.empty = spares{}, spares{}
}

// trimTick drops the spare batches unused for the last spareKeep, and
// schedules the next while any are left.
func (p *batchPool) trimTick() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	shed := p.trimLocked()
	p.armed = false
	if len(p.full.b)+len(p.empty.b) > 0 {
		p.armLocked()
	}
	p.mu.Unlock()
	if shed >= freeAfter {
		p.free()
	}
}

// trimLocked drops the spares unused since the last trim and returns the
// bytes of buffers shed.
func (p *batchPool) trimLocked() int {
	p.empty.trim(0)
	return p.full.trim(p.bufSize)
}

// spareCount is how many released batches with buffers the pool holds.
func (p *batchPool) spareCount() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.full.b)
}

// BufSize is the size of every buffer.
func (p *batchPool) BufSize() int { return p.bufSize }

// Get returns an empty batch with a buffer of BufSize in every slot, for
// a read.
func (p *batchPool) Get() *batch {
	p.mu.Lock()
	b := p.full.pop()
	if b == nil {
		b = p.empty.pop()
	}
	if b == nil {
		b = newBatch(p)
	}
	// Top b up with the buffers of other released batches.
	i := b.nextEmpty(0)
	for b.held < maxBatch {
		o := p.full.pop()
		if o == nil {
			break
		}
		for j := 0; o.held > 0 && b.held < maxBatch; j++ {
			if q := &o.Pkts[j]; q.Buf != nil {
				b.Pkts[i].Buf, q.Buf = q.Buf, nil
				o.held, b.held = o.held-1, b.held+1
				i = b.nextEmpty(i + 1)
			}
		}
		p.putLocked(o)
	}
	p.mu.Unlock()
	// What the pool lacks (at start, after a GC trimmed it, under more
	// load than before) is made.
	for ; i < maxBatch; i = b.nextEmpty(i + 1) {
		b.Pkts[i].Buf = make([]byte, p.bufSize)
		b.held++
	}
	return b
}

// GetEmpty returns an empty batch without buffers: Move fills it with the
// buffers of the packets it takes.
func (p *batchPool) GetEmpty() *batch {
	p.mu.Lock()
	b := p.empty.pop()
	p.mu.Unlock()
	if b == nil {
		b = newBatch(p)
	}
	return b
}

// put pools a released batch.
func (p *batchPool) put(b *batch) {
	p.mu.Lock()
	p.putLocked(b)
	p.mu.Unlock()
}

// putLocked is put with p.mu held.
func (p *batchPool) putLocked(b *batch) {
	if p.closed {
		return
	}
	if b.held == 0 {
		p.empty.push(b)
	} else {
		p.full.push(b)
	}
	p.armLocked()
}

// nextEmpty is the first slot from i on without a buffer (maxBatch: none).
func (b *batch) nextEmpty(i int) int {
	for i < maxBatch && b.Pkts[i].Buf != nil {
		i++
	}
	return i
}

// Payloads returns the packets that are neither dropped nor empty (an empty
// inbound packet is a keepalive), for a TUN write.
func (b *batch) Payloads() [][]byte {
	n := 0
	for i := range b.N {
		p := &b.Pkts[i]
		if p.Drop == OK && p.Len > 0 {
			b.bufs[n] = p.Bytes()
			n++
		}
	}
	return b.bufs[:n]
}
