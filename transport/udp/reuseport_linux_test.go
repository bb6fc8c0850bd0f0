package udp

import (
	"net"
	"net/netip"
	"testing"
	"time"
)

// TestSibling: a sibling shares the port; every source's datagrams land on
// one of the two sockets, all of them in order, and with enough sources
// both sockets read some. A plain socket on the port is still refused.
func TestSibling(t *testing.T) {
	for _, lb := range loopbacks {
		t.Run(lb.network, func(t *testing.T) {
			c := listen(t, lb.network, lb.addr)
			if c == nil {
				return
			}
			defer c.Close()
			s, err := c.Sibling()
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			if s.LocalAddr() != c.LocalAddr() {
				t.Fatalf("sibling on %s, want %s", s.LocalAddr(), c.LocalAddr())
			}
			if pc, err := net.ListenPacket(lb.network, c.LocalAddr().String()); err == nil {
				pc.Close()
				t.Fatal("a plain socket could bind the shared port")
			}
			const sources, each = 16, 8
			for i := range sources {
				src, err := net.ListenPacket(lb.network, netip.AddrPortFrom(c.LocalAddr().Addr(), 0).String())
				if err != nil {
					t.Fatal(err)
				}
				defer src.Close()
				for j := range each {
					if _, err := src.WriteTo([]byte{byte(i), byte(j)}, net.UDPAddrFromAddrPort(c.LocalAddr())); err != nil {
						t.Fatal(err)
					}
				}
			}
			owner := map[netip.AddrPort]*Conn{}
			next := map[netip.AddrPort]byte{}
			got := map[*Conn]int{}
			for _, r := range []*Conn{c, s} {
				bufs := make([][]byte, MaxBatch)
				for i := range bufs {
					bufs[i] = make([]byte, 64)
				}
				sizes, eps := make([]int, MaxBatch), make([]netip.AddrPort, MaxBatch)
				for {
					if err := r.SetReadDeadline(time.Now().Add(200 * time.Millisecond)); err != nil {
						t.Fatal(err)
					}
					n, err := r.ReadBatch(bufs, sizes, eps)
					if err != nil {
						break // drained
					}
					for k := range n {
						from := eps[k]
						if o, ok := owner[from]; ok && o != r {
							t.Fatalf("source %s read on both sockets", from)
						}
						owner[from] = r
						if seq := bufs[k][1]; sizes[k] != 2 || seq != next[from] {
							t.Fatalf("source %s: datagram %d, want %d", from, seq, next[from])
						}
						next[from]++
						got[r]++
					}
				}
			}
			if got[c]+got[s] != sources*each {
				t.Fatalf("read %d + %d datagrams, want %d", got[c], got[s], sources*each)
			}
			if got[c] == 0 || got[s] == 0 {
				t.Fatalf("one socket read everything (%d, %d): the port is not shared", got[c], got[s])
			}
		})
	}
}
