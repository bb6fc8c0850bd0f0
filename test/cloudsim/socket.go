package cloudsim

import (
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/cyphonic/cyphonic-go/messages"
	"github.com/cyphonic/cyphonic-go/transport/signaling"
)

// socket is a node's UDP socket and its one reader goroutine. A private
// socket (NewNode) belongs to one node and hands it every packet, as a
// node's own socket does. A shared one (NewSharedSocket) carries several
// nodes, so that a load of 100k nodes fits the open-files limit; to the
// cloud they look like nodes behind one CGN mapping (one address:port),
// and its reader gives each packet to the node it is for:
//
//   - sealed signaling by the session ID in its clear header (a node
//     claims its session's ID once its login's challenge names it);
//   - the login's challenge and cookie, which name no session, to the one
//     node whose login holds the socket: Login takes a shared socket's
//     login slot for its whole exchange, so replies before a session exists
//     have one possible owner (a stale copy of another node's reply does
//     not authenticate and is ignored, as on any socket);
//   - probe replies by the probe ID the node chose.
//
// Anything else (relay frames, packets for no member) is counted in
// unclaimed and dropped: shared sockets are for signaling load, not for
// relay tests.
type socket struct {
	conn   *net.UDPConn
	shared bool
	slot   chan struct{} // a shared socket's login slot (capacity 1)
	reader sync.WaitGroup

	mu       sync.Mutex
	only     *Node // a private socket's node
	members  int
	sessions map[uint32]*Node
	probes   map[uint64]*Node
	holder   *Node // the node whose login holds the slot
	closed   bool

	unclaimed atomic.Int64
}

func listen(bind netip.Addr) (*net.UDPConn, error) {
	return net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(bind, 0)))
}

// privateSocket opens n's own socket on bind and starts its reader.
func privateSocket(n *Node, bind netip.Addr) (*socket, error) {
	c, err := listen(bind)
	if err != nil {
		return nil, err
	}
	s := &socket{conn: c, only: n, members: 1}
	s.start()
	return s, nil
}

// SharedSocket is a UDP socket several simulated nodes share
// (NewNodeSharing).
type SharedSocket struct{ s *socket }

// NewSharedSocket opens a socket on bind for nodes to share. It closes
// when its last node does (or at once if none ever joins: Close).
func NewSharedSocket(bind netip.Addr) (*SharedSocket, error) {
	c, err := listen(bind)
	if err != nil {
		return nil, err
	}
	s := &socket{conn: c, shared: true, slot: make(chan struct{}, 1),
		sessions: map[uint32]*Node{}, probes: map[uint64]*Node{}}
	s.start()
	return &SharedSocket{s: s}, nil
}

// Unclaimed is how many packets arrived for none of the socket's nodes.
func (ss *SharedSocket) Unclaimed() int64 { return ss.s.unclaimed.Load() }

// Close closes the socket if no node uses it.
func (ss *SharedSocket) Close() {
	ss.s.mu.Lock()
	idle := ss.s.members == 0 && !ss.s.closed
	ss.s.closed = ss.s.closed || idle
	ss.s.mu.Unlock()
	if idle {
		ss.s.conn.Close()
		ss.s.reader.Wait()
	}
}

func (s *socket) start() {
	s.reader.Add(1)
	go s.read()
}

func (s *socket) addr() netip.AddrPort { return s.conn.LocalAddr().(*net.UDPAddr).AddrPort() }

// join makes n a member of shared socket s.
func (s *socket) join(n *Node) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return fmt.Errorf("cloudsim: shared socket %v is closed", s.addr())
	}
	s.members++
	return nil
}

// leave removes n; the last member to leave closes the socket and waits
// for its reader.
func (s *socket) leave(n *Node) {
	s.mu.Lock()
	if s.shared {
		for id, m := range s.sessions {
			if m == n {
				delete(s.sessions, id)
			}
		}
		for id, m := range s.probes {
			if m == n {
				delete(s.probes, id)
			}
		}
		if s.holder == n {
			s.holder = nil
		}
	}
	s.members--
	last := s.members == 0 && !s.closed
	s.closed = s.closed || last
	s.mu.Unlock()
	if last {
		s.conn.Close()
		s.reader.Wait()
	}
}

// acquireLogin takes a shared socket's login slot for n (no-op on a
// private socket); releaseLogin gives it back.
func (s *socket) acquireLogin(n *Node) {
	if !s.shared {
		return
	}
	s.slot <- struct{}{}
	s.mu.Lock()
	s.holder = n
	s.mu.Unlock()
}

func (s *socket) releaseLogin(n *Node) {
	if !s.shared {
		return
	}
	s.mu.Lock()
	if s.holder == n {
		s.holder = nil
	}
	s.mu.Unlock()
	<-s.slot
}

// claimSession routes sealed packets of session id to n from now on.
func (s *socket) claimSession(n *Node, id uint32) {
	if !s.shared {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for old, m := range s.sessions {
		if m == n {
			delete(s.sessions, old) // a new login replaces the old session
		}
	}
	s.sessions[id] = n
}

// claimProbe routes the reply to probe id to n until dropProbe.
func (s *socket) claimProbe(n *Node, id uint64) {
	if !s.shared {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.probes[id] = n
}

func (s *socket) dropProbe(id uint64) {
	if !s.shared {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.probes, id)
}

// owner is the node pkt is for, or nil.
func (s *socket) owner(pkt []byte) *Node {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.shared {
		return s.only
	}
	switch messages.PacketType(pkt[0]) {
	case messages.TypeSignaling:
		if id, err := signaling.PeekSession(pkt); err == nil {
			if n := s.sessions[id]; n != nil {
				return n
			}
		}
		// A login's sealed reply comes under the session its challenge
		// named, which the holder has claimed; anything else unknown
		// can only be for the login in progress, if any.
		return s.holder
	case messages.TypeLoginReply, messages.TypeLoginCookie:
		return s.holder
	case messages.TypeProbeReply:
		if r, err := messages.ParseProbeReply(pkt); err == nil {
			return s.probes[r.ID]
		}
	}
	return nil
}

func (s *socket) read() {
	defer s.reader.Done()
	buf := make([]byte, messages.MaxPacket)
	for {
		sz, from, err := s.conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			return
		}
		if sz == 0 {
			continue
		}
		pkt := append([]byte(nil), buf[:sz]...)
		n := s.owner(pkt)
		if n == nil {
			s.unclaimed.Add(1)
			continue
		}
		n.handle(pkt, from)
	}
}

// NodesPerSocket is how many nodes to put on each socket so that nodes
// nodes need at most half the process's open-files limit (soft
// RLIMIT_NOFILE, which the Go runtime raises to the hard limit at start):
// 1 (a socket each, as real nodes have) while that fits. The other half
// is for churn nodes, the runtime, HTTP scrapes and the test itself.
func NodesPerSocket(nodes int) int {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil || rl.Cur == 0 {
		return 1
	}
	budget := int(min(rl.Cur/2, 1<<30))
	return max(1, (nodes+budget-1)/budget)
}
