package session

import (
	"context"
	"errors"
	"fmt"
	"net/netip"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/cyphonic/cyphonic-go/messages"
)

// Reverse lookups: the resolver answers a PTR query for a VIP no tunnel
// names by asking NMS who holds it (a VIPLookup), which sets nothing up.
// Lookups for one VIP share one request; all of them, with the tunnel
// requests' waiters, count against MaxPending. The caller (the node) rate
// limits them with the data plane's lookup budget and negative answers.

type (
	lookupVIP struct {
		vip   netip.Addr
		reply chan<- lookupResult
	}
	lookupResult struct {
		fqdn string
		err  error
	}
)

// LookupVIP asks NMS which node holds vip, without asking for a tunnel.
// An address no node may be reached at (nobody holds it, or its holder is
// revoked) returns an error wrapping ErrUnknownPeer. Call it from a
// goroutine that may wait, never from an actor.
func (s *Session) LookupVIP(ctx context.Context, vip netip.Addr) (string, error) {
	reply := make(chan lookupResult, 1)
	if !s.send(&lookupVIP{vip: vip.Unmap(), reply: reply}) {
		return "", ErrNotStarted
	}
	select {
	case r := <-reply:
		return r.fqdn, r.err
	case <-ctx.Done():
		return "", fmt.Errorf("session: who holds %s: %w", vip, ctx.Err())
	}
}

func (a *sessionActor) lookupVIP(ctx actor.Context, m *lookupVIP) {
	if a.pending >= a.cfg.MaxPending {
		replyLookup(m.reply, lookupResult{err: ErrBusy})
		return
	}
	a.lookups[m.vip] = append(a.lookups[m.vip], m.reply)
	a.pending++
	if a.state == StateOnline {
		a.sendLookup(ctx, m.vip)
	}
}

// sendLookups sends every queued lookup (after a registration).
func (a *sessionActor) sendLookups(ctx actor.Context) {
	for vip := range a.lookups {
		a.sendLookup(ctx, vip)
	}
}

func (a *sessionActor) sendLookup(ctx actor.Context, vip netip.Addr) {
	if _, busy := a.inFlight(messages.MsgVIPLookup, vip.String()); busy {
		return
	}
	if !a.request(ctx, messages.VIPLookup{VIP: vip}, vip.String()) {
		a.lookupFinished(vip, lookupResult{err: fmt.Errorf("session: lookup of %s not sent", vip)})
	}
}

// lookupDone acts on NMS's answer to a VIPLookup (key is the VIP's text).
func (a *sessionActor) lookupDone(ctx actor.Context, key string, d *txDone) {
	vip, err := netip.ParseAddr(key)
	if err != nil {
		return // we wrote it: cannot happen
	}
	var e *messages.Error
	switch {
	case errors.As(d.err, &e) && (e.Code == messages.CodeUnknownFQDN || e.Code == messages.CodeCertRevoked):
		a.lookupFinished(vip, lookupResult{err: fmt.Errorf("session: %s: %w", vip, ErrUnknownPeer)})
		return
	case lostCloud(d.err):
		// Keep it queued: it goes out again once logged in.
		a.relogin(ctx, fmt.Errorf("lookup of %s: %w", vip, d.err))
		return
	case d.err != nil:
		a.lookupFinished(vip, lookupResult{err: fmt.Errorf("session: who holds %s: %w", vip, d.err)})
		return
	}
	h, err := messages.DecodeBody[messages.VIPHolder](d.env)
	switch {
	case err != nil:
		err = fmt.Errorf("session: who holds %s: %w", vip, err)
	case h.VIP.Unmap() != vip:
		// The answer must be about the address we asked for.
		err = fmt.Errorf("session: who holds %s: %w: NMS answered for %s", vip, ErrWrongPeer, h.VIP)
	}
	if err != nil {
		a.log.Warn("bad answer to a VIP lookup", "vip", vip, "err", err)
		a.lookupFinished(vip, lookupResult{err: err})
		return
	}
	a.lookupFinished(vip, lookupResult{fqdn: h.FQDN})
}

func (a *sessionActor) lookupFinished(vip netip.Addr, r lookupResult) {
	for _, w := range a.lookups[vip] {
		replyLookup(w, r)
	}
	a.pending -= len(a.lookups[vip])
	delete(a.lookups, vip)
}

// failLookups gives up every queued lookup (the actor stops or restarts).
func (a *sessionActor) failLookups(err error) {
	for vip := range a.lookups {
		a.lookupFinished(vip, lookupResult{err: err})
	}
}

// replyLookup never blocks: every reply channel has room for its answer.
func replyLookup(ch chan<- lookupResult, r lookupResult) {
	select {
	case ch <- r:
	default:
	}
}
