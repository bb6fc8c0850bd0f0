// Package retransmit is the one way an actor resends a request until it is
// answered, for the node's signaling transactions (actors/session) and the
// cloud's deliveries to nodes (cloud/nms). Tx is the transaction actor
// both use: first send, resends, replies, the end; each supplies a Handler
// for what its request is. Timer is its schedule, a signaling.Retry, the
// timer a message the actor receives like any other, so the resend runs
// inside Receive and never races the actor's state.
package retransmit

import (
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/cyphonic/cyphonic-go/transport/signaling"
)

// Tick is what a Timer sends its actor when a wait ends: hand it to
// Timer.Tick.
type Tick struct{ gen uint64 }

// Timer makes the sends of one request on a Retry schedule: Attempts
// sends in all, each after the wait the schedule gives, then one last wait
// (LastWait) for an answer before the request expires. It belongs to one
// actor and is used only inside its Receive.
type Timer struct {
	retry signaling.Retry
	sent  int
	gen   uint64 // bumped by Start and Stop: ticks armed before are stale
	timer *time.Timer
}

// New returns a Timer on schedule r.
func New(r signaling.Retry) *Timer { return &Timer{retry: r} }

// LastWait is how long a request waits for an answer after its last send:
// the schedule's longest wait.
func LastWait(r signaling.Retry) time.Duration {
	if r.Max > 0 {
		return r.Max
	}
	return r.Initial
}

// Lifetime bounds a request's life on schedule r: every wait between the
// sends and the last one. State kept for a request (a transaction store
// entry) must outlive it.
func Lifetime(r signaling.Retry) time.Duration { return r.Total() + LastWait(r) }

// Start makes the first send and arms the wait after it. Starting again
// begins a new schedule (a login moving to its confirmation); ticks of the
// old one are ignored.
func (t *Timer) Start(ctx actor.Context, send func()) {
	t.Stop()
	t.sent = 0
	t.next(ctx, send)
}

// Tick handles a Tick the actor received: it resends, or reports that the
// request expired (every send made and the last wait over). A stale tick
// does nothing.
func (t *Timer) Tick(ctx actor.Context, m Tick, send func()) (expired bool) {
	if m.gen != t.gen || t.timer == nil {
		return false
	}
	t.timer = nil
	if t.sent >= t.retry.Attempts {
		return true
	}
	t.next(ctx, send)
	return false
}

// Sent is the number of sends made so far.
func (t *Timer) Sent() int { return t.sent }

// Stop disarms the timer; a tick already in the mailbox is stale.
func (t *Timer) Stop() {
	if t.timer != nil {
		t.timer.Stop()
		t.timer = nil
	}
	t.gen++
}

func (t *Timer) next(ctx actor.Context, send func()) {
	send()
	t.sent++
	wait, ok := t.retry.Delay(t.sent)
	if !ok {
		wait = LastWait(t.retry)
	}
	// The root context, not ctx, sends from the timer's goroutine: an
	// actor's context belongs to its Receive.
	root, self, tick := ctx.ActorSystem().Root, ctx.Self(), Tick{gen: t.gen}
	t.timer = time.AfterFunc(wait, func() { root.Send(self, tick) })
}
