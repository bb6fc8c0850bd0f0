package nms

import (
	"time"

	"github.com/cyphonic/cyphonic-go/transport/signaling"
)

// Deduplication that scales with traffic, not with time.
//
// A node retransmits a request unchanged (same message ID, same timestamp)
// on its retry schedule and gives up after it; so a reply needs to be kept
// only for that long (the dedup window), not for the clock-skew window the
// envelope's timestamp is checked against. What the long cache also did,
// refusing a replay of a captured request, is done per session by
// reqGuard at a few bytes a node:
//
//   - lag: the smallest (cloud clock - envelope timestamp) the session has
//     shown, i.e. the node's clock offset plus the best network delay. A
//     request whose lag exceeds it by more than the window cannot be a
//     retransmission (the node stopped those a window after the first
//     copy), so it is a replay and is refused. A replay of a request whose
//     cached reply has expired always falls here, because the cache keeps a
//     reply for at least the window after its first copy arrived.
//   - keepalives are idempotent and never cached: the guard remembers the
//     newest keepalive's timestamp (nanoseconds, sealed: a retransmission
//     carries its original's), so a retransmission is answered again
//     without store work and an older one (a replay) is refused.
//   - every other request is cached for the window, but one session may
//     start at most perNode of them per window, so one node cannot fill the
//     cache that all nodes share.
type reqGuard struct {
	lag      int64 // ns; valid when lagSet
	kaTime   int64 // newest keepalive's envelope timestamp
	winStart int64 // start of the current per-node window (cloud clock, ns)
	winN     uint16
	lagSet   bool
}

// dedupSlack covers network delay and scheduling on top of the node's retry
// schedule.
const dedupSlack = 2 * time.Second

// dedupWindow is how long after a request's first copy a retransmission of
// it can still arrive: the whole retry schedule plus slack.
func dedupWindow(r signaling.Retry) time.Duration { return r.Total() + dedupSlack }

// fresh reports whether a request sent at (node clock) could still be a
// first copy or a retransmission, and learns the session's lag from it.
func (g *reqGuard) fresh(now, sent int64, window time.Duration) bool {
	lag := now - sent
	if g.lagSet && lag > g.lag+int64(window) {
		return false
	}
	if !g.lagSet || lag < g.lag {
		g.lag, g.lagSet = lag, true
	}
	return true
}

// kaVerdict is what to do with a keepalive.
type kaVerdict uint8

const (
	kaNew    kaVerdict = iota // run it
	kaRepeat                  // a retransmission: answer again, no store work
	kaOld                     // older than the newest seen: a replay, drop
)

// keepalive classifies a keepalive by its timestamp. Only the node can
// seal one, and it stamps each new keepalive later than the last, so an
// equal timestamp is a retransmission of the newest run.
func (g *reqGuard) keepalive(sent int64) kaVerdict {
	switch {
	case sent == g.kaTime:
		return kaRepeat
	case sent < g.kaTime:
		return kaOld
	}
	return kaNew
}

// ran records that the keepalive sent at sent is being run: from now on
// its retransmissions are repeats. A keepalive dropped before it ran is
// not recorded, so its retransmission runs it.
func (g *reqGuard) ran(sent int64) { g.kaTime = sent }

// admit counts a new cached transaction against the session's share of
// the cache: at most limit per window.
func (g *reqGuard) admit(now int64, window time.Duration, limit int) bool {
	if now-g.winStart > int64(window) {
		g.winStart, g.winN = now, 0
	}
	if int(g.winN) >= limit {
		return false
	}
	g.winN++
	return true
}
