package udp

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// PeerConn is a socket of its own for one remote endpoint's datagrams: bound
// to a Conn's address and port in the Conn's SO_REUSEPORT group and
// connected to the endpoint. The kernel scores an exact four-tuple match
// above the group's unconnected sockets, and its reuseport hash skips
// connected sockets, so the endpoint's datagrams queue here, in their own
// FIFO, and nobody else's do (after the connect: see Connected). It only
// reads; sends still go from the Conn it was made from.
//
// Why: all peers' datagrams otherwise share the unconnected sockets' FIFOs,
// and an idle peer's lone packet waits there behind every bulk peer's that
// hashes to the same socket.
type PeerConn struct {
	*Conn
	remote netip.AddrPort
	peekFn func(fd uintptr) bool // bound once: WaitReadable does not allocate
	peek   [1]byte
}

// Connected opens a PeerConn on c's address and port for datagrams from
// remote. Its reads are plain recvmmsg (no UDP_GRO): a GRO socket holds
// run buffers of half a MiB, too much per peer.
//
// Between its bind and its connect (microseconds) the socket is an
// unconnected member of the group and may be handed any endpoint's
// datagrams; its reader must treat them as the group's other readers do.
func (c *Conn) Connected(remote netip.AddrPort) (*PeerConn, error) {
	if err := setReusePort(c.rc); err != nil {
		return nil, fmt.Errorf("udp: connected %s -> %s: %w", c.local, remote, err)
	}
	network := "udp4"
	if c.Is6() {
		network = "udp6"
	}
	lc := net.ListenConfig{Control: func(_, _ string, rc syscall.RawConn) error { return setReusePort(rc) }}
	pc, err := lc.ListenPacket(context.Background(), network, c.local.String())
	if err != nil {
		return nil, fmt.Errorf("udp: connected %s -> %s: %w", c.local, remote, err)
	}
	s, err := newConn(pc.(*net.UDPConn), offload{})
	if err != nil {
		pc.Close()
		return nil, fmt.Errorf("udp: connected %s -> %s: %w", c.local, remote, err)
	}
	var sa sockaddr
	n, err := putSockaddr(&sa, remote, s.family)
	if err == nil {
		var errno syscall.Errno
		cerr := s.rc.Control(func(fd uintptr) {
			_, _, errno = unix.Syscall(unix.SYS_CONNECT, fd, uintptr(unsafe.Pointer(&sa[0])), uintptr(n))
		})
		switch {
		case cerr != nil:
			err = cerr
		case errno != 0:
			err = errno
		}
	}
	if err != nil {
		s.Close()
		return nil, fmt.Errorf("udp: connected %s -> %s: connect: %w", c.local, remote, err)
	}
	p := &PeerConn{Conn: s, remote: remote}
	p.peekFn = p.readable
	return p, nil
}

// Remote is the endpoint the socket is connected to.
func (p *PeerConn) Remote() netip.AddrPort { return p.remote }

// WaitReadable blocks until a datagram is queued (or the socket is
// closed: an error wrapping ErrClosed), holding no buffer: a reader per
// peer then pins read buffers only while it has something to read.
// Only the socket's one reader may call it.
func (p *PeerConn) WaitReadable() error {
	if err := p.rc.Read(p.peekFn); err != nil {
		return fmt.Errorf("udp: wait %s: %w", p.remote, err)
	}
	return nil
}

// readable peeks at the queue without taking anything from it. The
// poller is edge-triggered, so the queue is looked at before waiting: a
// datagram queued before the last edge was consumed would not wake us.
func (p *PeerConn) readable(fd uintptr) bool {
	_, _, errno := unix.Syscall6(unix.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&p.peek[0])), 1,
		unix.MSG_PEEK|unix.MSG_DONTWAIT|unix.MSG_TRUNC, 0, 0)
	// Anything but "nothing queued" is for the read to see: a datagram,
	// or a pending ICMP error (a connected socket reports ECONNREFUSED
	// and the like), which that read returns and clears.
	return errno != unix.EAGAIN && errno != unix.EINTR
}
