package retransmit

import (
	"github.com/asynkron/protoactor-go/actor"

	"github.com/cyphonic/cyphonic-go/transport/signaling"
)

// Verdict is what a reply means for its transaction (Handler.Reply).
type Verdict uint8

const (
	// Wait: not the answer (a duplicate, a forgery, a cookie, something
	// else); the schedule goes on.
	Wait Verdict = iota
	// Again: the request moved to a new stage whose packet goes out now,
	// on a schedule of its own (a login's confirmation).
	Again
	// Done: the answer came; the transaction ends as Answered.
	Done
)

// End is how a transaction ended (Handler.End).
type End uint8

const (
	Answered End = iota + 1 // Reply returned Done
	Expired                 // every send made and the last wait over, unanswered
	Lost                    // Transmit could not send: the request's state is gone, or could not be made
	Stopped                 // stopped from outside: its owner cancelled it, or stopped
)

func (e End) String() string {
	switch e {
	case Answered:
		return "answered"
	case Expired:
		return "expired"
	case Lost:
		return "lost"
	case Stopped:
		return "stopped"
	}
	return "unknown"
}

// Handler is what one kind of transaction does; a Tx calls it inside its
// Receive, so a Handler needs no locks and must not block.
type Handler interface {
	// Transmit sends the request once: the first send, each resend, and
	// the first send of a new stage (the packet may differ by stage; it
	// never differs between resends). It reports false when the request
	// cannot be sent, its state gone (evicted from the store) or never
	// made (a delivery that could not be sealed): the transaction then
	// ends as Lost.
	Transmit(ctx actor.Context) bool
	// Reply handles any message the actor receives other than its own
	// timer's and protoactor's lifecycle messages, and says what follows.
	Reply(ctx actor.Context, msg any) Verdict
	// End reports the end of the transaction, exactly once; the actor
	// stops right after (for Stopped, it is already stopping).
	End(ctx actor.Context, how End)
}

// Tx is the retransmitting transaction actor of node and cloud: it makes
// the first send when it starts, resends on the Retry schedule until a
// reply ends it (or starts a new stage), and stops at the end, having told
// its Handler how it ended. Its only state is the timer; what the request
// is and what it waits for is the Handler's (on the node, in the
// transaction store).
type Tx struct {
	h     Handler
	timer *Timer
	ended bool
}

// NewTx returns the actor of one transaction on schedule r. Give it to
// actor.PropsFromProducer: a restarted actor needs a fresh Tx (its timer
// belongs to the old one).
func NewTx(r signaling.Retry, h Handler) *Tx { return &Tx{h: h, timer: New(r)} }

func (t *Tx) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *actor.Started:
		t.start(ctx)
	case Tick:
		sent := true
		if t.timer.Tick(ctx, m, func() { sent = t.h.Transmit(ctx) }) {
			t.end(ctx, Expired)
		} else if !sent {
			t.end(ctx, Lost)
		}
	case *actor.Stopping:
		t.timer.Stop()
		if !t.ended {
			t.ended = true
			t.h.End(ctx, Stopped)
		}
	case *actor.Restarting:
		// A panic restarts the actor with a new Tx: this timer's ticks
		// must not reach it.
		t.timer.Stop()
	case actor.SystemMessage, actor.AutoReceiveMessage:
	default:
		if t.ended {
			// protoactor still delivers user messages while an actor
			// is stopping: End must stay once.
			return
		}
		switch t.h.Reply(ctx, m) {
		case Again:
			t.start(ctx)
		case Done:
			t.end(ctx, Answered)
		}
	}
}

// start begins a schedule: the first send now, the resends on ticks.
func (t *Tx) start(ctx actor.Context) {
	sent := true
	t.timer.Start(ctx, func() { sent = t.h.Transmit(ctx) })
	if !sent {
		t.end(ctx, Lost)
	}
}

func (t *Tx) end(ctx actor.Context, how End) {
	t.timer.Stop()
	t.ended = true
	t.h.End(ctx, how)
	ctx.Stop(ctx.Self())
}
