package svc

import (
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"

	"github.com/asynkron/protoactor-go/actor"
)

// Service names. Each service runs in an actor system of its own named
// after it, and a Ref's Service picks that system.
const (
	AS  = "as"
	NMS = "nms"
	TRS = "trs"
)

// LocalProcess is the process address of a Router without a gateway: its
// services can be reached from this process only.
const LocalProcess = "local"

// Errors from Link and Router.
var (
	// ErrNoRoute: the target service does not run in this process and the
	// process has no gateway (or the target names no process).
	ErrNoRoute = errors.New("svc: no route to service")
	// ErrRef: a Ref without a service or an actor ID.
	ErrRef = errors.New("svc: incomplete service actor reference")
)

// Ref names a service actor anywhere in the cloud. Unlike a protoactor PID
// it says which actor system (Service) the actor lives in, which a PID
// cannot tell apart when several systems share a process.
type Ref struct {
	// Process is the gateway address ("host:port") of the process that runs
	// the actor; "" or LocalProcess is this process.
	Process string
	Service string // AS, NMS or TRS
	ID      string // the actor's ID in that service's system: "nms", "as/tx-…"
}

// IsZero reports whether r names nothing (no reply wanted, no relay).
func (r Ref) IsZero() bool { return r == Ref{} }

func (r Ref) String() string {
	p := r.Process
	if p == "" {
		p = LocalProcess
	}
	return p + "/" + r.Service + "/" + r.ID
}

// RootOf is the Ref of a service's root actor (whose ID is the service's
// name) in the process at addr.
func RootOf(addr, service string) Ref { return Ref{Process: addr, Service: service, ID: service} }

// Message is a service frame as an actor receives it: DecodeFrame reads it.
type Message struct {
	Frame   []byte // the encoded Frame
	ReplyTo Ref    // the asking actor; zero when no answer is wanted
}

// RouterStats count the frames a Router handled.
type RouterStats struct {
	Local    uint64 // delivered straight into a service system of this process
	Outbound uint64 // handed to the gateway for another process
	Inbound  uint64 // arrived through the gateway from another process
	Dropped  uint64 // no route, a malformed inbound frame, or an unknown service
}

// Router delivers frames between the cloud services. A service running in
// this process gets its frames straight from its own actor system's root
// context: no serialisation beyond the frame bytes, no gRPC. Frames for a
// service in another process leave through the gateway, the process's only
// protoactor remote (see Gateway for why only one).
//
// It is safe for concurrent use: actors of every system send through it.
type Router struct {
	log *slog.Logger

	mu      sync.RWMutex
	systems map[string]*actor.ActorSystem // services running here
	gw      *Gateway                      // nil: this process is reachable from nowhere else

	local, outbound, inbound, dropped atomic.Uint64
}

// NewRouter returns a router with no services attached. nil logger:
// slog.Default().
func NewRouter(log *slog.Logger) *Router {
	if log == nil {
		log = slog.Default()
	}
	return &Router{log: log, systems: map[string]*actor.ActorSystem{}}
}

// Attach routes frames for service to sys.
func (r *Router) Attach(service string, sys *actor.ActorSystem) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.systems[service] = sys
}

// Detach stops routing to service: frames for it are dropped from now on,
// so none reach an actor system being shut down.
func (r *Router) Detach(service string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.systems, service)
}

// Services returns the services attached (in no particular order).
func (r *Router) Services() []string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	out := make([]string, 0, len(r.systems))
	for s := range r.systems {
		out = append(out, s)
	}
	return out
}

func (r *Router) setGateway(g *Gateway) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.gw = g
}

// Addr is this process's address in Refs: its gateway's remote address, or
// LocalProcess without a gateway.
func (r *Router) Addr() string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if r.gw == nil {
		return LocalProcess
	}
	return r.gw.addr
}

// Stats returns the counters.
func (r *Router) Stats() RouterStats {
	return RouterStats{Local: r.local.Load(), Outbound: r.outbound.Load(), Inbound: r.inbound.Load(), Dropped: r.dropped.Load()}
}

// Link returns the handle service's actors send with.
func (r *Router) Link(service string) *Link { return &Link{r: r, service: service} }

// route sends m to `to`: into the local system, or out through the gateway.
func (r *Router) route(to Ref, m *Message) error {
	if to.Service == "" || to.ID == "" {
		r.dropped.Add(1)
		return fmt.Errorf("svc: send to %s: %w", to, ErrRef)
	}
	r.mu.RLock()
	gw := r.gw
	// Without a gateway every process address is ours: there is nowhere
	// else to go (a record may still name the address of an earlier run).
	here := gw == nil || to.Process == "" || to.Process == LocalProcess || to.Process == gw.addr
	sys := r.systems[to.Service]
	r.mu.RUnlock()
	if here {
		return r.deliver(sys, to, m)
	}
	r.outbound.Add(1) // before the send, as in deliver
	if err := gw.send(to, m); err != nil {
		r.outbound.Add(^uint64(0))
		r.dropped.Add(1)
		return err
	}
	return nil
}

// deliver hands m to the actor to.ID of a local service system.
func (r *Router) deliver(sys *actor.ActorSystem, to Ref, m *Message) error {
	if sys == nil {
		r.dropped.Add(1)
		return fmt.Errorf("svc: send to %s: %w", to, ErrNoRoute)
	}
	// The PID is made in the target system so that it resolves in that
	// system's registry; PIDs of different systems in one process all have
	// the address "nonhost" and must never cross.
	// Counted before the send: an answer to m can be seen (and the stats
	// read) before Send returns.
	r.local.Add(1)
	sys.Root.Send(sys.NewLocalPID(to.ID), m)
	return nil
}

// fromGateway delivers a frame that arrived from another process.
func (r *Router) fromGateway(to Ref, m *Message) {
	r.mu.RLock()
	sys := r.systems[to.Service]
	r.mu.RUnlock()
	r.inbound.Add(1)
	if err := r.deliver(sys, to, m); err != nil {
		r.log.Debug("svc: inbound frame dropped", "to", to.String(), "err", err)
	}
}

// Link is how the actors of one service send frames to the actors of any
// service, in this process or another. Replies find their way back to the
// asking actor in the asking process through the Ref the Link stamps on
// each request, so transaction state never leaves the process that holds it.
type Link struct {
	r       *Router
	service string
}

// Service is the name of the service the link sends for.
func (l *Link) Service() string { return l.service }

// Addr is the process address of the link's service (Router.Addr).
func (l *Link) Addr() string { return l.r.Addr() }

// Send delivers frame to `to`; no answer is expected.
func (l *Link) Send(to Ref, frame []byte) error {
	return l.r.route(to, &Message{Frame: frame})
}

// Request delivers frame to `to`; the answer goes to the actor `from` (the
// sender's ctx.Self(), an actor of this link's service).
func (l *Link) Request(from *actor.PID, to Ref, frame []byte) error {
	replyTo := Ref{Process: l.r.Addr(), Service: l.service, ID: from.GetId()}
	return l.r.route(to, &Message{Frame: frame, ReplyTo: replyTo})
}

// Reply answers a received frame: it sends frame to f.ReplyTo. A frame that
// wants no answer gets none (nil error).
func (l *Link) Reply(f Frame, frame []byte) error {
	if f.ReplyTo.IsZero() {
		return nil
	}
	return l.Send(f.ReplyTo, frame)
}
