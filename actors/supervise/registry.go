package supervise

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"
)

// maxFailureText bounds the failure text kept per actor: a panic value can be
// arbitrarily large and the registry must stay small.
const maxFailureText = 512

// gaveUpKept is how many given-up actors the registry remembers.
const gaveUpKept = 64

// Registry is the live view of the actors spawned through a System. It is
// safe for concurrent use. Per-message work is one atomic add; everything
// else happens on lifecycle and supervision events.
type Registry struct {
	mu      sync.Mutex
	live    map[string]*entry
	gaveUp  []Node // ring of the last gaveUpKept, oldest first
	kinds   map[string]*kindTotals
	removed chan struct{} // closed and replaced whenever an actor leaves
	now     func() time.Time
}

type kindTotals struct {
	restarts uint64
	gaveUp   uint64
}

// entry is one live actor. Fields under "guarded by Registry.mu" change on
// lifecycle and supervision events only.
type entry struct {
	id, kind, parent string
	pid              *actor.PID
	processed        atomic.Uint64
	// ending: the actor has taken Stopping or Restarting, so protoactor
	// has stopped (or is about to stop) its children, and a child spawned
	// now would never be told to stop. Cleared by its next Started. Read
	// by Spawn on the actor's own goroutine (it spawns its children).
	ending atomic.Bool

	// guarded by Registry.mu
	mailbox       actor.Mailbox // set by the mailbox producer during spawn
	state         string
	started       time.Time
	restarts      int
	lastFailure   string
	lastFailureAt time.Time
	nextRestartAt time.Time
	supervision   Supervision // Strategy "": no supervision event yet
	gaveUp        bool
}

func newRegistry() *Registry {
	return &Registry{
		live:    make(map[string]*entry),
		kinds:   make(map[string]*kindTotals),
		removed: make(chan struct{}),
		now:     time.Now,
	}
}

func (r *Registry) totals(kind string) *kindTotals {
	t := r.kinds[kind]
	if t == nil {
		t = &kindTotals{}
		r.kinds[kind] = t
	}
	return t
}

// add registers e before its actor is spawned, so that its Started message
// always finds it. It refuses a taken ID (ErrNameExists) and a parent that
// is stopping or restarting (ErrParentEnding).
func (r *Registry) add(e *entry) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, taken := r.live[e.id]; taken {
		return ErrNameExists
	}
	if p := r.live[e.parent]; e.parent != "" && p != nil && p.ending.Load() {
		return ErrParentEnding
	}
	e.state = StateStarting
	e.started = r.now()
	// Until the parent's WithBackoff says otherwise (supervisedBy, during
	// the spawn), the supervisor is protoactor's default.
	e.supervision = defaultSupervision
	r.live[e.id] = e
	r.totals(e.kind) // so the kind shows up in metrics from the start
	return nil
}

// defaultSupervision is protoactor's default supervisor strategy (its
// defaultSupervisionStrategy: one-for-one, restarting at once, stopping a
// child after more than 10 failures in 10 s), which supervises top-level
// actors and the children of parents spawned without WithBackoff. (A
// top-level actor whose props carry actor.WithGuardian, which nothing here
// uses, would be shown under this default too: the registry cannot read a
// props' strategy.)
var defaultSupervision = Supervision{Strategy: StrategyImmediate, MaxRetries: 10, Window: 10 * time.Second}

// supervisedBy records that the actor being spawned with the given ID is
// supervised by a BackoffStrategy with policy b (WithBackoff).
func (r *Registry) supervisedBy(id string, b Backoff) {
	r.mu.Lock()
	defer r.mu.Unlock()
	e := r.live[id]
	if e == nil {
		return // not spawned through Spawn
	}
	e.supervision = Supervision{
		Strategy: StrategyBackoff, MaxRetries: b.MaxRetries, Window: b.Window,
		Initial: b.Initial, Max: b.Max, Multiplier: b.Multiplier,
	}
}

// setMailbox is called by the mailbox producer, once per spawn.
func (r *Registry) setMailbox(e *entry, mb actor.Mailbox) {
	r.mu.Lock()
	defer r.mu.Unlock()
	e.mailbox = mb
}

// started records an incarnation of e (first start or after a restart).
func (r *Registry) started(e *entry) {
	r.mu.Lock()
	defer r.mu.Unlock()
	e.state = StateRunning
	e.nextRestartAt = time.Time{}
}

func (r *Registry) setState(e *entry, state string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !e.gaveUp {
		e.state = state
	}
}

// stopped removes e; an actor its supervisor gave up on is kept in the
// gave-up ring so operators can see why it is gone.
func (r *Registry) stopped(e *entry) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.live[e.id] != e {
		return
	}
	delete(r.live, e.id)
	if e.gaveUp {
		n := r.nodeLocked(e)
		n.State = StateGaveUp
		if len(r.gaveUp) == gaveUpKept {
			r.gaveUp = slices.Delete(r.gaveUp, 0, 1)
		}
		r.gaveUp = append(r.gaveUp, n)
	}
	close(r.removed)
	r.removed = make(chan struct{})
}

// failed records a supervision decision about the actor with the given ID.
// describe returns a live actor's kind and restart count.
func (r *Registry) describe(id string) (kind string, restarts int, ok bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	e := r.live[id]
	if e == nil {
		return "", 0, false
	}
	return e.kind, e.restarts, true
}

// backoff is the BackoffStrategy's scheduled restart, if the decision is
// one; nil for protoactor's own SupervisorEvents.
func (r *Registry) failed(id string, reason any, directive actor.Directive, backoff *BackoffEvent) {
	text := failureText(reason)
	r.mu.Lock()
	defer r.mu.Unlock()
	e := r.live[id]
	if e == nil {
		return // not one of ours, or already gone
	}
	e.lastFailure = text
	e.lastFailureAt = r.now()
	switch directive {
	case actor.RestartDirective:
		if backoff != nil {
			e.state = StateBackoff
			e.nextRestartAt = backoff.RestartAt
			sv := &e.supervision
			if sv.Strategy != StrategyBackoff {
				// A BackoffStrategy given by actor.WithSupervisor rather
				// than WithBackoff: its policy beyond the event's is unknown.
				*sv = Supervision{Strategy: StrategyBackoff}
			}
			sv.Failures, sv.MaxRetries, sv.Window, sv.Delay = backoff.Failures, backoff.MaxRetries, backoff.Window, backoff.Delay
			return // the restart itself is reported when it happens
		}
		// With StrategyBackoff this is the restart its BackoffEvent
		// announced; otherwise an immediate one, as recorded at spawn.
		e.restarts++
		e.state = StateRestarting
		e.nextRestartAt = time.Time{}
		r.totals(e.kind).restarts++
	case actor.StopDirective:
		if !e.gaveUp {
			e.gaveUp = true
			e.state = StateGaveUp
			r.totals(e.kind).gaveUp++
		}
	}
}

func failureText(reason any) string {
	var s string
	switch v := reason.(type) {
	case error:
		s = v.Error()
	case string:
		s = v
	default:
		s = fmt.Sprint(v)
	}
	if len(s) > maxFailureText {
		s = s[:maxFailureText] + "…"
	}
	return s
}

func (r *Registry) nodeLocked(e *entry) Node {
	n := Node{
		ID:            e.id,
		Kind:          e.kind,
		Parent:        e.parent,
		State:         e.state,
		Processed:     e.processed.Load(),
		Restarts:      e.restarts,
		LastFailure:   e.lastFailure,
		LastFailureAt: e.lastFailureAt,
		NextRestartAt: e.nextRestartAt,
		Started:       e.started,
	}
	if e.supervision.Strategy != "" {
		sv := e.supervision
		n.Supervision = &sv
	}
	if e.pid != nil {
		n.PID = e.pid.String()
	}
	if e.mailbox != nil {
		n.Mailbox = e.mailbox.UserMessageCount()
	}
	return n
}

// Snapshot returns the live actors as a tree, children sorted by ID.
func (r *Registry) Snapshot() Tree {
	r.mu.Lock()
	nodes := make(map[string]*Node, len(r.live))
	ids := make([]string, 0, len(r.live))
	for id, e := range r.live {
		n := r.nodeLocked(e)
		nodes[id] = &n
		ids = append(ids, id)
	}
	t := Tree{Taken: r.now(), GaveUp: slices.Clone(r.gaveUp)}
	r.mu.Unlock()

	// Build bottom-up: sorting IDs in reverse puts every child ("a/b") before
	// its parent ("a"), so a parent copies its children only once they are
	// complete.
	slices.Sort(ids)
	slices.Reverse(ids)
	for _, id := range ids {
		n := nodes[id]
		slices.Reverse(n.Children) // appended in reverse ID order
		if p, ok := nodes[n.Parent]; ok && n.Parent != "" {
			p.Children = append(p.Children, *n)
			continue
		}
		t.Actors = append(t.Actors, *n)
	}
	slices.Reverse(t.Actors)
	return t
}

// Len returns the number of live actors.
func (r *Registry) Len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.live)
}

// Kinds returns per-kind totals, sorted by kind, for metrics collectors.
func (r *Registry) Kinds() []KindStats {
	r.mu.Lock()
	defer r.mu.Unlock()
	byKind := make(map[string]*KindStats, len(r.kinds))
	for k, t := range r.kinds {
		byKind[k] = &KindStats{Kind: k, Restarts: t.restarts, GaveUp: t.gaveUp}
	}
	for _, e := range r.live {
		ks := byKind[e.kind]
		ks.Live++
		if e.mailbox != nil {
			d := e.mailbox.UserMessageCount()
			ks.Mailbox += d
			ks.MailboxMax = max(ks.MailboxMax, d)
		}
	}
	out := make([]KindStats, 0, len(byKind))
	for _, ks := range byKind {
		out = append(out, *ks)
	}
	slices.SortFunc(out, func(a, b KindStats) int { return strings.Compare(a.Kind, b.Kind) })
	return out
}

// waitUntil blocks until done (called under r.mu) reports true, or ctx ends.
func (r *Registry) waitUntil(ctx context.Context, done func() bool) error {
	for {
		r.mu.Lock()
		ok := done()
		ch := r.removed
		r.mu.Unlock()
		if ok {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// WaitGone blocks until the actor with the given ID has stopped (or was
// never registered), or ctx ends.
func (r *Registry) WaitGone(ctx context.Context, id string) error {
	return r.waitUntil(ctx, func() bool { _, ok := r.live[id]; return !ok })
}

// WaitEmpty blocks until no registered actor is alive, or ctx ends.
func (r *Registry) WaitEmpty(ctx context.Context) error {
	return r.waitUntil(ctx, func() bool { return len(r.live) == 0 })
}

// roots returns the PIDs of live actors that have no registered parent.
func (r *Registry) roots() []*actor.PID {
	r.mu.Lock()
	defer r.mu.Unlock()
	var pids []*actor.PID
	for _, e := range r.live {
		if _, ok := r.live[e.parent]; !ok || e.parent == "" {
			pids = append(pids, e.pid)
		}
	}
	return pids
}
