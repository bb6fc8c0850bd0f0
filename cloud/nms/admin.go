package nms

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/asynkron/protoactor-go/actor"
)

// LiveSession is a node's session as this NMS holds it now: what an
// operator asks of the cloud beside the store's record (cloud/admin).
type LiveSession struct {
	FQDN    string
	ID      uint32
	Serial  string         // the certificate's serial, hex
	From    netip.AddrPort // where its last authenticated packet came from
	Seen    time.Time      // when
	Expires time.Time
}

// Requests of the operator's tools to the workers, answered with
// ctx.Respond: each worker owns its sessions.
type (
	liveSessionsReq struct{}
	endSessionReq   struct {
		fqdn string
		id   uint32
	}
)

// LiveSessions returns the sessions this NMS holds, ordered by FQDN.
func (s *Service) LiveSessions(ctx context.Context) ([]LiveSession, error) {
	var out []LiveSession
	for _, w := range s.shards {
		v, err := s.ask(ctx, w, liveSessionsReq{})
		if err != nil {
			return nil, err
		}
		out = append(out, v.([]LiveSession)...)
	}
	slices.SortFunc(out, func(a, b LiveSession) int { return strings.Compare(a.FQDN, b.FQDN) })
	return out, nil
}

// EndSession ends fqdn's session as a revocation does, without the deny
// list: it goes here and from the store at once, and the node's next
// request is answered, sealed with the old key, that its session expired,
// so it logs in again. It reports whether fqdn had a session here.
func (s *Service) EndSession(ctx context.Context, fqdn string) (bool, error) {
	id, ok := s.index.get(fqdn)
	if !ok {
		return false, nil
	}
	v, err := s.ask(ctx, s.shard(id), endSessionReq{fqdn: fqdn, id: id})
	if err != nil {
		return false, err
	}
	return v.(bool), nil
}

// ask sends m to actor pid and waits for its answer until ctx ends.
func (s *Service) ask(ctx context.Context, pid *actor.PID, m any) (any, error) {
	timeout := 5 * time.Second
	if d, ok := ctx.Deadline(); ok {
		timeout = max(time.Until(d), time.Millisecond)
	}
	v, err := s.sys.Root().RequestFuture(pid, m, timeout).Result()
	if err != nil {
		return nil, fmt.Errorf("nms: %T: %w", m, err)
	}
	return v, nil
}

// onAdmin answers an operator's request; false if m is none.
func (w *worker) onAdmin(ctx actor.Context, m any) bool {
	switch m := m.(type) {
	case liveSessionsReq:
		out := make([]LiveSession, 0, len(w.sessions))
		for _, se := range w.sessions {
			out = append(out, LiveSession{FQDN: se.fqdn, ID: se.id, Serial: se.serial, From: se.from,
				Seen: time.Unix(0, se.lastSeen), Expires: time.Unix(0, se.expires)})
		}
		ctx.Respond(out)
	case endSessionReq:
		se := w.sessions[m.id]
		if se != nil && se.fqdn != m.fqdn {
			se = nil
		}
		if se != nil {
			w.endSession(se, time.Now())
			w.s.Counters.Ended.Add(1)
			w.s.log.Warn("nms: session ended by the operator", "fqdn", se.fqdn, "session", se.id)
			w.deleteSession(se.id)
			w.flushDeletes(ctx)
		}
		ctx.Respond(se != nil)
	default:
		return false
	}
	return true
}
