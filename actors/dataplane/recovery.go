package dataplane

import (
	"net/netip"
	"time"

	"github.com/cyphonic/cyphonic-go/messages"
)

// Recovery after the peer lost our session (it was killed and started
// again, with an empty session table): we set up a new tunnel through NMS
// — which is how the restarted peer learns about us, since it answers
// handshakes only from peers NMS directed to it — instead of sending into
// the void until DeadAfter. Two signals start it:
//   - the peer answers our data with an unknown-index message
//     (messages.UnknownIndex): recovery within a round trip of our first
//     packet after its restart, when it came back on the same address;
//   - we have sent for SilenceAfter with nothing authenticated back (the
//     peer came back elsewhere — a new port — or its answers are lost):
//     a live peer that receives always answers within PassiveKeepalive,
//     so this is WireGuard's rule (KeepaliveTimeout+RekeyTimeout, 15 s)
//     with timers short enough to recover within a few seconds.
//
// Neither ends the live session: a false alarm costs a rekey.
//
// The answer is not authenticated (the peer has lost every key we share),
// so it only ever adds work of bounded size and never removes anything:
//   - it must echo the receiver index and a recent counter of a packet we
//     sent on the live session, and come from where that session sends, so
//     only someone on the path can forge it (someone who can also drop our
//     packets, which costs us the tunnel anyway);
//   - it starts an attempt (ask NMS for a path, then handshake) beside the
//     live session, which keeps carrying data until a new, authenticated
//     handshake replaces it — exactly as a rekey would;
//   - attempts are spaced by a backoff that only a quiet spell resets, so
//     a flood of forged answers costs at most one NMS request and one
//     handshake every recoverMaxGap, and each peer has at most one answer
//     queued for its actor.

const (
	// recoverFirstGap is the least time between two attempts; each
	// further attempt doubles it up to recoverMaxGap. A genuine restart
	// is usually repaired by the first attempt; a second one is there for
	// a peer that answered before it had logged in again (NMS could not
	// reach it yet).
	recoverFirstGap = time.Second
	recoverMaxGap   = 16 * time.Second
	// recoverQuiet: this long without an attempt and the backoff starts
	// over. It is not reset by a new session: a forged answer's attempt
	// succeeds (the peer is alive) and must not re-arm the next one.
	recoverQuiet = time.Minute
	// hintWindow is how far behind our send counter an echoed counter may
	// be: the peer answers what it receives, within a round trip.
	hintWindow = 1 << 16
)

// hintFresh reports whether counter is one we handed out on a session
// whose next counter is next, and recently.
func hintFresh(counter, next uint64) bool {
	return counter < next && next-counter <= hintWindow
}

// recovery is a peer's state of re-establishment attempts. Plain data,
// owned by the peer actor; the timing decisions are its methods.
type recovery struct {
	active   bool      // an attempt is under way (waiting for a path or a handshake)
	since    time.Time // when it began
	last     time.Time // when the last attempt began
	attempts int       // attempts since the backoff last started over
}

// gap is the time that must pass after the last attempt before another.
func (r *recovery) gap() time.Duration {
	if r.attempts == 0 {
		return 0
	}
	g := recoverFirstGap
	for i := 1; i < r.attempts && g < recoverMaxGap; i++ {
		g *= 2
	}
	return min(g, recoverMaxGap)
}

// start reports whether an unknown-index answer at now begins an attempt,
// and records it if so.
func (r *recovery) start(now time.Time) bool {
	if r.attempts > 0 && now.Sub(r.last) >= recoverQuiet {
		r.attempts = 0
	}
	if r.attempts > 0 && now.Sub(r.last) < r.gap() {
		return false
	}
	r.attempts++
	r.active, r.since, r.last = true, now, now
	return true
}

// expire ends an attempt that has produced no session within timeout;
// the live session stays as it is.
func (r *recovery) expire(now time.Time, timeout time.Duration) {
	if r.active && now.Sub(r.since) > timeout {
		r.active = false
	}
}

// installed: a new session replaced the live one; the attempt is over
// (its backoff is not).
func (r *recovery) installed() { r.active = false }

// silence watches for a peer that stopped answering: since is the first
// tick that saw a send after the last authenticated receive.
type silence struct{ since time.Time }

// observe reports, at a tick, whether we have been sending for after
// without hearing from the peer.
func (s *silence) observe(now, lastSent, lastRecv time.Time, after time.Duration) bool {
	if !lastSent.After(lastRecv) {
		s.since = time.Time{}
		return false
	}
	if s.since.IsZero() || s.since.Before(lastRecv) {
		s.since = now
	}
	return now.Sub(s.since) >= after
}

// passiveDue reports whether to send a keepalive because the peer sends
// and we do not: we have received since our last send, which is every old.
func passiveDue(now, lastSent, lastRecv time.Time, every time.Duration) bool {
	return lastRecv.After(lastSent) && now.Sub(lastSent) >= every
}

// lost takes an unknown-index answer from the wire (a socket reader calls
// it: cheap checks only) and tells the peer actor if it echoes a packet
// we recently sent on a live session, from where that session sends.
// Everything else is counted and dropped.
func (d *Dataplane) lost(u messages.UnknownIndex, from netip.AddrPort, relayed bool) {
	s := d.tables.ByRemote(u.Receiver)
	if s == nil || s.Key == nil || s.Pipe == nil || s.Pipe != s.Peer.Pipe() {
		d.global.Add(BadUnknownIndex, 1)
		return
	}
	h := s.Peer
	r := h.route.Load()
	if r == nil || r.Relay != relayed || r.Addr != from || !hintFresh(u.Counter, s.Key.Stats().SentPackets) {
		h.Stats.Drops.Add(BadUnknownIndex, 1)
		return
	}
	// One answer at a time in the actor's mailbox: the rest, while it
	// waits, are the same news.
	if !h.lostQueued.CompareAndSwap(false, true) {
		return
	}
	d.sys.Root().Send(s.Pipe.Peer, lost{s})
}

// onLost: the peer says it has no session under the index our live
// session sends to. Start an attempt (if the backoff allows): ask NMS for
// a path; the Update that brings it starts the handshake (or the peer,
// directed by NMS, sends us one). The live session stays.
func (p *peerActor) onLost(m lost) {
	p.h.lostQueued.Store(false)
	if p.stopping || p.cur == nil || m.s != p.cur {
		return
	}
	if !p.recover(time.Now(), "it answered unknown-index") {
		p.h.Stats.Drops.Add(BadUnknownIndex, 1)
	}
}

// recover starts an attempt if the backoff allows and reports whether it
// did.
func (p *peerActor) recover(now time.Time, why string) bool {
	if !p.recov.start(now) {
		return false
	}
	p.d.log.Info("peer: the peer seems to have lost our session (restarted?): setting up a new one",
		"peer", p.h.FQDN, "why", why, "attempt", p.recov.attempts)
	if p.d.cfg.OnPeerNeedsPath != nil {
		p.d.cfg.OnPeerNeedsPath(p.h.FQDN)
	}
	return true
}
