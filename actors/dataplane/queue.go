package dataplane

import "github.com/cyphonic/cyphonic-go/actors/dataplane/fairq"

// The queues in front of the crypto workers and the two device writers
// (package fairq), holding batches.
type (
	FairQueue = fairq.Queue[*Batch]
	Flow      = fairq.Flow[*Batch]
	Item      = fairq.Item[*Batch]
	Control   = fairq.Control
	CoDel     = fairq.CoDel
)

// NewFlow makes a flow holding at most depth batches.
func NewFlow(depth int) *Flow { return fairq.NewFlow[*Batch](depth) }

// NewFairQueue makes a queue holding up to controlDepth control packets.
func NewFairQueue(controlDepth int) *FairQueue { return fairq.New[*Batch](controlDepth) }
