package supervise

import "time"

// Actor states shown in the tree.
const (
	StateStarting   = "starting"
	StateRunning    = "running"
	StateBackoff    = "backoff" // failed; a restart is scheduled after a backoff delay
	StateRestarting = "restarting"
	StateStopping   = "stopping"
	StateGaveUp     = "gave-up" // failed too often; the supervisor stopped it
)

// Node is one actor in a Tree snapshot. It is plain data so that it encodes
// to JSON for /debug/actors and decodes again in the CLI.
type Node struct {
	ID            string    `json:"id"`
	PID           string    `json:"pid"`
	Kind          string    `json:"kind"`
	Parent        string    `json:"parent,omitempty"`
	State         string    `json:"state"`
	Mailbox       int       `json:"mailbox"` // user messages waiting
	Processed     uint64    `json:"processed"`
	Restarts      int       `json:"restarts"`
	LastFailure   string    `json:"last_failure,omitempty"`
	LastFailureAt time.Time `json:"last_failure_at,omitzero"`
	NextRestartAt time.Time `json:"next_restart_at,omitzero"`
	Started       time.Time `json:"started,omitzero"`
	// Supervision is how the actor's failures are handled: recorded when
	// it is spawned (its parent's WithBackoff strategy, else protoactor's
	// immediate default) and updated by each supervision event.
	Supervision *Supervision `json:"supervision,omitempty"`
	// Status, Queues and Info are filled by the actor's owner when the
	// tree is served (see debug.Server.Annotate), never by the registry:
	// what the actor is doing in its own terms (a peer's tunnel is
	// "handshaking" while the actor is "running"), the queues in front of
	// it that are not its mailbox, and any other facts worth a glance.
	Status   string            `json:"status,omitempty"`
	Queues   []Queue           `json:"queues,omitempty"`
	Info     map[string]string `json:"info,omitempty"`
	Children []Node            `json:"children,omitempty"`
}

// Supervision is what the registry knows of an actor's supervisor: its
// policy, from the spawn, and its latest decision.
type Supervision struct {
	// Strategy: StrategyBackoff (BackoffStrategy), or StrategyImmediate for a
	// supervisor that restarts the actor without a delay (protoactor's
	// one-for-one default, for top-level actors and the children of a
	// parent spawned without WithBackoff).
	Strategy   string        `json:"strategy"`
	Failures   int           `json:"failures,omitempty"`    // failures within Window, the last one included
	MaxRetries int           `json:"max_retries,omitempty"` // failures within Window it restarts; negative: never gives up
	Window     time.Duration `json:"window,omitempty"`
	Delay      time.Duration `json:"delay,omitempty"` // the last backoff delay (NextRestartAt is when it ends)
	// The backoff policy (StrategyBackoff only): the first delay, its cap
	// and growth per consecutive failure, before jitter.
	Initial    time.Duration `json:"initial,omitempty"`
	Max        time.Duration `json:"max,omitempty"`
	Multiplier float64       `json:"multiplier,omitempty"`
}

// NextDelay is the delay a failure now would get before its restart,
// jitter aside: the policy's next step if the last failure (at last) is
// still within Window, else its first. Zero for StrategyImmediate.
func (s Supervision) NextDelay(last, now time.Time) time.Duration {
	if s.Strategy != StrategyBackoff {
		return 0
	}
	failures := 1
	if !last.IsZero() && now.Sub(last) < s.Window {
		failures = s.Failures + 1
	}
	return Backoff{Initial: s.Initial, Max: s.Max, Multiplier: s.Multiplier}.Delay(failures, 0.5)
}

// Supervision strategies as Supervision.Strategy names them.
const (
	StrategyBackoff   = "backoff"
	StrategyImmediate = "immediate"
)

// Queue is the depth of one queue that feeds an actor besides its mailbox.
type Queue struct {
	Name    string `json:"name"`
	Len     int    `json:"len"`
	Cap     int    `json:"cap,omitempty"`     // its bound; 0: unknown
	Dropped uint64 `json:"dropped,omitempty"` // items refused because it was full
}

// Tree is a point-in-time view of the live actors, as a forest rooted at
// actors whose parent is not a registered actor, plus the most recent actors
// whose supervisor gave up on them (they are no longer alive).
type Tree struct {
	// Daemon and Version name the process serving the tree (set by the
	// debug server, empty in the registry's own snapshots).
	Daemon  string    `json:"daemon,omitempty"`
	Version string    `json:"version,omitempty"`
	Taken   time.Time `json:"taken"`
	Actors  []Node    `json:"actors"`
	GaveUp  []Node    `json:"gave_up,omitempty"`
}

// Count returns the number of live actors in the tree.
func (t Tree) Count() int {
	n := 0
	var walk func([]Node)
	walk = func(ns []Node) {
		for i := range ns {
			n++
			walk(ns[i].Children)
		}
	}
	walk(t.Actors)
	return n
}

// Walk calls f on every node, live and given up, parents before children;
// f may change the node.
func (t *Tree) Walk(f func(*Node)) {
	var walk func([]Node)
	walk = func(ns []Node) {
		for i := range ns {
			f(&ns[i])
			walk(ns[i].Children)
		}
	}
	walk(t.Actors)
	walk(t.GaveUp)
}

// Find returns the live actor with the given ID.
func (t Tree) Find(id string) (Node, bool) {
	var found *Node
	var walk func([]Node)
	walk = func(ns []Node) {
		for i := range ns {
			if found != nil {
				return
			}
			if ns[i].ID == id {
				found = &ns[i]
				return
			}
			walk(ns[i].Children)
		}
	}
	walk(t.Actors)
	if found == nil {
		return Node{}, false
	}
	return *found, true
}

// KindStats aggregates the registry per actor kind, for metrics.
type KindStats struct {
	Kind       string
	Live       int    // actors of this kind alive now
	Restarts   uint64 // restarts since the system started, including actors now gone
	GaveUp     uint64 // actors of this kind whose supervisor gave up
	Mailbox    int    // sum of mailbox depths of live actors
	MailboxMax int    // deepest mailbox among live actors
}
