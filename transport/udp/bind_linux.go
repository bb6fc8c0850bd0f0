package udp

import (
	"errors"
	"fmt"
	"net/netip"
)

// Bind holds the node's two sockets, one per address family (DESIGN.md §6:
// one socket per family carries signaling and data, so the NAT mapping the
// cloud observes is the data path's). Either may be nil on a host without that
// family.
type Bind struct {
	V4 *Conn
	V6 *Conn
}

// ListenBind opens an IPv4 socket on addr4 and an IPv6-only socket on addr6
// (host:port; "" skips that family). It fails only if no family could be
// opened, so a host without IPv6 still gets a working Bind.
func ListenBind(addr4, addr6 string) (*Bind, error) {
	var b Bind
	var errs []error
	if addr4 != "" {
		c, err := Listen("udp4", addr4)
		if err != nil {
			errs = append(errs, err)
		}
		b.V4 = c
	}
	if addr6 != "" {
		c, err := Listen("udp6", addr6)
		if err != nil {
			errs = append(errs, err)
		}
		b.V6 = c
	}
	if b.V4 == nil && b.V6 == nil {
		if len(errs) == 0 {
			return nil, errors.New("udp: bind: no address given")
		}
		return nil, fmt.Errorf("udp: bind: %w", errors.Join(errs...))
	}
	return &b, nil
}

// ConnFor picks the socket that reaches ep, or ErrFamily if this Bind has no
// socket of ep's family.
func (b *Bind) ConnFor(ep netip.AddrPort) (*Conn, error) {
	addr := ep.Addr().Unmap()
	switch {
	case addr.Is4() && b.V4 != nil:
		return b.V4, nil
	case addr.Is6() && b.V6 != nil:
		return b.V6, nil
	case !addr.IsValid():
		return nil, ErrInvalidEndpoint
	default:
		return nil, fmt.Errorf("udp: no socket for %s: %w", ep, ErrFamily)
	}
}

// Close closes both sockets.
func (b *Bind) Close() error {
	var errs []error
	for _, c := range []*Conn{b.V4, b.V6} {
		if c != nil {
			errs = append(errs, c.Close())
		}
	}
	return errors.Join(errs...)
}
