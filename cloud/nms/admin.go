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

// Requests of the operator's tools to the root actor, answered with
// ctx.Respond: the root owns the sessions.
type (
	liveSessionsReq struct{}
	endSessionReq   struct{ fqdn string }
)

// LiveSessions returns the sessions this NMS holds, ordered by FQDN.
func (s *Service) LiveSessions(ctx context.Context) ([]LiveSession, error) {
	v, err := s.ask(ctx, liveSessionsReq{})
	if err != nil {
		return nil, err
	}
	return v.([]LiveSession), nil
}

// EndSession ends fqdn's session as a revocation does, without the deny
// list: it goes here and from the store at once, and the node's next
// request is answered, sealed with the old key, that its session expired,
// so it logs in again. It reports whether fqdn had a session here.
func (s *Service) EndSession(ctx context.Context, fqdn string) (bool, error) {
	v, err := s.ask(ctx, endSessionReq{fqdn: fqdn})
	if err != nil {
		return false, err
	}
	return v.(bool), nil
}

// ask sends m to the root and waits for its answer until ctx ends.
func (s *Service) ask(ctx context.Context, m any) (any, error) {
	timeout := 5 * time.Second
	if d, ok := ctx.Deadline(); ok {
		timeout = max(time.Until(d), time.Millisecond)
	}
	v, err := s.sys.Root().RequestFuture(s.pid, m, timeout).Result()
	if err != nil {
		return nil, fmt.Errorf("nms: %T: %w", m, err)
	}
	return v, nil
}

// onAdmin answers an operator's request; false if m is none.
func (r *root) onAdmin(ctx actor.Context, m any) bool {
	switch m := m.(type) {
	case liveSessionsReq:
		out := make([]LiveSession, 0, len(r.byFQDN))
		for _, se := range r.byFQDN {
			out = append(out, LiveSession{FQDN: se.fqdn, ID: se.id, Serial: se.serial, From: se.from,
				Seen: time.Unix(0, se.lastSeen), Expires: time.Unix(0, se.expires)})
		}
		slices.SortFunc(out, func(a, b LiveSession) int { return strings.Compare(a.FQDN, b.FQDN) })
		ctx.Respond(out)
	case endSessionReq:
		se := r.byFQDN[m.fqdn]
		if se != nil {
			r.endSession(se, time.Now())
			r.s.Counters.Ended.Add(1)
			r.s.log.Warn("nms: session ended by the operator", "fqdn", se.fqdn, "session", se.id)
			r.deleteSession(se.id)
			r.flushDeletes(ctx)
		}
		ctx.Respond(se != nil)
	default:
		return false
	}
	return true
}
