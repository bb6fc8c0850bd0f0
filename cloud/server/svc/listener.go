package svc

import (
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"sync"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/cyphonic/cyphonic-go/actors/supervise"
	"github.com/cyphonic/cyphonic-go/messages"
)

// Packet is one datagram handed to an actor. Call Done when finished with
// it: the listener bounds the packets in flight.
type Packet struct {
	Data []byte
	From netip.AddrPort
	Conn *net.UDPConn // the socket it arrived on; answer through it
	l    *Listener
}

// Done releases the packet's slot.
func (p *Packet) Done() {
	if p.l != nil {
		p.l.slots.Release()
		p.l = nil
	}
}

// Listener reads UDP sockets in goroutines of its own and sends each
// packet to an actor. The actor never blocks on a socket; the readers never
// block on the actor: when MaxInflight packets are waiting, new ones are
// dropped and counted.
type Listener struct {
	conns []*net.UDPConn
	slots *supervise.Limiter // packets sent to the actor and not yet Done
	admit Admit
	wg    sync.WaitGroup
	log   *slog.Logger
}

// ListenUDP opens one socket per address ("127.0.0.1:7400", "[::1]:7400").
func ListenUDP(addrs []string) ([]*net.UDPConn, error) {
	var conns []*net.UDPConn
	for _, a := range addrs {
		ap, err := netip.ParseAddrPort(a)
		if err != nil {
			closeAll(conns)
			return nil, err
		}
		network := "udp4"
		if ap.Addr().Is6() && !ap.Addr().Is4In6() {
			network = "udp6"
		}
		c, err := net.ListenUDP(network, net.UDPAddrFromAddrPort(ap))
		if err != nil {
			closeAll(conns)
			return nil, err
		}
		conns = append(conns, c)
	}
	return conns, nil
}

func closeAll(conns []*net.UDPConn) {
	for _, c := range conns {
		c.Close()
	}
}

// Serve starts one reader per socket sending *Packet to pid.
func Serve(root *actor.RootContext, pid *actor.PID, conns []*net.UDPConn, maxInflight int, log *slog.Logger) *Listener {
	return ServeFiltered(root, pid, conns, maxInflight, nil, log)
}

// Admit decides in the reader goroutine, before the packet is copied or
// handed to an actor, whether a packet is worth any more work (a rate
// limit, a size floor). It is called concurrently by the readers of all
// sockets and must not keep data.
type Admit func(conn *net.UDPConn, data []byte, from netip.AddrPort) bool

// ServeFiltered is Serve with admit (nil: everything) in front of the
// actor, so that a flood the service refuses costs a read and a check.
func ServeFiltered(root *actor.RootContext, pid *actor.PID, conns []*net.UDPConn, maxInflight int, admit Admit, log *slog.Logger) *Listener {
	l := &Listener{conns: conns, slots: supervise.NewLimiter(maxInflight), admit: admit, log: log}
	for _, c := range conns {
		l.wg.Add(1)
		go l.read(root, pid, c)
	}
	return l
}

func (l *Listener) read(root *actor.RootContext, pid *actor.PID, c *net.UDPConn) {
	defer l.wg.Done()
	buf := make([]byte, messages.MaxPacket)
	for {
		n, from, err := c.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			l.log.Debug("svc: udp read", "addr", c.LocalAddr().String(), "err", err)
			continue
		}
		if n == 0 {
			continue
		}
		src := netip.AddrPortFrom(from.Addr().Unmap(), from.Port())
		if l.admit != nil && !l.admit(c, buf[:n], src) {
			continue
		}
		if !l.slots.Acquire() {
			continue
		}
		p := &Packet{Data: append([]byte(nil), buf[:n]...), From: src, Conn: c, l: l}
		root.Send(pid, p)
	}
}

// Dropped counts packets dropped because too many were in flight.
func (l *Listener) Dropped() uint64 { return l.slots.Dropped() }

// Close closes the sockets and waits for the readers.
func (l *Listener) Close() {
	closeAll(l.conns)
	l.wg.Wait()
}

// LocalAddrs returns the sockets' bound addresses.
func LocalAddrs(conns []*net.UDPConn) []netip.AddrPort {
	var out []netip.AddrPort
	for _, c := range conns {
		ap := c.LocalAddr().(*net.UDPAddr).AddrPort()
		out = append(out, netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()))
	}
	return out
}
