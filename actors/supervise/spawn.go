package supervise

import (
	"errors"
	"fmt"
	"strings"

	"github.com/asynkron/protoactor-go/actor"
)

// ErrBadName is returned for an actor name that would break the path-shaped
// IDs the registry builds the tree from.
var ErrBadName = errors.New("supervise: bad actor name")

// ErrNameExists is protoactor's error for a taken ID, re-exported so callers
// need not import actor for errors.Is.
var ErrNameExists = actor.ErrNameExists

// ErrParentEnding is returned for a child of an actor that is stopping or
// restarting. protoactor stops the children an actor has when it begins to
// stop or restart, and then waits for them; it lets the actor spawn more
// meanwhile (it still runs Terminated and user messages), and those are
// never told to stop, so the parent waits for them forever. (The data
// plane's peer manager, stopping, replayed an Open queued behind a closed
// peer on that peer's Terminated: the new peer ran on under a stopping
// manager, and Dataplane.Stop hung.)
var ErrParentEnding = errors.New("supervise: parent is stopping or restarting")

// Spawn starts an actor named name under parent and registers it with the
// given kind ("peer", "sequencer", …). parent is the spawning actor's
// context (so that it supervises the child, whose ID becomes
// "<parent ID>/<name>"), or nil or s.Root() for a top-level actor whose ID is
// name. Top-level actors are supervised by protoactor's default strategy
// unless props carry actor.WithGuardian. mw are put on the actor's
// mailbox: they see every message it takes, even after the actor stopped
// (when protoactor drops it unseen), e.g. to release a queue slot
// (svc.ReleaseOnReceipt).
func (s *System) Spawn(parent actor.SpawnerContext, kind, name string, props *actor.Props, mw ...actor.MailboxMiddleware) (*actor.PID, error) {
	if name == "" || strings.Contains(name, "/") || kind == "" {
		return nil, fmt.Errorf("%w: kind %q name %q (both non-empty, name without '/')", ErrBadName, kind, name)
	}
	if s.isShutdown() {
		return nil, ErrShutdown
	}
	if parent == nil {
		parent = s.actors.Root
	}
	var parentID string
	if _, isRoot := parent.(*actor.RootContext); !isRoot {
		if parent.ActorSystem() != s.actors {
			return nil, fmt.Errorf("supervise: spawn %s/%s: parent belongs to another actor system", kind, name)
		}
		parentID = parent.Self().Id
	}
	id := name
	if parentID != "" {
		id = parentID + "/" + name
	}

	e := &entry{id: id, kind: kind, parent: parentID, pid: s.actors.NewLocalPID(id)}
	if err := s.registry.add(e); err != nil {
		return nil, fmt.Errorf("supervise: spawn %s %s: %w", kind, id, err)
	}
	reg := s.registry
	// Mailboxes are unbounded (see Limiter): Spawn installs the producer
	// so the registry can read each mailbox's depth. They are protoactor's
	// default mailbox without its allocation per wake-up (mailbox.go).
	inner := unbounded(mw...)
	props = props.Clone(
		actor.WithMailbox(func() actor.Mailbox {
			mb := inner()
			reg.setMailbox(e, mb)
			return mb
		}),
		actor.WithReceiverMiddleware(lifecycleMiddleware(reg, e)),
	)
	pid, err := parent.SpawnNamed(props, name)
	if err != nil {
		reg.stopped(e)
		return nil, fmt.Errorf("supervise: spawn %s %s: %w", kind, id, err)
	}
	return pid, nil
}

// Spawn is System.Spawn for code that holds only an actor context: inside
// Receive, supervise.Spawn(ctx, "peer", fqdn, props).
func Spawn(parent actor.SpawnerContext, kind, name string, props *actor.Props, mw ...actor.MailboxMiddleware) (*actor.PID, error) {
	s := FromContext(parent)
	if s == nil {
		return nil, fmt.Errorf("supervise: spawn %s %s: context is not from a supervise.System", kind, name)
	}
	return s.Spawn(parent, kind, name, props, mw...)
}

// lifecycleMiddleware keeps e current. Appended after the props' own
// middleware it is the innermost one, seeing exactly what the actor sees.
// Per message it costs one atomic add and a type switch: no allocation.
func lifecycleMiddleware(reg *Registry, e *entry) actor.ReceiverMiddleware {
	return func(next actor.ReceiverFunc) actor.ReceiverFunc {
		return func(ctx actor.ReceiverContext, env *actor.MessageEnvelope) {
			e.processed.Add(1)
			switch env.Message.(type) {
			case *actor.Started:
				e.ending.Store(false)
				reg.started(e)
			case *actor.Restarting:
				e.ending.Store(true)
				reg.setState(e, StateRestarting)
			case *actor.Stopping:
				e.ending.Store(true)
				reg.setState(e, StateStopping)
			case *actor.Stopped:
				// protoactor has removed the PID already; let the actor see
				// Stopped first, then drop it from the tree even if it panics.
				defer reg.stopped(e)
			}
			next(ctx, env)
		}
	}
}

// WithBackoff makes an actor supervise its children with st, as
// actor.WithSupervisor(st) does, and records st's policy on every child it
// spawns through Spawn, when it is spawned: the tree shows how a child's
// failures will be handled before the first one. Use it rather than
// actor.WithSupervisor, which the registry cannot see (protoactor keeps a
// props' strategy private).
func WithBackoff(st *BackoffStrategy) actor.PropsOption {
	sup := actor.WithSupervisor(st)
	record := actor.WithSpawnMiddleware(func(next actor.SpawnFunc) actor.SpawnFunc {
		return func(as *actor.ActorSystem, id string, props *actor.Props, parent actor.SpawnerContext) (*actor.PID, error) {
			if s, _ := as.Extensions.Get(extensionID).(*System); s != nil {
				s.registry.supervisedBy(id, st.Config())
			}
			return next(as, id, props, parent)
		}
	})
	return func(p *actor.Props) {
		sup(p)
		record(p)
	}
}
