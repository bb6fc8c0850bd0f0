package udp

import (
	"encoding/binary"
	"net"
	"net/netip"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// recvHops reads one datagram from r and returns its payload and the TTL
// or hop limit it arrived with (IP_RECVTTL / IPV6_RECVHOPLIMIT).
func recvHops(t *testing.T, r *net.UDPConn, v6 bool) (string, int) {
	t.Helper()
	buf, oob := make([]byte, 64), make([]byte, 128)
	_ = r.SetReadDeadline(time.Now().Add(2 * time.Second))
	n, oobn, _, _, err := r.ReadMsgUDP(buf, oob)
	if err != nil {
		t.Fatal(err)
	}
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range msgs {
		if (!v6 && m.Header.Level == unix.IPPROTO_IP && m.Header.Type == unix.IP_TTL) ||
			(v6 && m.Header.Level == unix.IPPROTO_IPV6 && m.Header.Type == unix.IPV6_HOPLIMIT) {
			return string(buf[:n]), int(binary.NativeEndian.Uint32(m.Data))
		}
	}
	t.Fatalf("no TTL control message in %d bytes", oobn)
	return "", 0
}

// TestWriteHopLimited: the datagram carries the hop limit asked for, from
// the socket's own port, and the socket's next datagram has its default
// again (the limit is per datagram, not a socket option left behind).
func TestWriteHopLimited(t *testing.T) {
	for _, lb := range loopbacks {
		t.Run(lb.network, func(t *testing.T) {
			c := listen(t, lb.network, lb.addr)
			if c == nil {
				return
			}
			v6 := lb.network == "udp6"
			r, err := net.ListenUDP(lb.network, net.UDPAddrFromAddrPort(netip.MustParseAddrPort(lb.addr)))
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			rc, _ := r.SyscallConn()
			_ = rc.Control(func(fd uintptr) {
				if v6 {
					err = unix.SetsockoptInt(int(fd), unix.IPPROTO_IPV6, unix.IPV6_RECVHOPLIMIT, 1)
				} else {
					err = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_RECVTTL, 1)
				}
			})
			if err != nil {
				t.Fatal(err)
			}
			to := r.LocalAddr().(*net.UDPAddr).AddrPort()
			if err := c.WriteHopLimited([]byte("low"), to, 2); err != nil {
				t.Fatal(err)
			}
			if _, err := c.WriteBatch([][]byte{[]byte("full")}, []netip.AddrPort{to}); err != nil {
				t.Fatal(err)
			}
			if got, hops := recvHops(t, r, v6); got != "low" || hops != 2 {
				t.Errorf("first datagram %q with hop limit %d, want \"low\" with 2", got, hops)
			}
			if got, hops := recvHops(t, r, v6); got != "full" || hops <= 2 {
				t.Errorf("second datagram %q with hop limit %d, want \"full\" with the default", got, hops)
			}
			for _, bad := range []int{0, 256} {
				if err := c.WriteHopLimited([]byte("x"), to, bad); err == nil {
					t.Errorf("hop limit %d accepted", bad)
				}
			}
		})
	}
}
