package udp

import (
	"errors"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"
)

// drain reads everything r has queued (until a short quiet spell) and
// returns the sources of what it read, in order.
func drain(t *testing.T, r *Conn) []netip.AddrPort {
	t.Helper()
	bufs := make([][]byte, MaxBatch)
	for i := range bufs {
		bufs[i] = make([]byte, 64)
	}
	sizes, eps := make([]int, MaxBatch), make([]netip.AddrPort, MaxBatch)
	var got []netip.AddrPort
	for {
		if err := r.SetReadDeadline(time.Now().Add(100 * time.Millisecond)); err != nil {
			t.Fatal(err)
		}
		n, err := r.ReadBatch(bufs, sizes, eps)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return got
		}
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, eps[:n]...)
	}
}

// TestConnected: a socket connected to one source, in the listening
// socket's reuseport group (with a sibling, as the data plane runs it),
// receives every datagram of that source and nothing else; the listening
// sockets still get every other source's. Closed, the source's datagrams
// go back to the group, and a wait on it returns ErrClosed.
func TestConnected(t *testing.T) {
	for _, lb := range loopbacks {
		t.Run(lb.network, func(t *testing.T) {
			c := listen(t, lb.network, lb.addr)
			if c == nil {
				return
			}
			s, err := c.Sibling()
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			const sources, each = 8, 16
			srcs := make([]net.PacketConn, sources)
			for i := range srcs {
				srcs[i], err = net.ListenPacket(lb.network, netip.AddrPortFrom(c.LocalAddr().Addr(), 0).String())
				if err != nil {
					t.Fatal(err)
				}
				defer srcs[i].Close()
			}
			target := srcs[0].LocalAddr().(*net.UDPAddr).AddrPort()
			p, err := c.Connected(target)
			if err != nil {
				t.Fatal(err)
			}
			if p.LocalAddr() != c.LocalAddr() || p.Remote() != target {
				t.Fatalf("peer socket %s -> %s, want %s -> %s", p.LocalAddr(), p.Remote(), c.LocalAddr(), target)
			}
			send := func() {
				for j := range each {
					for i, src := range srcs {
						if _, err := src.WriteTo([]byte{byte(i), byte(j)}, net.UDPAddrFromAddrPort(c.LocalAddr())); err != nil {
							t.Fatal(err)
						}
					}
				}
			}
			send()
			if ok, err := p.WaitReadable(); !ok || err != nil {
				t.Fatalf("WaitReadable with datagrams queued: %v, %v", ok, err)
			}
			mine := drain(t, p.Conn)
			if len(mine) != each {
				t.Errorf("peer socket read %d datagrams, want its source's %d", len(mine), each)
			}
			for _, ep := range mine {
				if ep != target {
					t.Errorf("peer socket read a datagram of %s", ep)
				}
			}
			others := append(drain(t, c), drain(t, s)...)
			if len(others) != (sources-1)*each {
				t.Errorf("listening sockets read %d datagrams, want %d", len(others), (sources-1)*each)
			}
			for _, ep := range others {
				if ep == target {
					t.Errorf("listening socket read a datagram of the connected source")
				}
			}

			// Closed: the wait returns, and the source is the group's again.
			errc := make(chan error, 1)
			go func() {
				for {
					ok, err := p.WaitReadable()
					if ok || err != nil {
						errc <- err
						return
					}
				}
			}()
			time.Sleep(20 * time.Millisecond) // let it block (not a timed assertion)
			p.Close()
			if err := <-errc; !errors.Is(err, ErrClosed) {
				t.Fatalf("WaitReadable after Close: %v, want ErrClosed", err)
			}
			send()
			if got := len(drain(t, c)) + len(drain(t, s)); got != sources*each {
				t.Errorf("after the peer socket closed, the group read %d datagrams, want %d", got, sources*each)
			}
		})
	}
}
