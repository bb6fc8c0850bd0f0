package dataplane

import "sync/atomic"

// budget bounds the packets the data path holds in flight in one
// direction over all peers, and with them the pooled buffers (a batch
// holds a buffer per packet, batchPool): memory under load follows this
// budget, not the number of peers times their own bounds.
//
// The per-peer in-flight bound (peerPipe.InInflight, OutInflight) counts
// batches, and a peer's batches in flight are as big as its reads: at ten
// pushers the responder held 5,000-6,700 buffers (10 MB and 350 batches
// of 10 KB) at the peaks of the TCP flows' sawtooth, though on average
// ~2,500 packets were on the way (Little's law over the sojourns). Those
// peaks were a standing queue at the TUN writer, 10-30 ms deep, that the
// single writer did not need to stay busy, and under the node's soft
// memory limit they made the GC run ~60 times a second.
//
// A peer takes from the budget where its batch enters the path (the
// reader, before any crypto is spent on it) and gives back in Release. The
// budget never refuses a peer holding less than its fair share (the
// budget over the peers with packets in flight): while it is exhausted,
// the batches refused are those of the peers holding the most, as
// FQ-CoDel drops from its fattest flow at its memory limit, and an idle
// peer's ping is always taken. So the budget is exceeded by at most about
// a batch per peer, plus the few small packets a refused batch still lets
// through (batch.admit), which the peer's batch slots bound.
//
// No lock: a few atomic adds per batch, none per packet.
type budget struct {
	max    int64
	n      atomic.Int64 // packets in flight
	active atomic.Int64 // shares with packets in flight
}

// share is one peer's part of a budget: the packets it has in flight in
// the budget's direction.
type share struct {
	g *budget
	n atomic.Int64
}

// newBudget makes a budget of packets (at least maxBatch).
func newBudget(packets int) *budget { return &budget{max: int64(max(packets, maxBatch))} }

// share makes a peer's share of g.
func (g *budget) share() *share { return &share{g: g} }

// take takes n packets for s, or reports false if g is exhausted and s
// holds its fair share already.
func (s *share) take(n int) bool {
	g, k := s.g, int64(n)
	if k <= 0 {
		return true
	}
	if g.n.Add(k) > g.max {
		fair := g.max / max(g.active.Load(), 1)
		if s.n.Load()+k > fair {
			g.n.Add(-k) // the caller counts the drops (QueueFull)
			return false
		}
	}
	s.add(k)
	return true
}

// force takes n packets for s even past the budget: the few small packets
// of a refused batch (batch.admit).
func (s *share) force(n int) {
	if n > 0 {
		s.g.n.Add(int64(n))
		s.add(int64(n))
	}
}

func (s *share) add(k int64) {
	if s.n.Add(k) == k {
		s.g.active.Add(1)
	}
}

// give returns n packets taken with take.
func (s *share) give(n int) {
	k := int64(n)
	if k <= 0 {
		return
	}
	s.g.n.Add(-k)
	if s.n.Add(-k) == 0 {
		s.g.active.Add(-1)
	}
}

// Len is the packets in flight.
func (g *budget) Len() int { return int(g.n.Load()) }
