package session

import (
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/cyphonic/cyphonic-go/actors/retransmit"
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
	pid    *actor.PID
	to     netip.AddrPort
	packet []byte           // sent, and resent unchanged (same ID)
	login  *signaling.Login // for a login transaction: owned by its actor, its Packet replaces packet
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
	// txDone reports the end of a transaction to the session, which
	// knows what it was for by its ID (sessionActor.open).
	txDone struct {
		id    messages.MsgID
		env   messages.Envelope      // the reply (not for login)
		login *signaling.LoginResult // a successful login
		err   error                  // ErrTimeout, a *messages.Error, or a decoding error
	}
)

// txTTL is how long a transaction's state is kept: the request's whole
// life on its schedule, and some slack.
func txTTL(r signaling.Retry) time.Duration {
	return retransmit.Lifetime(r) + 5*time.Second
}

// txActor drives one transaction: send, resend on the Retry schedule,
// deliver the reply (or the timeout) to the session, stop. It keeps only
// its ID and its timer; the state is in the store.
type txActor struct {
	s     *Session
	id    messages.MsgID
	timer *retransmit.Timer
	// refused is the last login answer that did not verify: a timeout
	// then says answers came but were not the AS's (a wrong --ca).
	refused error
}

func txProps(s *Session, id messages.MsgID) *actor.Props {
	return actor.PropsFromProducer(func() actor.Actor {
		return &txActor{s: s, id: id, timer: retransmit.New(s.cfg.Retry)}
	})
}

func (a *txActor) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *actor.Started:
		if st, ok := a.state(ctx); ok {
			a.timer.Start(ctx, func() { a.transmit(ctx, st) })
		}
	case retransmit.Tick:
		if st, ok := a.state(ctx); ok && a.timer.Tick(ctx, m, func() { a.transmit(ctx, st) }) {
			err := ErrTimeout
			if a.refused != nil {
				err = fmt.Errorf("%w: %w: %w", ErrTimeout, ErrUnverified, a.refused)
			}
			a.finish(ctx, &txDone{err: err})
		}
	case *txReply:
		a.reply(ctx, m)
	case *actor.Stopping:
		a.timer.Stop()
	}
}

// transmit sends the request (for a login, the packet of its stage).
func (a *txActor) transmit(ctx actor.Context, st *txState) {
	pkt := st.packet
	if st.login != nil {
		pkt = st.login.Packet()
	}
	if err := a.s.cfg.Dataplane.SendControl(pkt, st.to); err != nil {
		// A full queue is a lost packet: the retransmission covers it.
		ctx.Logger().Debug("session: send", "tx", st.kind.String(), "err", err)
	}
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
		a.finish(ctx, done)
		return
	}
	var refused *messages.Error
	if !st.login.Confirmed() && messages.PacketType(r.pkt[0]) == messages.TypeLoginCookie {
		// A loaded AS asks us to prove our address: the login's first
		// cookie sends the copy with mac2 at once; later ones only replace
		// the cookie, so replayed cookies cannot make us send more.
		first, err := st.login.TakeCookie(r.pkt, time.Now())
		if err != nil {
			ctx.Logger().Debug("session: login cookie ignored", "err", err)
			return
		}
		if first {
			if err := a.s.cfg.Dataplane.SendControl(st.login.Packet(), st.to); err != nil {
				ctx.Logger().Debug("session: send", "tx", st.kind.String(), "err", err)
			}
		}
		return
	}
	if !st.login.Confirmed() {
		_, err := st.login.Confirm(r.pkt, time.Now())
		switch {
		case err == nil:
			// Proven to ourselves that this is the AS; now prove our key to
			// it: the confirmation goes out at once, on a schedule of its own.
			a.timer.Start(ctx, func() { a.transmit(ctx, st) })
		case errors.As(err, &refused):
			a.finish(ctx, &txDone{err: refused})
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
		a.finish(ctx, &txDone{login: res})
	case errors.As(err, &refused):
		a.finish(ctx, &txDone{err: refused})
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
		ctx.Send(ctx.Parent(), &txDone{id: a.id, err: ErrTimeout})
		ctx.Stop(ctx.Self())
		return nil, false
	}
	return e.out, true
}

func (a *txActor) finish(ctx actor.Context, d *txDone) {
	a.timer.Stop()
	d.id = a.id
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
