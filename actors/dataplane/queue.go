package dataplane

import "github.com/cyphonic/cyphonic-go/actors/dataplane/fairq"

// The queues in front of the crypto workers and the two device writers
// (package fairq), holding batches.
type (
	fairQueue  = fairq.Queue[*batch]
	flowQueue  = fairq.Flow[*batch]
	queueItem  = fairq.Item[*batch]
	controlPkt = fairq.Control
	codel      = fairq.CoDel
)

// newFlow makes a peer's flow holding at most depth batches.
func newFlow(depth int) *flowQueue { return fairq.NewFlow[*batch](depth) }

// newFairQueue makes a queue holding up to controlDepth control packets.
// Flows share it by packets, maxBatch a turn (deficit round robin): a
// peer whose reads come in bigger batches gets no more of a saturated
// writer or of the crypto workers than one whose come in smaller ones.
// Only a sparse batch (a ping, a lone ACK: at most sparseLen packets) of
// a flow idle for fairq.DefaultIdleAfter goes ahead of the backlogged
// flows: a bulk peer whose batch the writer has just drained, or that
// comes back from a pause with a full batch, waits its turn.
func newFairQueue(controlDepth int) *fairQueue {
	q := fairq.New[*batch](controlDepth)
	q.Cost, q.Quantum, q.FreshQuantum = batchCost, maxBatch, sparseLen
	return q
}

// batchCost is what a batch costs its flow's turn: its packets.
func batchCost(b *batch) int { return b.N }

// pushLanes queues a batch of one peer at a device writer: its ICMP
// packets on the peer's ICMP lane (FlowICMP, InFlowICMP) in queue lane, the
// rest on its flow in queue q; icmp tells them apart. It reports false if
// the flow refused b (the caller drops and releases it); an ICMP part the
// lane refuses is dropped here. q and lane are one queue but at the TUN
// writers of a multi-queue TUN, where the ICMP lanes have a queue of their
// own (tunqueues.go); a flow is always pushed on the same queue.
//
// The fair queue's flows are per peer, so a peer's ping shared its own bulk
// flow's queue: it waited behind that backlog and was one of the packets
// CoDel and the delay bound dropped from it (8–10 % of the pushing peer's
// pings at 10 pushers). FQ-CoDel hashes inner 5-tuples for this; a lane for
// ICMP is the part of that which needs no per-packet hash and cannot
// reorder a connection: ICMP is no part of any TCP or UDP flow's sequence
// (the replay window takes the reordering between lanes: a lane holds at
// most FlowDepth batches, far less than its 8,128 counters). A peer
// flooding ICMP gets its lane's turn beside its flow's, at most two shares
// of the writer.
//
// Per batch it reads each live packet's flag or header byte (the stage
// before has just touched every packet); only a batch that mixes the two
// is split, into a pooled empty batch that takes the ICMP packets' slots
// (no copy, no allocation in steady state) and carries no in-flight slot:
// its lane's depth bounds it.
func (d *Dataplane) pushLanes(q, lane *fairQueue, b *batch, icmp func(*packet) bool) bool {
	live, n := 0, 0
	for i := range b.N {
		if p := &b.Pkts[i]; p.Drop == OK {
			live++
			if icmp(p) {
				n++
			}
		}
	}
	switch {
	case n == 0:
	case n == live:
		b.icmp = true
		return lane.Push(b.flow(), b)
	default:
		nb := d.pool.GetEmpty()
		b.splitOff(nb, icmp)
		nb.op, nb.pipe, nb.key, nb.session, nb.route = b.op, b.pipe, b.key, b.session, b.route
		nb.born, nb.stats, nb.ts, nb.icmp = b.born, b.stats, b.ts, true
		if !nb.ts.handed.IsZero() {
			nb.ts.class = classPing
		}
		if !lane.Push(nb.flow(), nb) {
			nb.DropAll(QueueFull, nil)
			nb.Release()
		}
	}
	return q.Push(b.flow(), b)
}

// openedICMP and sealedICMP say whether an inbound (opened) or outbound
// (sealed: the peer actor looked before) packet is ICMP.
func openedICMP(p *packet) bool { return isICMP(p.Bytes()) }
func sealedICMP(p *packet) bool { return p.ICMP }
