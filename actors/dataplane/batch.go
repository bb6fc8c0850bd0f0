// Package batch is the unit of work of the data plane: a fixed array of up
// to MaxBatch packets in pooled buffers, plus the routing facts each stage
// stamps on it. A *Batch changes hands with every message; whoever holds it
// last calls Release.
//
// Nothing here allocates in steady state: buffers are made once per pooled
// batch and moved between batches by swapping slices, and the batch carries
// its own scratch slices for the batch I/O calls and its own sequencer
// message.
package dataplane

import (
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/cyphonic/cyphonic-go/messages"
	"github.com/cyphonic/cyphonic-go/sequencer"
	"github.com/cyphonic/cyphonic-go/transport/seal"
)

// MaxBatch is the most packets one batch holds: what one recvmmsg/sendmmsg
// moves, and the size at which a mailbox hop costs less than the crypto.
const MaxBatch = 64

// Headroom is the room kept in front of an inner packet read from the TUN
// device, so the data header and (on a relayed path) the relay header are
// written in place, without a copy.
const Headroom = messages.RelayHeaderLen + messages.DataHeaderLen

// Op is what a crypto worker does with a batch.
type Op uint8

const (
	opSeal Op = iota + 1 // outbound: inner packets at Headroom become data packets
	opOpen               // inbound: data packets become inner packets
)

// Packet is one packet in a batch: Buf[Off:Off+Len].
type Packet struct {
	Buf     []byte         // the whole pooled buffer
	Off     int            // start of the packet in Buf
	Len     int            // its length
	Counter uint64         // the data packet's counter (nonce)
	From    netip.AddrPort // inbound: the datagram's source
	Relayed bool           // inbound: it came inside a relay frame
	Drop    Reason         // non-zero: dropped, skip it (the slot still counts)
}

// Bytes returns the packet.
func (p *Packet) Bytes() []byte { return p.Buf[p.Off : p.Off+p.Len] }

// Batch is up to MaxBatch packets and what the pipeline knows about them.
type Batch struct {
	Pkts [MaxBatch]Packet
	N    int
	Born time.Time // when it entered the pipeline, for queue-delay drops

	Op    Op
	Seq   uint64        // position in the peer's sequencer
	Key   *seal.Keypair // the session that seals or opens it
	Reply *actor.PID    // the sequencer that takes it after the crypto worker
	Dest  netip.AddrPort
	Relay bool                // outbound: wrap in a relay frame with Token
	Token messages.RelayToken // relay token, when Relay
	Stats *Stats              // the peer's counters
	Flow  *Flow               // the peer's send queue
	// Work is the peer's queue in front of the crypto workers for this
	// direction (nil: straight to a worker's mailbox).
	Work *Flow
	// Session is the inbound session the batch belongs to (opaque here:
	// the peer package owns the type).
	Session any

	inflight *atomic.Int32 // decremented by Release: the stage's queue bound

	pool     *batchPool
	seqMsg   sequencer.Batch[*Batch]
	seqEntry [1]sequencer.Entry[*Batch]
	bufs     [MaxBatch][]byte
	sizes    [MaxBatch]int
	eps      [MaxBatch]netip.AddrPort
}

// Track makes Release decrement counter, which the caller has incremented:
// the number of batches a stage has in flight, bounding its queue.
func (b *Batch) Track(counter *atomic.Int32) { b.inflight = counter }

// SeqMessage returns the message that hands b to its sequencer as slot
// b.Seq. It lives inside b, so sending it does not allocate; the sequencer
// reads it once and keeps only b.
func (b *Batch) SeqMessage() *sequencer.Batch[*Batch] {
	b.seqEntry[0] = sequencer.Entry[*Batch]{Seq: b.Seq, Item: b}
	b.seqMsg.Entries = b.seqEntry[:]
	return &b.seqMsg
}

// Move moves packet i of src to the end of b by swapping buffers, so both
// batches keep a full set. It reports false if b is full.
func (b *Batch) Move(src *Batch, i int) bool {
	if b.N == MaxBatch {
		return false
	}
	b.Pkts[b.N], src.Pkts[i] = src.Pkts[i], b.Pkts[b.N]
	b.N++
	return true
}

// ReadSlices returns per-packet buffers starting at offset, with sizes and
// endpoints slices, for a batch read (tun.Device.Read, udp.Conn.ReadBatch).
func (b *Batch) ReadSlices(offset int) ([][]byte, []int, []netip.AddrPort) {
	for i := range b.bufs {
		b.bufs[i] = b.Pkts[i].Buf[offset:]
	}
	return b.bufs[:], b.sizes[:], b.eps[:]
}

// Filled records n packets read with ReadSlices(offset).
func (b *Batch) Filled(n, offset int) {
	b.N = n
	for i := range n {
		p := &b.Pkts[i]
		p.Off, p.Len, p.From, p.Drop, p.Relayed, p.Counter = offset, b.sizes[i], b.eps[i], OK, false, 0
		if p.Len == 0 {
			p.Drop = Truncated
		}
	}
}

// WriteSlices returns the packets not dropped, as slices for a batch write,
// and the matching destinations (all b.Dest).
func (b *Batch) WriteSlices() ([][]byte, []netip.AddrPort) {
	n := 0
	for i := range b.N {
		p := &b.Pkts[i]
		if p.Drop != OK {
			continue
		}
		b.bufs[n] = p.Bytes()
		b.eps[n] = b.Dest
		n++
	}
	return b.bufs[:n], b.eps[:n]
}

// Live counts the packets not dropped.
func (b *Batch) Live() int {
	n := 0
	for i := range b.N {
		if b.Pkts[i].Drop == OK {
			n++
		}
	}
	return n
}

// DropAll marks every packet dropped for r and counts them in b.Stats (if
// any) or in global (if not nil).
func (b *Batch) DropAll(r Reason, global *Counters) {
	n := 0
	for i := range b.N {
		if b.Pkts[i].Drop == OK {
			b.Pkts[i].Drop = r
			n++
		}
	}
	switch {
	case b.Stats != nil:
		b.Stats.Drops.Add(r, uint64(n))
	case global != nil:
		global.Add(r, uint64(n))
	}
}

// Release returns b to its pool. b must not be used afterwards.
func (b *Batch) Release() {
	if b.inflight != nil {
		b.inflight.Add(-1)
	}
	p := b.pool
	b.reset()
	if p != nil {
		p.p.Put(b)
	}
}

func (b *Batch) reset() {
	b.N, b.Born, b.Op, b.Seq, b.Key, b.Reply = 0, time.Time{}, 0, 0, nil, nil
	b.Dest, b.Relay, b.Token, b.Stats, b.Flow, b.Work, b.Session, b.inflight = netip.AddrPort{}, false, messages.RelayToken{}, nil, nil, nil, nil, nil
	b.seqEntry[0] = sequencer.Entry[*Batch]{}
	b.seqMsg.Entries = nil
	clear(b.bufs[:])
}

// batchPool recycles batches and their buffers.
type batchPool struct {
	p       sync.Pool
	bufSize int
}

// newBatchPool makes a pool of batches whose buffers are bufSize bytes.
func newBatchPool(bufSize int) *batchPool {
	pl := &batchPool{bufSize: bufSize}
	pl.p.New = func() any {
		b := &Batch{pool: pl}
		// One allocation for all buffers of the batch.
		mem := make([]byte, MaxBatch*bufSize)
		for i := range b.Pkts {
			b.Pkts[i].Buf = mem[i*bufSize : (i+1)*bufSize : (i+1)*bufSize]
		}
		return b
	}
	return pl
}

// BufSize is the size of every buffer.
func (p *batchPool) BufSize() int { return p.bufSize }

// Get returns an empty batch.
func (p *batchPool) Get() *Batch { return p.p.Get().(*Batch) }

// Payloads returns the packets that are neither dropped nor empty (an empty
// inbound packet is a keepalive), for a TUN write.
func (b *Batch) Payloads() [][]byte {
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
