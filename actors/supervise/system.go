package supervise

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/eventstream"
	"github.com/asynkron/protoactor-go/extensions"
)

// extensionID lets code holding only an actor context find its System
// (FromContext). Assigned once at init, never changed.
var extensionID = extensions.NextExtensionID()

// System is a protoactor ActorSystem plus the registry of the actors spawned
// through it.
type System struct {
	name     string
	actors   *actor.ActorSystem
	registry *Registry
	logger   *slog.Logger
	sub      *eventstream.Subscription

	mu         sync.Mutex
	strategies []*BackoffStrategy
	shutdown   bool
}

// New starts an actor system. logger receives protoactor's own logs too; nil
// means slog.Default().
func New(name string, logger *slog.Logger) *System {
	if logger == nil {
		logger = slog.Default()
	}
	logger = logger.With("actor_system", name)
	s := &System{name: name, registry: newRegistry(), logger: logger}
	s.actors = actor.NewActorSystem(
		actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger {
			return slog.New(dropRecovering{logger.Handler()}).With("lib", "protoactor")
		}),
		// Dead letters are normal while actors stop; log them at most once a second.
		actor.WithDeadLetterThrottleCount(1),
		actor.WithDeadLetterThrottleInterval(time.Second),
	)
	s.actors.Extensions.Register(s)
	s.sub = s.actors.EventStream.Subscribe(s.onEvent)
	return s
}

// ExtensionID implements extensions.Extension.
func (s *System) ExtensionID() extensions.ExtensionID { return extensionID }

// FromContext returns the System that ctx's actor lives in, or nil if that
// actor system was not made by New.
func FromContext(ctx actor.SpawnerContext) *System {
	if ctx == nil || ctx.ActorSystem() == nil {
		return nil
	}
	s, _ := ctx.ActorSystem().Extensions.Get(extensionID).(*System)
	return s
}

// Name returns the name given to New.
func (s *System) Name() string { return s.name }

// Actors returns the underlying protoactor system.
func (s *System) Actors() *actor.ActorSystem { return s.actors }

// Root returns the root context, for sending to actors from outside.
func (s *System) Root() *actor.RootContext { return s.actors.Root }

// Registry returns the live actor registry.
func (s *System) Registry() *Registry { return s.registry }

// Logger returns the system's logger.
func (s *System) Logger() *slog.Logger { return s.logger }

// NewBackoffStrategy makes a BackoffStrategy that Shutdown closes.
func (s *System) NewBackoffStrategy(cfg Backoff, decider actor.DeciderFunc) (*BackoffStrategy, error) {
	st, err := NewBackoffStrategy(cfg, decider)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.strategies = append(s.strategies, st)
	return st, nil
}

// onEvent feeds supervision decisions into the registry. It runs on the
// publisher's goroutine (a parent's mailbox or a backoff timer).
func (s *System) onEvent(evt any) {
	switch e := evt.(type) {
	case *actor.SupervisorEvent:
		if e.Child != nil {
			s.registry.failed(e.Child.Id, e.Reason, e.Directive, nil)
			s.logSupervision(e.Child.Id, e.Reason, e.Directive, nil)
		}
	case *BackoffEvent:
		if e.Child != nil {
			s.registry.failed(e.Child.Id, e.Reason, actor.RestartDirective, e)
			s.logSupervision(e.Child.Id, e.Reason, actor.RestartDirective, e)
		}
	}
}

// logSupervision is our own line for a supervision event, at WARN: which
// actor (and peer), why, which attempt, and when the next try is. It
// replaces protoactor's "[ACTOR] Recovering" (dropRecovering), which named
// neither the peer nor the next try.
func (s *System) logSupervision(id string, reason any, d actor.Directive, b *BackoffEvent) {
	attrs := []any{"actor", id, "reason", failureText(reason)}
	kind, restarts, ok := s.registry.describe(id)
	if ok {
		attrs = append(attrs, "kind", kind)
		if kind == "peer" {
			attrs = append(attrs, "peer", id[strings.LastIndexByte(id, '/')+1:])
		}
	}
	switch {
	case b != nil:
		attrs = append(attrs, "attempt", b.Failures, "next_try_in", b.Delay.Round(time.Millisecond), "next_try_at", b.RestartAt.UTC())
		s.logger.Warn("actor failed: restarting after backoff", attrs...)
	case d == actor.RestartDirective:
		s.logger.Warn("actor restarting", append(attrs, "restarts", restarts)...)
	case d == actor.StopDirective:
		s.logger.Warn("actor failed: stopped for good (too many failures, or its supervisor says stop)", attrs...)
	case d == actor.ResumeDirective:
		s.logger.Warn("actor failed: resumed", attrs...)
	default:
		s.logger.Warn("actor failed", append(attrs, "directive", d.String())...)
	}
}

// dropRecovering filters protoactor's "[ACTOR] Recovering" record
// (logSupervision says more, at the right level).
type dropRecovering struct{ slog.Handler }

func (h dropRecovering) Handle(ctx context.Context, r slog.Record) error {
	if r.Message == "[ACTOR] Recovering" {
		return nil
	}
	return h.Handler.Handle(ctx, r)
}

func (h dropRecovering) WithAttrs(as []slog.Attr) slog.Handler {
	return dropRecovering{h.Handler.WithAttrs(as)}
}

func (h dropRecovering) WithGroup(name string) slog.Handler {
	return dropRecovering{h.Handler.WithGroup(name)}
}

// ErrShutdown is returned by Spawn after Shutdown has begun.
var ErrShutdown = errors.New("supervise: actor system shut down")

// Shutdown stops every actor spawned through the system (top-level actors
// first; protoactor stops children before their parent finishes stopping),
// waits for them to be gone or for ctx to end, cancels pending backoff
// restarts and shuts the protoactor system down.
func (s *System) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	if s.shutdown {
		s.mu.Unlock()
		return nil
	}
	s.shutdown = true
	strategies := s.strategies
	s.mu.Unlock()

	// Pending restarts first, so nothing comes back to life while we stop.
	for _, st := range strategies {
		st.Close()
	}
	for _, pid := range s.registry.roots() {
		s.actors.Root.Stop(pid)
	}
	err := s.registry.WaitEmpty(ctx)
	s.actors.EventStream.Unsubscribe(s.sub)
	s.actors.Shutdown()
	if err != nil {
		return fmt.Errorf("supervise: shutdown %s: %d actors still alive: %w", s.name, s.registry.Len(), err)
	}
	return nil
}

func (s *System) isShutdown() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.shutdown
}
