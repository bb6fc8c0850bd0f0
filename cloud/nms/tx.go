package nms

import (
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/cyphonic/cyphonic-go/cloud/path"
	"github.com/cyphonic/cyphonic-go/cloud/server/svc"
	"github.com/cyphonic/cyphonic-go/messages"
)

// How long a tunnel transaction waits for the TRS and for the peer.
const (
	relayTimeout = 5 * time.Second
	// relayTicketTTL only caps a relay session's life: it lives while its
	// nodes keep sending authenticated binds (once a keepalive period),
	// and the TRS sweeps it an idle timeout (minutes) after they stop.
	relayTicketTTL = 24 * time.Hour
)

// tunnelStage is where a tunnel request is: which answer it waits for.
type tunnelStage uint8

const (
	stageDeciding tunnelStage = iota // handed over by the worker (tunnel.go)
	stagePeer                        // waiting for the peer's DirectionAck (through its NMS)
	stageAdopting                    // the peer's home is gone: making this NMS its home (home.go)
)

// requestTx carries on a tunnel request whose peer the worker cannot
// direct itself (tunnel.go): one homed at another NMS process, or whose
// home's lease lapsed (home.go: this NMS adopts it), or not in the index
// although its record names this NMS. The worker has already read both
// records, chosen the path and allocated the relay; the actor directs the
// peer through its home (watching that home's lease while it waits) and
// answers. It sends nothing twice: the node retransmits the request,
// answered from the reply cache, and the peer's NMS retransmits a
// Direction (the worker's delivery, tunnel.go).
type requestTx struct {
	s *Service
	*tunnelTx
	enc   messages.Encoder
	stage tunnelStage
	// The peer's home NMS: the watch on it while the request waits for
	// it (home.go).
	homeStage   int
	adoptedID   uint32 // the peer's session this NMS adopted (home.go), or 0
	adoptTries  int    // record re-reads of a peer with no live session (home.go)
	deliveredTo uint32 // the peer's session the Direction went to, when homed here
	homeTimer   *time.Timer
}

func (t *requestTx) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *actor.Started:
		t.direct(ctx)
	case *actor.Stopping:
		if t.homeTimer != nil {
			t.homeTimer.Stop()
		}
	case homeCheck:
		t.onHomeCheck(ctx, m)
	case homeChecked:
		t.onHomeChecked(ctx, m)
	case adopted:
		t.onAdopted(ctx, m)
	case readopt:
		if t.stage == stageAdopting {
			t.adopt(ctx)
		}
	case *actor.ReceiveTimeout:
		t.fail(ctx, messages.Error{Code: messages.CodePeerUnreachable, Message: "timed out", Retry: true})
	default:
		f, ok, err := svc.DecodeFrame(m)
		if !ok {
			return
		}
		if err != nil {
			t.fail(ctx, messages.Error{Code: messages.CodeInternal})
			return
		}
		t.onFrame(ctx, f.Envelope)
	}
}

// offload runs job on the store workers. When they are saturated the
// request is dropped without an answer, its message ID forgotten, so the
// node's retransmission starts it afresh.
func (t *requestTx) offload(ctx actor.Context, job svc.Job) {
	if err := t.s.workers.Do(ctx.Self(), job); err != nil {
		t.s.Counters.Busy.Add(1)
		t.s.log.Debug("nms: store busy, dropping request", "type", t.typ, "fqdn", t.fqdn, "err", err)
		t.s.replies.Delete(t.id)
		ctx.Stop(ctx.Self())
	}
}

// direct asks the peer's home NMS to deliver the Direction: when that is
// this NMS and it holds the peer's session, straight to the peer's worker
// (no frame to encode and decode, no hop through the root); otherwise
// through the peer's home NMS root, which finds the worker itself.
func (t *requestTx) direct(ctx actor.Context) {
	if t.peerHomeDown {
		t.adopt(ctx)
		return
	}
	env, err := messages.NewEnvelope(messages.NewMsgID(), "nms", time.Now(), messages.Direction(t.pathFor(false)))
	if err != nil {
		t.fail(ctx, messages.Error{Code: messages.CodeInternal})
		return
	}
	t.stage = stagePeer
	// Delivery retransmits for about DefaultRetry's span; wait a bit longer.
	wait := t.s.cfg.Retry.Total() + 2*time.Second
	if t.peer.HomeNMS == t.s.cfg.Home {
		id, ok := t.s.index.get(t.peer.FQDN)
		if !ok && t.adoptedID != 0 {
			// Just adopted (home.go): the adoptSession sent to the
			// peer's worker arrives before this delivery, so the worker
			// holds the session by then even if the index does not yet.
			id, ok = t.adoptedID, true
		}
		if ok {
			link := t.s.cfg.Link
			f := svc.Frame{To: t.peer.FQDN, Envelope: env, ReplyTo: svc.Ref{Process: link.Addr(), Service: link.Service(), ID: ctx.Self().Id}}
			ctx.Send(t.s.shard(id), deliverReq{f: f, id: id})
			ctx.SetReceiveTimeout(wait)
			t.deliveredTo = id
			t.watchHome(ctx)
			return
		}
	}
	f, err := svc.Frame{To: t.peer.FQDN, Envelope: env}.Encode()
	if err != nil {
		t.fail(ctx, messages.Error{Code: messages.CodeInternal})
		return
	}
	if err := t.s.cfg.Link.Request(ctx.Self(), svc.RootOf(t.peer.HomeNMS, svc.NMS), f); err != nil {
		t.s.log.Warn("nms: direct peer", "peer", t.peer.FQDN, "home", t.peer.HomeNMS, "err", err)
		t.fail(ctx, messages.Error{Code: messages.CodePeerUnreachable, Message: "peer's NMS unreachable", Retry: true})
		return
	}
	ctx.SetReceiveTimeout(wait)
	t.watchHome(ctx)
}

// relayRefused is the TRS's "no" to an allocation, for when the TRS cannot
// be reached at all.
func relayRefused(id messages.MsgID) messages.Envelope {
	env, _ := messages.NewEnvelope(id, "trs", time.Now(), messages.RelayAllocReply{OK: false})
	return env
}

func (t *requestTx) onFrame(ctx actor.Context, env messages.Envelope) {
	switch {
	case t.stage == stagePeer && env.Type == messages.MsgDirectionAck:
		ctx.SetReceiveTimeout(0)
		t.s.Counters.Tunnels.Add(1)
		t.s.tunnelUp(t.me.FQDN, t.peer.FQDN, t.decision.Kind == path.Relay)
		t.reply(ctx, messages.Path(t.pathFor(true)))
	case t.stage == stagePeer && env.Type == messages.MsgError:
		e, err := messages.DecodeBody[messages.Error](env)
		if err != nil {
			e = messages.Error{Code: messages.CodePeerUnreachable}
		}
		t.fail(ctx, e)
	}
}

func (t *requestTx) fail(ctx actor.Context, e messages.Error) {
	t.s.Counters.TunnelErrors.Add(1)
	t.reply(ctx, e)
}

// reply answers the request (tunnelTx.answer) and ends the transaction.
func (t *requestTx) reply(ctx actor.Context, body messages.Body) {
	ctx.SetReceiveTimeout(0)
	t.answer(t.s, &t.enc, body)
	ctx.Stop(ctx.Self())
}
