package udp

import (
	"context"
	"fmt"
	"net"
	"syscall"

	"golang.org/x/sys/unix"
)

// Sibling opens another socket on c's address and port, joined to c through
// SO_REUSEPORT, for a second reader. The kernel spreads the datagrams of the
// group over its sockets by a hash of their addresses and ports, so all of
// one peer's path (one source address and port) lands on the same socket,
// in order, and a reader per socket keeps every peer's order as one reader
// did. Sends still go from c: the sibling only reads.
//
// c was bound without SO_REUSEPORT, so a node started on a taken port is
// still refused; the option is set on c only now, before the sibling binds
// (the kernel makes the group when a second socket with the option binds
// next to a first that has it). Another process of ours that asks for the
// option before it binds could then join the group: the same user can
// already read our memory.
func (c *Conn) Sibling() (*Conn, error) {
	if err := setReusePort(c.rc); err != nil {
		return nil, fmt.Errorf("udp: sibling of %s: %w", c.local, err)
	}
	network := "udp4"
	if c.Is6() {
		network = "udp6"
	}
	lc := net.ListenConfig{Control: func(_, _ string, rc syscall.RawConn) error { return setReusePort(rc) }}
	pc, err := lc.ListenPacket(context.Background(), network, c.local.String())
	if err != nil {
		return nil, fmt.Errorf("udp: sibling of %s: %w", c.local, err)
	}
	s, err := newConn(pc.(*net.UDPConn), offload{gso: c.gso, gro: c.gro})
	if err != nil {
		pc.Close()
		return nil, fmt.Errorf("udp: sibling of %s: %w", c.local, err)
	}
	return s, nil
}

func setReusePort(rc syscall.RawConn) error {
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
	}); err != nil {
		return err
	}
	if serr != nil {
		return fmt.Errorf("SO_REUSEPORT: %w", serr)
	}
	return nil
}
