package resolver

import (
	"context"
	"errors"
	"net/netip"
)

// Answer is what an overlay name resolves to: the peer's virtual addresses.
// Either may be the zero Addr when the peer has no VIP of that family.
type Answer struct {
	VIP6 netip.Addr
	VIP4 netip.Addr
}

// ErrUnknownName is returned (possibly wrapped) by a Backend for an overlay
// name the cloud does not know; the resolver answers NXDOMAIN.
var ErrUnknownName = errors.New("resolver: unknown overlay name")

// Backend resolves an overlay FQDN (lower case, no trailing dot) and returns
// once the tunnel to that peer is up, or with ctx's error when it gives up.
// It is called from DNS goroutines, concurrently.
type Backend interface {
	Resolve(ctx context.Context, fqdn string) (Answer, error)
}

// BackendFunc adapts a function to Backend.
type BackendFunc func(ctx context.Context, fqdn string) (Answer, error)

// Resolve calls f.
func (f BackendFunc) Resolve(ctx context.Context, fqdn string) (Answer, error) { return f(ctx, fqdn) }
