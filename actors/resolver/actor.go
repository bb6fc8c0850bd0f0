package resolver

import (
	"context"
	"errors"
	"time"

	"github.com/asynkron/protoactor-go/actor"
)

// shutdownGrace bounds how long stopping the actor waits for the DNS
// goroutines. Shutdown cancels their lookups first, so they return at once;
// the bound only matters for a stuck socket.
const shutdownGrace = 2 * time.Second

// GetStats asks the resolver actor for its Stats; it replies with a Stats
// value to the sender.
type GetStats struct{}

// Props returns the props of the resolver actor, which owns srv's lifetime:
// it starts srv (if the caller has not already, to see the error early) and
// shuts it down when the actor stops. Queries never pass through the
// mailbox: miekg/dns serves them on goroutines of their own, so the actor
// never blocks on a lookup.
func Props(srv *Server) *actor.Props {
	return actor.PropsFromProducer(func() actor.Actor { return &resolverActor{srv: srv} })
}

type resolverActor struct{ srv *Server }

func (a *resolverActor) Receive(ctx actor.Context) {
	switch ctx.Message().(type) {
	case *actor.Started:
		if err := a.srv.Start(); err != nil && !errors.Is(err, ErrStarted) {
			panic(err) // the supervisor restarts us with backoff
		}
	case *actor.Stopping:
		sctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
		defer cancel()
		if err := a.srv.Shutdown(sctx); err != nil {
			ctx.Logger().Warn("resolver shutdown", "err", err)
		}
	case GetStats, *GetStats:
		ctx.Respond(a.srv.Stats())
	}
}
