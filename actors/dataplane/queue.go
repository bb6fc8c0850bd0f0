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
func newFairQueue(controlDepth int) *fairQueue { return fairq.New[*batch](controlDepth) }
