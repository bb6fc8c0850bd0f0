// Package fallback decides, for one handshake attempt series of a peer,
// when an init goes out and over which routes: the direct or punched
// endpoints NMS named, the TRS relay, or both.
//
// The rule (issue 10, "never stranded"): a pair whose path is direct or
// hole-punched tries that path alone for a short deadline, then adds the
// relay, whose ticket NMS hands out with every path. The first answer
// wins; a tunnel that came up over the relay keeps probing the direct
// endpoints and moves when one gets through (the peer actor's upgrade). So
// two nodes that can each reach the cloud always get a tunnel, and the
// name resolves as soon as any path works. Trying direct first, rather
// than every route at once, keeps a working direct path from losing the
// race to the relay and then having to upgrade.
//
// It is a pure function of durations and flags so the actor stays a thin
// shell and the rule is table-tested.
package fallback

import "time"

// DefaultAfter is how long a direct or punched path is tried alone before
// the relay is added: a few handshake retries, well under the resolver's
// wait, and longer than any RTT a punched path would need.
const DefaultAfter = 2500 * time.Millisecond

// Attempt is what a peer knows about its path while it has no session.
type Attempt struct {
	// Relayed: NMS chose the relay as the path itself.
	Relayed bool
	// Direct: we have at least one direct endpoint we can send to.
	Direct bool
	// Ticket: we hold a relay ticket with a TRS address we can send to.
	Ticket bool
	// After is the fallback deadline (DefaultAfter if zero); Retry is how
	// often a fresh init goes out while no answer came.
	After, Retry time.Duration
}

// Routes says where an init goes.
type Routes struct {
	Direct, Relay bool
}

// Any reports whether the init goes anywhere.
func (r Routes) Any() bool { return r.Direct || r.Relay }

// Routes are the routes an init sent elapsed into the series takes.
func (a Attempt) Routes(elapsed time.Duration) Routes {
	if a.Relayed || !a.Direct {
		return Routes{Relay: a.Ticket}
	}
	return Routes{Direct: true, Relay: a.Ticket && elapsed >= a.after()}
}

// Due reports whether an initiator should send a fresh init now, elapsed
// into the series, when its last init went out at lastSent (negative: none
// yet). One goes out at once, then every Retry, and also the moment the
// relay is added, so the fallback costs no extra Retry.
func (a Attempt) Due(elapsed, lastSent time.Duration) bool {
	switch {
	case lastSent < 0:
		return true
	case a.Retry > 0 && elapsed-lastSent >= a.Retry:
		return true
	}
	return a.Routes(elapsed) != a.Routes(lastSent)
}

func (a Attempt) after() time.Duration {
	if a.After <= 0 {
		return DefaultAfter
	}
	return a.After
}
