package supervise

import "sync/atomic"

// Limiter bounds how many messages may wait for one actor when the sender
// cannot be slowed down — packets from the network. Take a slot before the
// send and give it back when the actor has received the message; a full
// limiter drops at the sender and counts it. It is the one in-flight bound
// of the code base: the data path's batches, the cloud's listener and the
// resolver's queries use it too.
//
// protoactor's own actor.BoundedDropping mailbox cannot do this in the
// pinned version: a message it drops is still counted as queued, so after a
// drop the dispatcher goroutine spins forever on an empty queue. Queues are
// therefore bounded before the send, and mailboxes stay unbounded.
type Limiter struct {
	max     int64
	n       atomic.Int64
	dropped atomic.Uint64
}

// NewLimiter returns a limiter with the given number of slots (at least 1).
func NewLimiter(slots int) *Limiter {
	return &Limiter{max: int64(max(slots, 1))}
}

// Acquire takes a slot, or counts a drop and reports false when all are
// taken.
func (l *Limiter) Acquire() bool {
	if l.n.Add(1) > l.max {
		l.n.Add(-1)
		l.dropped.Add(1)
		return false
	}
	return true
}

// Release gives a slot back: call it once per successful Acquire, when the
// actor has received the message (or when the send did not happen).
func (l *Limiter) Release() { l.n.Add(-1) }

// Len is the number of slots taken.
func (l *Limiter) Len() int { return int(l.n.Load()) }

// Dropped is the number of refused Acquires.
func (l *Limiter) Dropped() uint64 { return l.dropped.Load() }

// Queue describes the limiter as a queue named name, for the debug tree:
// slots taken, the bound, and the drops.
func (l *Limiter) Queue(name string) Queue {
	return Queue{Name: name, Len: l.Len(), Cap: int(l.max), Dropped: l.Dropped()}
}
