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
