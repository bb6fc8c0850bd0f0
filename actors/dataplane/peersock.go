package dataplane

import (
	"errors"
	"net/netip"
	"sync"
	"sync/atomic"

	"github.com/cyphonic/cyphonic-go/transport/udp"
)

// Per-peer receive sockets (Config.PeerSockets).
//
// Why: every peer's datagrams otherwise share the Bind's sockets (and
// their Readers siblings), each a FIFO that only the kernel bounds. Under
// bulk load from several peers an idle peer's lone ping waits there behind
// every bulk datagram that hashed to its socket: ~1.5-2 ms of its round
// trip at 10 pushers on the 2-core machine, and more once the TUN side
// drains faster (BENCHMARKS.md, s10-sock). A socket connected to the
// peer's endpoint, in the Bind socket's SO_REUSEPORT group, gets that
// peer's datagrams in a FIFO of its own (udp.PeerConn), read by a reader
// of its own, so a sparse peer's packet waits behind nobody's.
//
// What stays on the shared sockets: handshakes and data from an endpoint
// we have no socket for (a new peer, a roam or NAT rebinding before the
// peer actor moves the route, which it does on the first authenticated
// packet from the new endpoint, as today), relayed peers (TRS is one
// endpoint for many), and every peer past the cap.
//
// Ordering: all of a peer's datagrams from one endpoint land on one socket,
// read by one reader, so they keep their order, as with the siblings.
// Only at a switch (the socket opens, or closes on a roam) can the
// datagrams still queued in the old FIFO be handed on after the first of
// the new one: a one-time reorder of at most that FIFO's depth, which the
// replay window accepts. The socket opens when the route is first set
// (at the handshake, before the bulk), so in practice the old FIFO holds
// little of the peer's. Datagrams queued in a peer socket when it closes
// (roam, removal, Stop) are dropped with it.
//
// Memory: a peer socket reads without UDP_GRO (a GRO socket keeps half a
// MiB of run buffers) and its reader waits for a datagram without holding
// a batch (udp.PeerConn.WaitReadable), so an idle peer costs a socket,
// a goroutine's stack and the kernel's receive buffer.
type peerSockets struct {
	mu     sync.Mutex
	closed bool
	byPeer map[*peerHandle]*peerSock
	byEp   map[netip.AddrPort]*peerSock
	// full counts routes left on the shared sockets for the cap.
	full atomic.Uint64
	// readers counts the peer sockets' reader goroutines running.
	readers atomic.Int64
}

// Only sparse peers get a socket. A bulk peer's reads are cheaper on the
// shared sockets: there, with UDP_GRO, one read takes a run of up to 64
// datagrams, and two busy readers batch many peers; on sockets of their own
// (no GRO) ten bulk peers' readers each woke per small batch, and at 10
// pushers the sum halved with twice the CPU per GB (BENCHMARKS.md,
// s10-sock). The peer actor judges it every tick from the packets it
// received, with hysteresis: sparse below sparseEnter packets a tick,
// bulk again above sparseLeave. An idle peer's pings and keepalives are a
// few a tick; a pusher's thousands.
const (
	sparseEnter = 16 // packets a tick (250 ms): 64 a second
	sparseLeave = 64 // 256 a second
)

// peerSockState is a peer actor's view of its traffic for peer sockets.
type peerSockState struct {
	sparse bool
	rx     uint64 // RxPackets at the last tick
}

// sparseNext is whether a peer that was (or was not) sparse is sparse
// after receiving rx packets in a tick.
func sparseNext(was bool, rx uint64) bool {
	if was {
		return rx <= sparseLeave
	}
	return rx <= sparseEnter
}

// tickSocket re-judges the peer's traffic and, if that changed, gives it
// a socket or takes it away.
func (p *peerActor) tickSocket() {
	if p.d.cfg.PeerSockets <= 0 {
		return
	}
	rx := p.h.Stats.RxPackets.Load()
	sparse := sparseNext(p.psock.sparse, rx-p.psock.rx)
	p.psock.rx = rx
	if sparse != p.psock.sparse {
		p.psock.sparse = sparse
		p.d.followRoute(p.h, p.h.route.Load(), sparse)
	}
}

// peerSock is one peer's socket and its reader's state.
type peerSock struct {
	c    *udp.PeerConn
	h    *peerHandle
	read atomic.Uint64 // datagrams its reader read (one add per batch)
}

// sockStep is what follow does for a peer's new route.
type sockStep uint8

const (
	sockKeep  sockStep = iota // nothing to change
	sockOpen                  // open a socket for the route
	sockClose                 // close the peer's socket; open none
	sockMove                  // close the peer's socket, open one for the route
	sockFull                  // close any; no socket: the cap, or the endpoint is another peer's
)

// planSock is the pure decision behind follow: cur is the endpoint the
// peer's socket is connected to (invalid: none), want the endpoint its
// route receives from directly (invalid: relayed, none, or one we cannot
// reach), open how many peer sockets are open, max the cap, taken whether
// another peer's socket is connected to want.
func planSock(cur, want netip.AddrPort, open, max int, taken bool) sockStep {
	switch {
	case cur == want && cur.IsValid():
		return sockKeep
	case !want.IsValid():
		if cur.IsValid() {
			return sockClose
		}
		return sockKeep
	case taken:
		return sockFull
	case cur.IsValid():
		return sockMove // the peer's own socket is given back first: no cap check
	case open >= max:
		return sockFull
	default:
		return sockOpen
	}
}

// directEndpoint is the endpoint a route receives from directly, or the
// invalid AddrPort when it has none of its own.
func directEndpoint(r *peerRoute) netip.AddrPort {
	if r == nil || r.Relay || !r.Addr.IsValid() || r.Addr.Addr().IsUnspecified() || r.Addr.Port() == 0 {
		return netip.AddrPort{}
	}
	return netip.AddrPortFrom(r.Addr.Addr().Unmap(), r.Addr.Port())
}

// followRoute gives h's route a socket of its own while the peer is
// sparse, or takes it away, as planSock says. It runs in the peer actor when the route changes: a few
// non-blocking syscalls when a socket opens or closes, a map look-up
// otherwise.
func (d *Dataplane) followRoute(h *peerHandle, r *peerRoute, sparse bool) {
	if d.cfg.PeerSockets <= 0 {
		return
	}
	ps := &d.psocks
	var want netip.AddrPort
	if sparse {
		want = directEndpoint(r)
	}
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if ps.closed {
		return
	}
	var cur netip.AddrPort
	old := ps.byPeer[h]
	if old != nil {
		cur = old.c.Remote()
	}
	other := ps.byEp[want]
	step := planSock(cur, want, len(ps.byPeer), d.cfg.PeerSockets, other != nil && other.h != h)
	switch step {
	case sockKeep:
		return
	case sockClose, sockMove, sockFull:
		if old != nil {
			ps.removeLocked(old)
		}
	}
	if step == sockFull {
		ps.full.Add(1)
		return
	}
	if step == sockClose {
		return
	}
	conn, err := d.cfg.Bind.ConnFor(want)
	if err != nil {
		return
	}
	c, err := conn.Connected(want)
	if err != nil {
		d.log.Warn("peer socket", "peer", h.FQDN, "endpoint", want, "err", err)
		return
	}
	s := &peerSock{c: c, h: h}
	if ps.byPeer == nil {
		ps.byPeer = make(map[*peerHandle]*peerSock)
		ps.byEp = make(map[netip.AddrPort]*peerSock)
	}
	ps.byPeer[h], ps.byEp[want] = s, s
	// Stop waits for d.wg after closeAll, which takes ps.mu: this Add
	// happens before that wait starts.
	d.wg.Add(1)
	ps.readers.Add(1)
	go func() {
		defer d.wg.Done()
		defer ps.readers.Add(-1)
		d.routineReadPeer(s)
	}()
}

// dropPeerSocket closes h's socket, if it has one (the peer is going).
func (d *Dataplane) dropPeerSocket(h *peerHandle) {
	if d.cfg.PeerSockets <= 0 {
		return
	}
	ps := &d.psocks
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if s := ps.byPeer[h]; s != nil {
		ps.removeLocked(s)
	}
}

func (ps *peerSockets) removeLocked(s *peerSock) {
	delete(ps.byPeer, s.h)
	if ps.byEp[s.c.Remote()] == s {
		delete(ps.byEp, s.c.Remote())
	}
	_ = s.c.Close() // its reader returns
}

// closeAll closes every peer socket, for good (Stop).
func (ps *peerSockets) closeAll() {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	ps.closed = true
	for _, s := range ps.byPeer {
		ps.removeLocked(s)
	}
}

// PeerSockets reports how many peers have a receive socket of their own
// (Config.PeerSockets), how many of those sockets' readers are running, and
// how many route changes the cap (or an endpoint already taken) left on the
// shared sockets (tests, debugging).
func (d *Dataplane) PeerSockets() (open, readers int, full uint64) {
	ps := &d.psocks
	ps.mu.Lock()
	open = len(ps.byPeer)
	ps.mu.Unlock()
	return open, int(ps.readers.Load()), ps.full.Load()
}

// PeerSocketRead reports how many datagrams fqdn's own receive socket has
// read, and whether it has one (tests, debugging).
func (d *Dataplane) PeerSocketRead(fqdn string) (uint64, bool) {
	ps := &d.psocks
	ps.mu.Lock()
	defer ps.mu.Unlock()
	for h, s := range ps.byPeer {
		if h.FQDN == fqdn {
			return s.read.Load(), true
		}
	}
	return 0, false
}

// routineReadPeer is a peer socket's reader: routineReadUDP's loop, but
// it waits for a datagram (udp.PeerConn.WaitReadable, a blocking poll that
// holds its thread) before it takes a batch from the pool, so an idle or
// paused peer's reader pins no buffers (one poll per batch: nothing beside
// a bulk peer's per-packet work).
func (d *Dataplane) routineReadPeer(s *peerSock) {
	var groups inGroups
	var stamps [maxBatch]int64
	var y yielder
	for {
		ok, err := s.c.WaitReadable()
		if err != nil {
			if !errors.Is(err, udp.ErrClosed) {
				d.log.Warn("peer socket wait", "peer", s.h.FQDN, "err", err)
			}
			return
		}
		if !ok {
			continue
		}
		b := d.pool.Get()
		bufs, sizes, eps := b.ReadSlices(0)
		n, err := s.c.ReadBatchTimes(bufs, sizes, eps, stamps[:])
		if err != nil {
			b.Release()
			if errors.Is(err, udp.ErrClosed) || d.stopped() {
				return
			}
			// An ICMP error the connected socket reports once (the read
			// cleared it), not a broken socket.
			continue
		}
		s.read.Add(uint64(n))
		d.handRead(b, n, &stamps, &groups)
		y.after()
	}
}
