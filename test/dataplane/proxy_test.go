package dataplane_test

import (
	"encoding/binary"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/cyphonic/cyphonic-go/messages"
)

// proxy stands on the path between a node A (whoever is not b) and node B,
// like a NAT in front of B. A sends to addr(); B's packets reach A from
// addr(), or from alt() after rebind() (B's NAT picked a new mapping). It
// keeps the data packets it saw and their receiver indexes, and can drop
// everything from A to B.
type proxy struct {
	conns     [2]*net.UDPConn
	b         netip.AddrPort
	out       atomic.Int32  // which socket B's packets leave from
	blackhole atomic.Bool   // drop A -> B
	initsToB  atomic.Uint64 // handshake inits A sent to B
	holed     atomic.Uint64 // data packets the blackhole dropped

	mu       sync.Mutex
	a        netip.AddrPort
	seen     [][]byte            // data packets to B (the first 64)
	seenA    [][]byte            // data packets to A (the first 64)
	toB, toA map[uint32]struct{} // receiver indexes of data packets each way
	orderB   []uint32            // receiver indexes to B, in first-seen order
	orderA   []uint32
	lastB    []byte // the last data packet (not a keepalive) to B
	// pairs maps a session's receiver index at B to its index at A, from
	// the handshake responses (their header carries both in clear).
	pairs map[uint32]uint32
	wg    sync.WaitGroup
}

func newProxy(t *testing.T, b netip.AddrPort) *proxy {
	t.Helper()
	p := &proxy{b: b, toB: map[uint32]struct{}{}, toA: map[uint32]struct{}{}, pairs: map[uint32]uint32{}}
	for i := range p.conns {
		c, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.MustParseAddrPort("127.0.0.1:0")))
		if err != nil {
			t.Fatal(err)
		}
		p.conns[i] = c
	}
	for _, c := range p.conns {
		p.wg.Add(1)
		go func() { defer p.wg.Done(); p.run(c) }()
	}
	t.Cleanup(func() {
		for _, c := range p.conns {
			c.Close()
		}
		p.wg.Wait()
	})
	return p
}

func (p *proxy) addr() netip.AddrPort { return p.conns[0].LocalAddr().(*net.UDPAddr).AddrPort() }
func (p *proxy) alt() netip.AddrPort  { return p.conns[1].LocalAddr().(*net.UDPAddr).AddrPort() }

// rebind makes B's packets reach A from alt().
func (p *proxy) rebind() { p.out.Store(1) }

func (p *proxy) run(c *net.UDPConn) {
	buf := make([]byte, 65535)
	for {
		n, from, err := c.ReadFromUDPAddrPort(buf)
		if err != nil {
			return
		}
		pkt := buf[:n]
		p.mu.Lock()
		if h, _, err := messages.ParseHandshake(pkt); err == nil && h.Type == messages.TypeHandshakeResp {
			if from == p.b {
				p.pairs[h.Sender] = h.Receiver
			} else {
				p.pairs[h.Receiver] = h.Sender
			}
		}
		var to netip.AddrPort
		var out *net.UDPConn
		if from == p.b {
			to, out = p.a, p.conns[p.out.Load()]
			p.record(pkt, p.toA, &p.orderA, &p.seenA)
		} else {
			p.a = from
			if len(pkt) > 0 && messages.PacketType(pkt[0]) == messages.TypeHandshakeInit {
				p.initsToB.Add(1)
			}
			p.record(pkt, p.toB, &p.orderB, &p.seen)
			if len(pkt) > 100 && messages.PacketType(pkt[0]) == messages.TypeData {
				p.lastB = append(p.lastB[:0], pkt...)
			}
			if !p.blackhole.Load() {
				to, out = p.b, p.conns[0] // B never sees the proxy move
			} else if messages.PacketType(pkt[0]) == messages.TypeData {
				p.holed.Add(1)
			}
		}
		p.mu.Unlock()
		if to.IsValid() {
			_, _ = out.WriteToUDPAddrPort(pkt, to)
		}
	}
}

func (p *proxy) record(pkt []byte, idx map[uint32]struct{}, order *[]uint32, seen *[][]byte) {
	if len(pkt) < messages.DataHeaderLen+messages.AEADOverhead || messages.PacketType(pkt[0]) != messages.TypeData {
		return
	}
	i := receiverIndex(pkt)
	if _, ok := idx[i]; !ok {
		idx[i] = struct{}{}
		*order = append(*order, i)
	}
	if len(*seen) < 64 {
		*seen = append(*seen, append([]byte(nil), pkt...))
	}
}

// indexes returns how many receiver indexes the proxy saw toward B and A.
func (p *proxy) indexes() (toB, toA int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.toB), len(p.toA)
}

func receiverIndex(pkt []byte) uint32 { return binary.BigEndian.Uint32(pkt[4:8]) }

// generations returns the receiver indexes seen toward B and toward A, in
// the order sessions started carrying data each way.
func (p *proxy) generations() (toB, toA []uint32) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]uint32(nil), p.orderB...), append([]uint32(nil), p.orderA...)
}

// usedByB reports whether B has sent data on the session whose receiver
// index at B is idx (so B has installed it).
func (p *proxy) usedByB(idx uint32) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	a, ok := p.pairs[idx]
	if !ok {
		return false
	}
	_, used := p.toA[a]
	return used
}

// lastToB returns a copy of the last data packet seen going to B.
func (p *proxy) lastToB() []byte {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]byte(nil), p.lastB...)
}

// inject sends pkt to B from the proxy's first socket.
func (p *proxy) inject(t testing.TB, pkt []byte) {
	t.Helper()
	if _, err := p.conns[0].WriteToUDPAddrPort(pkt, p.b); err != nil {
		t.Fatal(err)
	}
}

// dataPacket returns a copy of a data packet (not a keepalive) seen going
// to B, or to A if toA.
func (p *proxy) dataPacket(t testing.TB, toA bool) []byte {
	t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	seen := p.seen
	if toA {
		seen = p.seenA
	}
	for _, s := range seen {
		if len(s) > 100 { // a real packet, not a keepalive
			return append([]byte(nil), s...)
		}
	}
	t.Fatal("proxy saw no data packet")
	return nil
}

// forge returns pkt with its tag broken: same receiver index and counter,
// fails authentication.
func forge(pkt []byte) []byte {
	f := append([]byte(nil), pkt...)
	f[len(f)-1] ^= 1
	return f
}
