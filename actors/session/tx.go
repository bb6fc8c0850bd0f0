package session

import (
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/cyphonic/cyphonic-go/messages"
	"github.com/cyphonic/cyphonic-go/transport/signaling"
)

// entry is what the transaction store holds under a message ID: either an
// outgoing transaction's state, or the answer we gave to an incoming
// request (resent unchanged if the request is retransmitted).
type entry struct {
	out    *txState
	answer []byte
}

// txState is one outgoing transaction. It is written once when the
// transaction starts and read by the session (to route a reply) and by the
// transaction actor (to retransmit); nobody mutates it afterwards.
type txState struct {
	kind   messages.MsgType // the request's type
	epoch  int              // the login it belongs to; stale results are ignored
	pid    *actor.PID
	to     netip.AddrPort
	packet []byte           // sent, and resent unchanged (same ID)
	login  *signaling.Login // for a login transaction: owned by its actor, its Packet replaces packet
	peer   string           // for a tunnel request
}

// Messages between the session and its transactions.
type (
	// txReply carries a reply to the transaction it belongs to: a decoded
	// envelope, or for a login the raw packet (the TypeLoginReply challenge,
	// then the sealed answer to the confirmation).
	txReply struct {
		env messages.Envelope
		pkt []byte
	}
	retransmit struct{ sent, gen int }
	// txDone reports the end of a transaction to the session.
	txDone struct {
		id    messages.MsgID
		kind  messages.MsgType
		epoch int
		peer  string
		env   messages.Envelope      // the reply (not for login)
		login *signaling.LoginResult // a successful login
		err   error                  // ErrTimeout, a *messages.Error, or a decoding error
	}
)

// txTTL is how long a transaction's state is kept: every retransmission
// plus a final wait, and some slack.
func txTTL(r signaling.Retry) time.Duration {
	total := lastWait(r)
	for i := 1; ; i++ {
		d, ok := r.Delay(i)
		if !ok {
			break
		}
		total += d
	}
	return total + 5*time.Second
}

// lastWait is how long a transaction waits for a reply after its last send.
func lastWait(r signaling.Retry) time.Duration {
	if r.Max > 0 {
		return r.Max
	}
	return r.Initial
}

// txActor drives one transaction: send, resend on the Retry schedule,
// deliver the reply (or the timeout) to the session, stop. It keeps only
// its ID and counters; the state is in the store.
type txActor struct {
	s     *Session
	id    messages.MsgID
	timer *time.Timer
	gen   int // bumped when a login moves to its confirmation: older retransmit ticks are stale
	// refused is the last login answer that did not verify: a timeout
	// then says answers came but were not the AS's (a wrong --ca).
	refused error
}

func txProps(s *Session, id messages.MsgID) *actor.Props {
	return actor.PropsFromProducer(func() actor.Actor { return &txActor{s: s, id: id} })
}

func (a *txActor) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *actor.Started:
		a.send(ctx, 0)
	case retransmit:
		if m.gen == a.gen {
			a.send(ctx, m.sent)
		}
	case *txReply:
		a.reply(ctx, m)
	case *actor.Stopping:
		if a.timer != nil {
			a.timer.Stop()
		}
	}
}

// send makes send number sent+1, or gives up once all have been made and
// the last one has had its wait.
func (a *txActor) send(ctx actor.Context, sent int) {
	st, ok := a.state(ctx)
	if !ok {
		return
	}
	if sent >= a.s.cfg.Retry.Attempts {
		err := ErrTimeout
		if a.refused != nil {
			err = fmt.Errorf("%w: %w: %w", ErrTimeout, ErrUnverified, a.refused)
		}
		a.finish(ctx, st, &txDone{err: err})
		return
	}
	pkt := st.packet
	if st.login != nil {
		pkt = st.login.Packet()
	}
	if err := a.s.cfg.Dataplane.SendControl(pkt, st.to); err != nil {
		// A full queue is a lost packet: the retransmission covers it.
		ctx.Logger().Debug("session: send", "tx", st.kind.String(), "err", err)
	}
	sent++
	wait, ok := a.s.cfg.Retry.Delay(sent)
	if !ok {
		wait = lastWait(a.s.cfg.Retry)
	}
	root, self, gen := ctx.ActorSystem().Root, ctx.Self(), a.gen
	a.timer = time.AfterFunc(wait, func() { root.Send(self, retransmit{sent: sent, gen: gen}) })
}

func (a *txActor) reply(ctx actor.Context, r *txReply) {
	st, ok := a.state(ctx)
	if !ok {
		return
	}
	if st.login == nil {
		done := &txDone{env: r.env}
		if r.env.Type == messages.MsgError {
			done.err = decodeError(r.env)
		}
		a.finish(ctx, st, done)
		return
	}
	var refused *messages.Error
	if !st.login.Confirmed() {
		_, err := st.login.Confirm(r.pkt, time.Now())
		switch {
		case err == nil:
			// Proven to ourselves that this is the AS; now prove our key to
			// it: the confirmation goes out at once, on a schedule of its own.
			if a.timer != nil {
				a.timer.Stop()
			}
			a.gen++
			a.send(ctx, 0)
		case errors.As(err, &refused):
			a.finish(ctx, st, &txDone{err: refused})
		default:
			// Not the AS's genuine answer (forged, corrupted, stale): keep
			// waiting for it.
			ctx.Logger().Debug("session: login challenge ignored", "err", err)
			a.refused = err
		}
		return
	}
	res, err := st.login.Finish(r.pkt, time.Now())
	switch {
	case err == nil:
		a.finish(ctx, st, &txDone{login: res})
	case errors.As(err, &refused):
		a.finish(ctx, st, &txDone{err: refused})
	default:
		ctx.Logger().Debug("session: login reply ignored", "err", err)
		a.refused = err
	}
}

// state loads the transaction's state. A miss (evicted) ends the
// transaction as a timeout: the session recovers as from a lost reply.
func (a *txActor) state(ctx actor.Context) (*txState, bool) {
	e, ok := a.s.store.Get(a.id)
	if !ok || e.out == nil {
		ctx.Send(ctx.Parent(), &txDone{id: a.id, err: ErrTimeout, epoch: -1})
		ctx.Stop(ctx.Self())
		return nil, false
	}
	return e.out, true
}

func (a *txActor) finish(ctx actor.Context, st *txState, d *txDone) {
	if a.timer != nil {
		a.timer.Stop()
	}
	d.id, d.kind, d.epoch, d.peer = a.id, st.kind, st.epoch, st.peer
	a.s.store.Delete(a.id)
	ctx.Send(ctx.Parent(), d)
	ctx.Stop(ctx.Self())
}

// decodeError returns the *messages.Error an Error envelope carries.
func decodeError(env messages.Envelope) error {
	e, err := messages.DecodeBody[messages.Error](env)
	if err != nil {
		return err
	}
	return &e
}
