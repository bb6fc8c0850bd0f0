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

// tx is the session's part of one transaction, run by a retransmit.Tx:
// send (for a login, the packet of its stage), route the reply, report the
// end to the session. It keeps only its ID and what it learnt from the
// replies; the state is in the store.
type tx struct {
	s  *Session
	id messages.MsgID
	// done is the transaction's result, once a reply decided it.
	done txDone
	// refused is the last login answer that did not verify: a timeout
	// then says answers came but were not the AS's (a wrong --ca).
	refused error
}

func txProps(s *Session, id messages.MsgID) *actor.Props {
	return actor.PropsFromProducer(func() actor.Actor {
		return retransmit.NewTx(s.cfg.Retry, &tx{s: s, id: id})
	})
}

// Transmit sends the request (for a login, the packet of its stage). A
// miss in the store (evicted) ends the transaction as a timeout: the
// session recovers as from a lost reply.
func (t *tx) Transmit(ctx actor.Context) bool {
	st, ok := t.state()
	if !ok {
		return false
	}
	pkt := st.packet
	if st.login != nil {
		pkt = st.login.Packet()
	}
	t.send(ctx, st, pkt)
	return true
}

func (t *tx) send(ctx actor.Context, st *txState, pkt []byte) {
	if err := t.s.cfg.Dataplane.SendControl(pkt, st.to); err != nil {
		// A full queue is a lost packet: the retransmission covers it.
		ctx.Logger().Debug("session: send", "tx", st.kind.String(), "err", err)
	}
}

// Reply handles a txReply from the session: the reply to a request, or
// one of the login's answers.
func (t *tx) Reply(ctx actor.Context, msg any) retransmit.Verdict {
	r, ok := msg.(*txReply)
	if !ok {
		return retransmit.Wait
	}
	st, ok := t.state()
	if !ok {
		t.done = txDone{err: ErrTimeout}
		return retransmit.Done
	}
	if st.login == nil {
		t.done = txDone{env: r.env}
		if r.env.Type == messages.MsgError {
			t.done.err = decodeError(r.env)
		}
		return retransmit.Done
	}
	var refused *messages.Error
	if !st.login.Confirmed() && messages.PacketType(r.pkt[0]) == messages.TypeLoginCookie {
		// A loaded AS asks us to prove our address: the login's first
		// cookie sends the copy with mac2 at once; later ones only replace
		// the cookie, so replayed cookies cannot make us send more.
		first, err := st.login.TakeCookie(r.pkt, time.Now())
		if err != nil {
			ctx.Logger().Debug("session: login cookie ignored", "err", err)
			return retransmit.Wait
		}
		if first {
			t.send(ctx, st, st.login.Packet())
		}
		return retransmit.Wait
	}
	if !st.login.Confirmed() {
		_, err := st.login.Confirm(r.pkt, time.Now())
		switch {
		case err == nil:
			// Proven to ourselves that this is the AS; now prove our key to
			// it: the confirmation goes out at once, on a schedule of its own.
			return retransmit.Again
		case errors.As(err, &refused):
			t.done = txDone{err: refused}
			return retransmit.Done
		default:
			// Not the AS's genuine answer (forged, corrupted, stale): keep
			// waiting for it.
			ctx.Logger().Debug("session: login challenge ignored", "err", err)
			t.refused = err
			return retransmit.Wait
		}
	}
	res, err := st.login.Finish(r.pkt, time.Now())
	switch {
	case err == nil:
		t.done = txDone{login: res}
		return retransmit.Done
	case errors.As(err, &refused):
		t.done = txDone{err: refused}
		return retransmit.Done
	default:
		ctx.Logger().Debug("session: login reply ignored", "err", err)
		t.refused = err
		return retransmit.Wait
	}
}

// End hands the result to the session. A transaction the session stopped
// (cancelTx) reports nothing: the session has forgotten it.
func (t *tx) End(ctx actor.Context, how retransmit.End) {
	d := t.done
	switch how {
	case retransmit.Stopped:
		return
	case retransmit.Expired:
		d = txDone{err: ErrTimeout}
		if t.refused != nil {
			d.err = fmt.Errorf("%w: %w: %w", ErrTimeout, ErrUnverified, t.refused)
		}
	case retransmit.Lost:
		d = txDone{err: ErrTimeout}
	}
	d.id = t.id
	t.s.store.Delete(t.id)
	ctx.Send(ctx.Parent(), &d)
}

// state loads the transaction's state.
func (t *tx) state() (*txState, bool) {
	e, ok := t.s.store.Get(t.id)
	if !ok || e.out == nil {
		return nil, false
	}
	return e.out, true
}

// decodeError returns the *messages.Error an Error envelope carries.
func decodeError(env messages.Envelope) error {
	e, err := messages.DecodeBody[messages.Error](env)
	if err != nil {
		return err
	}
	return &e
}
