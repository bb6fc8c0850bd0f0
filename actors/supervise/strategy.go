package supervise

import (
	"math/rand/v2"
	"sync"
	"time"

	"github.com/asynkron/protoactor-go/actor"
)

// BackoffEvent is published on the EventStream when BackoffStrategy has
// scheduled a delayed restart. The *actor.SupervisorEvent with
// RestartDirective follows when the restart is actually issued.
type BackoffEvent struct {
	Child     *actor.PID
	Reason    any
	Failures  int // failures within the window, including this one
	Delay     time.Duration
	RestartAt time.Time
	// The strategy's limits, so that observers can show how close the
	// child is to being given up (Backoff's fields of the same names).
	MaxRetries int
	Window     time.Duration
}

// BackoffStrategy is a one-for-one actor.SupervisorStrategy that restarts a
// failed child after an exponentially growing, jittered delay, and stops it
// after more than MaxRetries failures within Window.
//
// The delay never blocks the parent: HandleFailure runs on the parent's
// mailbox goroutine, so it only arms a timer (the failed child stays
// suspended meanwhile, its messages queued) and returns. This is what
// protoactor's own exponential strategy does, but that one grows linearly and
// never gives up.
//
// Close cancels pending restarts; System.Shutdown closes the strategies made
// by System.NewBackoffStrategy.
type BackoffStrategy struct {
	cfg     Backoff
	decider actor.DeciderFunc

	mu      sync.Mutex
	pending map[*pendingRestart]struct{}
	closed  bool
	running sync.WaitGroup // restart callbacks in flight
}

// pendingRestart is one child waiting out its delay; restart issues it.
type pendingRestart struct {
	timer   *time.Timer
	child   *actor.PID
	restart func()
}

var _ actor.SupervisorStrategy = (*BackoffStrategy)(nil)

// NewBackoffStrategy validates cfg (zero fields take DefaultBackoff's values).
// decider may be nil, meaning always restart; a decider returning
// StopDirective, ResumeDirective or EscalateDirective is obeyed immediately.
func NewBackoffStrategy(cfg Backoff, decider actor.DeciderFunc) (*BackoffStrategy, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	if decider == nil {
		decider = actor.DefaultDecider
	}
	return &BackoffStrategy{cfg: cfg, decider: decider, pending: make(map[*pendingRestart]struct{})}, nil
}

// Config returns the effective configuration.
func (s *BackoffStrategy) Config() Backoff { return s.cfg }

// HandleFailure implements actor.SupervisorStrategy.
func (s *BackoffStrategy) HandleFailure(sys *actor.ActorSystem, supervisor actor.Supervisor, child *actor.PID, rs *actor.RestartStatistics, reason, message any) {
	switch d := s.decider(reason); d {
	case actor.RestartDirective:
	case actor.EscalateDirective:
		supervisor.EscalateFailure(reason, message) // the parent's supervisor publishes
		return
	case actor.ResumeDirective:
		sys.EventStream.Publish(&actor.SupervisorEvent{Child: child, Reason: reason, Directive: d})
		supervisor.ResumeChildren(child)
		return
	default:
		sys.EventStream.Publish(&actor.SupervisorEvent{Child: child, Reason: reason, Directive: actor.StopDirective})
		supervisor.StopChildren(child)
		return
	}

	failures := s.recordFailure(rs)
	if s.cfg.MaxRetries >= 0 && failures > s.cfg.MaxRetries {
		rs.Reset()
		sys.EventStream.Publish(&actor.SupervisorEvent{Child: child, Reason: reason, Directive: actor.StopDirective})
		supervisor.StopChildren(child)
		return
	}

	delay := s.cfg.Delay(failures, rand.Float64())
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		// Shutting down: a restart now would race the system's teardown.
		supervisor.StopChildren(child)
		return
	}
	sys.EventStream.Publish(&BackoffEvent{
		Child: child, Reason: reason, Failures: failures, Delay: delay, RestartAt: time.Now().Add(delay),
		MaxRetries: s.cfg.MaxRetries, Window: s.cfg.Window,
	})
	p := &pendingRestart{child: child, restart: func() {
		sys.EventStream.Publish(&actor.SupervisorEvent{Child: child, Reason: reason, Directive: actor.RestartDirective})
		supervisor.RestartChildren(child)
	}}
	s.pending[p] = struct{}{}
	s.running.Add(1)
	p.timer = time.AfterFunc(delay, func() {
		defer s.running.Done()
		s.mu.Lock()
		_, armed := s.pending[p]
		delete(s.pending, p)
		s.mu.Unlock()
		if !armed {
			return // cancelled by Close or taken by RestartNow
		}
		p.restart()
	})
}

// RestartNow issues child's pending restart at once instead of after its
// delay, and reports whether it had one. For news that makes the delay
// pointless: the delay was computed from failures on what the child knew,
// and the parent has just learnt something new for it (a peer with a new
// path from NMS). The failure still counts towards MaxRetries.
func (s *BackoffStrategy) RestartNow(child *actor.PID) bool {
	s.mu.Lock()
	var p *pendingRestart
	for q := range s.pending {
		if q.child.Equal(child) {
			p = q
			break
		}
	}
	if p == nil || !p.timer.Stop() {
		s.mu.Unlock()
		return false // none, or its timer already fired
	}
	delete(s.pending, p)
	s.mu.Unlock()
	defer s.running.Done() // its timer's callback will never run
	p.restart()
	return true
}

// recordFailure adds a failure to the child's statistics (owned by the child,
// touched only while it is suspended) and returns the failures in the window.
func (s *BackoffStrategy) recordFailure(rs *actor.RestartStatistics) int {
	inWindow := rs.NumberOfFailures(s.cfg.Window)
	if inWindow == 0 {
		rs.Reset()
	}
	rs.Fail()
	// RestartStatistics only grows; an actor failing steadily but slowly
	// would keep old timestamps forever. Past a bound, keep just the count in
	// the window (re-stamped now, which can only make giving up come sooner).
	const keep = 64
	if rs.FailureCount() > 2*keep {
		rs.Reset()
		for range min(inWindow+1, keep) {
			rs.Fail()
		}
	}
	return rs.NumberOfFailures(s.cfg.Window)
}

// Pending returns the number of restarts waiting for their delay.
func (s *BackoffStrategy) Pending() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.pending)
}

// Close cancels pending restarts (those children stay suspended until their
// parent stops them) and waits for restart callbacks already running.
// Failures handled after Close stop the child.
func (s *BackoffStrategy) Close() {
	s.mu.Lock()
	s.closed = true
	for p := range s.pending {
		if p.timer.Stop() {
			s.running.Done() // its callback will never run
		}
		delete(s.pending, p)
	}
	s.mu.Unlock()
	s.running.Wait()
}
