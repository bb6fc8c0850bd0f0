package dataplane

import (
	"time"
)

// sparseLen is the most live packets a batch may hold, with nothing queued
// behind it, and still count as a sparse flow's (pings, lone ACKs,
// keepalives) rather than part of a standing queue.
const sparseLen = 2

// DropLate runs c over b's live packets, which all waited since b.born, and
// marks those it drops as QueueDelay, counted in b.stats or else global.
// backlog says whether more batches wait in b's queue. It returns the
// number dropped.
//
// A batch is the unit the queues move, and a bulk flow's whole backlog
// usually travels as one batch, so its queue "empties" at every dequeue:
// RFC 8289's reset on an empty queue would never let CoDel act. Instead
// only a sparse batch (at most sparseLen packets, nothing behind it) counts
// as an empty queue.
func (b *batch) DropLate(c *codel, now time.Time, backlog bool, global *dropCounters) int {
	sojourn := now.Sub(b.born)
	standing := backlog || b.Live() > sparseLen
	n := 0
	for i := range b.N {
		p := &b.Pkts[i]
		if p.Drop != OK || !c.Drop(sojourn, now, standing) {
			continue
		}
		p.Drop = QueueDelay
		n++
	}
	switch {
	case n == 0:
	case b.stats != nil:
		b.stats.Drops.Add(QueueDelay, uint64(n))
	case global != nil:
		global.Add(QueueDelay, uint64(n))
	}
	return n
}
