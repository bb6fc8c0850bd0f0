package udp

import (
	"errors"
	"fmt"
	"net/netip"
	"syscall"
)

// Bind holds the node's two sockets, one per address family (DESIGN.md §6:
// one socket per family carries signaling and data, so the NAT mapping the
// cloud observes is the data path's). Either may be nil on a host without that
// family.
type Bind struct {
	V4 *Conn
	V6 *Conn
}

// ListenError is a socket ListenBind could not open: which family, the
// address asked for, and why.
type ListenError struct {
	Network string // "udp4" or "udp6"
	Addr    string
	Err     error
}

func (e *ListenError) Error() string {
	return fmt.Sprintf("udp: listen %s %s: %v", e.Network, e.Addr, e.Err)
}

func (e *ListenError) Unwrap() error { return e.Err }

// ListenBind opens an IPv4 socket on addr4 and an IPv6-only socket on addr6
// (host:port; "" skips that family). A host without a family still gets a
// working Bind: a wildcard address whose family the kernel lacks is
// skipped. Any other failure is an error, even when the other family
// opened: a malformed, foreign or taken address is the caller's mistake,
// and a node silently running on one family would hide it.
func ListenBind(addr4, addr6 string) (*Bind, error) {
	var b Bind
	var errs []error
	var skipped []error
	for _, f := range []struct {
		network, addr string
		dst           **Conn
	}{{"udp4", addr4, &b.V4}, {"udp6", addr6, &b.V6}} {
		if f.addr == "" {
			continue
		}
		c, err := Listen(f.network, f.addr)
		if err == nil {
			*f.dst = c
			continue
		}
		le := &ListenError{Network: f.network, Addr: f.addr, Err: errors.Unwrap(err)}
		if le.Err == nil {
			le.Err = err
		}
		if familyMissing(f.addr, err) {
			skipped = append(skipped, le)
			continue
		}
		errs = append(errs, le)
	}
	if len(errs) > 0 {
		b.Close()
		return nil, fmt.Errorf("udp: bind: %w", errors.Join(errs...))
	}
	if b.V4 == nil && b.V6 == nil {
		if len(skipped) == 0 {
			return nil, errors.New("udp: bind: no address given")
		}
		return nil, fmt.Errorf("udp: bind: %w", errors.Join(skipped...))
	}
	return &b, nil
}

// familyMissing reports whether err is the kernel lacking addr's family
// (IPv6 disabled at boot, no IPv6 address at all) for a wildcard address:
// the one failure ListenBind tolerates.
func familyMissing(addr string, err error) bool {
	ap, perr := netip.ParseAddrPort(addr)
	if perr != nil || !ap.Addr().IsUnspecified() {
		return false
	}
	return errors.Is(err, syscall.EAFNOSUPPORT) || errors.Is(err, syscall.EPROTONOSUPPORT) ||
		errors.Is(err, syscall.EADDRNOTAVAIL)
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
