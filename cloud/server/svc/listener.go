package svc

import (
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"sync"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/eventstream"

	"github.com/cyphonic/cyphonic-go/actors/supervise"
	"github.com/cyphonic/cyphonic-go/messages"
	"github.com/cyphonic/cyphonic-go/transport/udp"
)

// Packet is one datagram handed to an actor. Call Done when finished with
// it: the listener bounds the packets in flight.
type Packet struct {
	Data []byte
	From netip.AddrPort
	Conn *net.UDPConn // the socket it arrived on; answer through it
	// Recv is when the kernel received it (Unix ns, SO_TIMESTAMPNS; see
	// ListenUDP), so a service's latency counts the time it waited in the
	// socket's queue; 0 when the socket gives no stamp.
	Recv  int64
	slots *supervise.Limiter
}

// Done releases the packet's slot.
func (p *Packet) Done() {
	if p.slots != nil {
		p.slots.Release()
		p.slots = nil
	}
}

// ReleaseOnReceipt is a mailbox middleware (supervise.Spawn's mw) that
// releases a Packet's slot once the mailbox has handed it on: to the
// actor, or to nobody when the actor has stopped, which protoactor does
// without telling anyone (a stopping actor's queued messages are dropped
// unseen). Without it those packets' slots were never given back and a
// worker restarted often enough dropped every packet for good. The actor
// may still call Done (it is idempotent); a packet it keeps past its
// Receive (waiting for a store lookup, say) no longer holds a slot, so
// that wait must be bounded elsewhere (the store queue).
type ReleaseOnReceipt struct{}

func (ReleaseOnReceipt) MailboxStarted()   {}
func (ReleaseOnReceipt) MessagePosted(any) {}
func (ReleaseOnReceipt) MailboxEmpty()     {}
func (ReleaseOnReceipt) MessageReceived(m any) {
	if p, ok := m.(*Packet); ok {
		p.Done()
	}
}

// Listener reads UDP sockets in goroutines of its own and sends each
// packet to an actor (or, sharded, to one of several). The actors never
// block on a socket; the readers never block on an actor: when an actor's
// MaxInflight packets are waiting, new ones for it are dropped and counted.
type Listener struct {
	conns   []*net.UDPConn
	targets []*actor.PID
	slots   []*supervise.Limiter // per target: packets sent and not yet Done
	route   Route
	admit   Admit
	wg      sync.WaitGroup
	log     *slog.Logger
	sys     *actor.ActorSystem
	dead    *eventstream.Subscription // releases our packets in dead letters
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
		// Packet.Recv: without the kernel's stamp, the time a request
		// waits in the socket's queue (the wait that grows under load)
		// would be invisible to the service's latency.
		if err := udp.StampReceives(c); err != nil {
			closeAll(conns)
			return nil, err
		}
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
	return ServeSharded(root, []*actor.PID{pid}, []*supervise.Limiter{supervise.NewLimiter(maxInflight)}, nil, conns, admit, log)
}

// Route picks, in the reader goroutine, which of n actors a packet goes
// to (an index in [0, n)). It is called concurrently by the readers of
// all sockets, must be cheap (a header peek, no crypto) and must not keep
// data. Packets it sends to the same actor keep their order per socket.
type Route func(data []byte, from netip.AddrPort, n int) int

// ServeSharded starts one reader per socket that hands each admitted
// packet to targets[route(...)], bounded by that target's slots (a
// Limiter per target, which several listeners may share so that a target's
// queue bound covers every socket feeding it). A full target drops the
// packet and counts it in its Limiter; the other targets are not held up.
// A nil route sends everything to targets[0].
func ServeSharded(root *actor.RootContext, targets []*actor.PID, slots []*supervise.Limiter, route Route, conns []*net.UDPConn, admit Admit, log *slog.Logger) *Listener {
	if len(targets) == 0 || len(targets) != len(slots) {
		panic("svc: ServeSharded needs one Limiter per target") // a programming error, not input
	}
	l := &Listener{conns: conns, targets: targets, slots: slots, route: route, admit: admit, log: log, sys: root.ActorSystem()}
	// A packet sent to a target that is not running (stopped, or between
	// a stop and its restart under the same name) goes to dead letters:
	// give its slot back there, or the target's queue bound shrinks for
	// good. Only this listener's packets: others release their own.
	l.dead = l.sys.EventStream.SubscribeWithPredicate(func(evt any) {
		evt.(*actor.DeadLetterEvent).Message.(*Packet).Done()
	}, func(evt any) bool {
		d, ok := evt.(*actor.DeadLetterEvent)
		if !ok {
			return false
		}
		p, ok := d.Message.(*Packet)
		return ok && l.owns(p)
	})
	for _, c := range conns {
		l.wg.Add(1)
		go l.read(root, c)
	}
	return l
}

func (l *Listener) read(root *actor.RootContext, c *net.UDPConn) {
	defer l.wg.Done()
	buf := make([]byte, messages.MaxPacket)
	oob := make([]byte, udp.StampCtrlLen)
	for {
		n, oobn, _, from, err := c.ReadMsgUDPAddrPort(buf, oob)
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
		i := 0
		if l.route != nil && len(l.targets) > 1 {
			i = l.route(buf[:n], src, len(l.targets))
		}
		slots := l.slots[i]
		if !slots.Acquire() {
			continue
		}
		p := &Packet{Data: append([]byte(nil), buf[:n]...), From: src, Conn: c, Recv: udp.ReceiveStamp(oob[:oobn]), slots: slots}
		root.Send(l.targets[i], p)
	}
}

// Dropped counts packets dropped because too many were in flight (over
// all targets).
func (l *Listener) Dropped() uint64 {
	var n uint64
	for _, s := range l.slots {
		n += s.Dropped()
	}
	return n
}

// owns reports whether p took its slot from one of l's limiters.
func (l *Listener) owns(p *Packet) bool {
	for _, s := range l.slots {
		if p.slots == s {
			return true
		}
	}
	return false
}

// Close closes the sockets and waits for the readers.
func (l *Listener) Close() {
	closeAll(l.conns)
	l.wg.Wait()
	l.sys.EventStream.Unsubscribe(l.dead)
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
