package udp

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"sync/atomic"
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
	closed atomic.Bool
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
	return &PeerConn{Conn: s, remote: remote}, nil
}

// Remote is the endpoint the socket is connected to.
func (p *PeerConn) Remote() netip.AddrPort { return p.remote }

// Close wakes a WaitReadable in progress (it returns false with ErrClosed)
// and closes the socket.
func (p *PeerConn) Close() error {
	p.closed.Store(true)
	// shutdown(SHUT_RD) wakes a poll(2) on the socket at once; closing
	// the descriptor alone would not.
	_ = p.rc.Control(func(fd uintptr) { _ = unix.Shutdown(int(fd), unix.SHUT_RD) })
	return p.Conn.Close()
}

// waitPollMs bounds one poll(2) of WaitReadable: a fallback only (Close
// wakes it), in case a wake-up is missed.
const waitPollMs = 1000

// WaitReadable blocks until a datagram (or an ICMP error the socket
// reports) is queued and reports true, holding no buffer: a reader per
// peer pins read buffers only while it has something to read. It waits in
// a blocking poll(2), not the runtime's poller: the kernel wakes this
// thread itself when a datagram comes, where a goroutine parked in the
// poller waits for the busy scheduler to poll the network, which with
// every P busy happens when one runs out of work, or at sysmon's next
// round (up to 10 ms): at 10 pushers that made an idle peer's ping wait
// longer in its own empty socket (2.3-3.1 ms) than behind the bulk in a
// shared one (BENCHMARKS.md, s10-sock). So it holds an OS thread while it
// waits. Once the socket is closed it returns false and an error wrapping
// ErrClosed; false and no error is a spurious wake-up (wait again).
// Only the socket's one reader may call it.
func (p *PeerConn) WaitReadable() (bool, error) {
	if p.closed.Load() {
		return false, fmt.Errorf("udp: wait %s: %w", p.remote, ErrClosed)
	}
	var fd uintptr
	if err := p.rc.Control(func(f uintptr) { fd = f }); err != nil {
		return false, fmt.Errorf("udp: wait %s: %w", p.remote, err)
	}
	// Polled outside Control, which would hold Close up until the poll
	// returns. The descriptor may be closed (and its number reused)
	// meanwhile: at worst a spurious wake-up, and the read that follows
	// goes through the runtime, which knows it is closed.
	pfd := unix.PollFd{Fd: int32(fd), Events: unix.POLLIN}
	n, _, errno := unix.Syscall(unix.SYS_POLL, uintptr(unsafe.Pointer(&pfd)), 1, waitPollMs)
	if p.closed.Load() {
		return false, fmt.Errorf("udp: wait %s: %w", p.remote, ErrClosed)
	}
	if errno != 0 && errno != unix.EINTR {
		return false, fmt.Errorf("udp: wait %s: %w", p.remote, errno)
	}
	return n > 0 && pfd.Revents&(unix.POLLIN|unix.POLLERR) != 0, nil
}
