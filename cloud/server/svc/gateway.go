package svc

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/remote"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/cyphonic/cyphonic-go/actors/supervise"
)

// GatewayID is the gateway actor's ID: other processes' gateways send to
// it, at the gateway's address.
const GatewayID = "gateway"

// ErrGatewayClosed: a frame for another process after the gateway closed.
var ErrGatewayClosed = errors.New("svc: gateway closed")

// Gateway is a process's one protoactor remote. It lives in an actor
// system of its own, next to the services' systems, and carries frames
// between processes: out, as a route header and the frame in a
// google.protobuf.BytesValue (see the package comment) to the other
// process's gateway actor; in, from that actor into the target service's
// system (Router).
//
// One per process because the pinned protoactor-go's remote.Start calls
// grpclog.SetLoggerV2, a plain global write that races with the gRPC
// goroutines of a remote already running in the process: two remotes in one
// process fail under -race. The services' systems therefore run no remote
// at all, and a process whose services are all here (and that shares no
// store with other processes) needs no gateway.
type Gateway struct {
	// Refused counts peers refused on their certificate (none, not the
	// overlay's, not a cloud service's, expired or revoked): at the TLS
	// handshake, on an open stream when it stopped verifying, or for a role
	// proof that does not hold (see Credentials.Also).
	Refused atomic.Uint64
	// frames counts frames refused by reason (Authorize) on connections
	// whose certificate passed.
	frames frameRefusals

	sys    *supervise.System
	remote *remote.Remote
	addr   string
	router *Router
	closed atomic.Bool
}

// StartGateway starts the remote on sys (an actor system for the gateway
// alone) at hostport ("127.0.0.1:0" picks a port), spawns the gateway
// actor and routes r's frames for other processes through it. The gateway
// owns sys from then on (Close shuts it down), and on error too.
//
// The remote's gRPC speaks mutual TLS 1.3 only, with creds: a connection
// whose peer does not prove a cloud-service certificate of the overlay
// fails its handshake before protoactor reads a byte of it, so no frame of
// it reaches the gateway actor; and this gateway sends only to gateways
// proving the same.
func StartGateway(sys *supervise.System, hostport string, r *Router, creds Credentials) (*Gateway, error) {
	g := &Gateway{sys: sys, router: r}
	srvOpts, dialOpts, err := creds.grpcOptions(&g.Refused, &g.frames)
	if err != nil {
		_ = sys.Shutdown(context.Background())
		return nil, err
	}
	rem, addr, err := startRemote(sys.Actors(), hostport, remote.WithServerOptions(srvOpts...), remote.WithDialOptions(dialOpts...))
	if err != nil {
		_ = sys.Shutdown(context.Background())
		return nil, err
	}
	g.remote, g.addr = rem, addr
	// The mailbox stays unbounded: protoactor's BoundedDropping spins after
	// a drop (see supervise.Limiter), and frames arrive here from protoactor's
	// remote, which does the send itself. gRPC's flow control and the
	// gateway's loopback default bound what arrives.
	_, err = sys.Spawn(nil, "gateway", GatewayID, actor.PropsFromProducer(func() actor.Actor { return &gatewayActor{g: g} }))
	if err != nil {
		_ = sys.Shutdown(context.Background())
		rem.Shutdown(false)
		return nil, fmt.Errorf("svc: gateway: %w", err)
	}
	r.setGateway(g)
	return g, nil
}

// FramesRefused counts the frames refused for reason r: taken out of their
// batch before protoactor delivered any of it.
func (g *Gateway) FramesRefused(r Refusal) uint64 {
	if r >= numRefusals {
		return 0
	}
	return g.frames[r].Load()
}

// Addr is the gateway's remote address: this process's address in Refs.
func (g *Gateway) Addr() string { return g.addr }

// System is the gateway's actor system.
func (g *Gateway) System() *supervise.System { return g.sys }

// Close stops sending, stops the gateway's actor system (its endpoint
// writers close the connections to other gateways) and the gRPC server.
func (g *Gateway) Close(ctx context.Context) error {
	if g.closed.Swap(true) {
		return nil
	}
	err := g.sys.Shutdown(ctx)
	// Not graceful: the pinned protoactor's graceful path (endpointManager
	// stop) sends on every reader's disconnect channel while a reader whose
	// stream just ended (a refused peer) closes its own: a data race, and a
	// "send on closed channel" panic. The actor system above is already
	// down (endpoint writers and their connections with it), so stopping
	// the gRPC server is all that is left.
	g.remote.Shutdown(false)
	return err
}

// send hands m to the gateway of to.Process.
func (g *Gateway) send(to Ref, m *Message) error {
	if g.closed.Load() {
		return fmt.Errorf("svc: send to %s: %w", to, ErrGatewayClosed)
	}
	b, err := encodeRoute(to, m)
	if err != nil {
		return err
	}
	g.sys.Root().Send(actor.NewPID(to.Process, GatewayID), wrapperspb.Bytes(b))
	return nil
}

// gatewayActor receives other processes' frames.
type gatewayActor struct{ g *Gateway }

func (a *gatewayActor) Receive(ctx actor.Context) {
	bv, ok := ctx.Message().(*wrapperspb.BytesValue)
	if !ok {
		return
	}
	to, m, err := decodeRoute(bv.GetValue())
	if err != nil {
		a.g.router.dropped.Add(1)
		a.g.router.log.Debug("svc: gateway: malformed frame", "err", err)
		return
	}
	// The reply address of a frame from another process must name that
	// process: a missing one would route the answer here instead.
	if !m.ReplyTo.IsZero() && m.ReplyTo.Process == "" {
		a.g.router.dropped.Add(1)
		return
	}
	a.g.router.fromGateway(to, m)
}

// routeVersion is the first byte of a frame between gateways.
const routeVersion = 1

// encodeRoute lays out a frame between gateways:
//
//	version | to.Service | to.ID | replyTo.Process | replyTo.Service | replyTo.ID | frame
//
// each string preceded by its length in one byte.
func encodeRoute(to Ref, m *Message) ([]byte, error) {
	fields := [...]string{to.Service, to.ID, m.ReplyTo.Process, m.ReplyTo.Service, m.ReplyTo.ID}
	n := 1 + len(m.Frame)
	for _, s := range fields {
		if len(s) > 255 {
			return nil, fmt.Errorf("svc: route to %s: name %.32q… too long: %w", to, s, ErrFrame)
		}
		n += 1 + len(s)
	}
	b := make([]byte, 0, n)
	b = append(b, routeVersion)
	for _, s := range fields {
		b = append(append(b, byte(len(s))), s...)
	}
	return append(b, m.Frame...), nil
}

// decodeRoute reads what encodeRoute wrote. It never panics on any input.
func decodeRoute(b []byte) (Ref, *Message, error) {
	if len(b) < 1 || b[0] != routeVersion {
		return Ref{}, nil, fmt.Errorf("svc: route: bad version: %w", ErrFrame)
	}
	b = b[1:]
	var fields [5]string
	for i := range fields {
		if len(b) < 1 || len(b) < 1+int(b[0]) {
			return Ref{}, nil, fmt.Errorf("svc: route: truncated: %w", ErrFrame)
		}
		n := int(b[0])
		fields[i], b = string(b[1:1+n]), b[1+n:]
	}
	to := Ref{Service: fields[0], ID: fields[1]}
	if to.Service == "" || to.ID == "" {
		return Ref{}, nil, fmt.Errorf("svc: route: no target: %w", ErrFrame)
	}
	m := &Message{Frame: b, ReplyTo: Ref{Process: fields[2], Service: fields[3], ID: fields[4]}}
	return to, m, nil
}
