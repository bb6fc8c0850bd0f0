package tun

import (
	"encoding/binary"
	"net/netip"
	"testing"
)

// tcpSeg builds an IPv4 or IPv6 TCP segment of payload bytes from src to dst.
func tcpSeg(src, dst netip.AddrPort, payload int) []byte {
	const tcpLen = 20
	var p []byte
	if src.Addr().Is4() {
		p = make([]byte, 20+tcpLen+payload)
		p[0], p[9] = 0x45, 6
		binary.BigEndian.PutUint16(p[2:], uint16(len(p)))
		s, d := src.Addr().As4(), dst.Addr().As4()
		copy(p[12:], s[:])
		copy(p[16:], d[:])
	} else {
		p = make([]byte, 40+tcpLen+payload)
		p[0], p[6] = 0x60, 6
		binary.BigEndian.PutUint16(p[4:], uint16(tcpLen+payload))
		s, d := src.Addr().As16(), dst.Addr().As16()
		copy(p[8:], s[:])
		copy(p[24:], d[:])
	}
	l4 := p[len(p)-tcpLen-payload:]
	binary.BigEndian.PutUint16(l4[0:], src.Port())
	binary.BigEndian.PutUint16(l4[2:], dst.Port())
	l4[12], l4[13] = 5<<4, 0x10 // ACK
	return p
}

// withFlags sets a TCP segment's flags.
func withFlags(p []byte, flags byte) []byte {
	ihl := 40
	if p[0]>>4 == 4 {
		ihl = int(p[0]&0x0f) * 4
	}
	p[ihl+13] = flags
	return p
}

// withTS gives a TCP segment (built by tcpSeg, no options) a timestamp
// option with value ts: 12 more header bytes, as Linux sends them.
func withTS(p []byte, ts uint32) []byte {
	ihl := 40
	if p[0]>>4 == 4 {
		ihl = int(p[0]&0x0f) * 4
	}
	q := make([]byte, 0, len(p)+12)
	q = append(q, p[:ihl+20]...)
	q = append(q, 1, 1, 8, 10, 0, 0, 0, 0, 0, 0, 0, 0) // NOP, NOP, TS val ecr
	binary.BigEndian.PutUint32(q[ihl+24:], ts)
	q = append(q, p[ihl+20:]...)
	q[ihl+12] = 8 << 4
	if q[0]>>4 == 4 {
		binary.BigEndian.PutUint16(q[2:], uint16(len(q)))
	} else {
		binary.BigEndian.PutUint16(q[4:], uint16(len(q)-40))
	}
	return q
}

// numbered gives each TCP flow's segments in pkts consecutive sequence
// numbers, as a sender's in-order stream has, and returns pkts.
func numbered(pkts [][]byte) [][]byte {
	next := map[groKey]uint32{}
	for _, p := range pkts {
		g, ok := groFlow(p)
		if !ok || g.tcph == 0 {
			continue
		}
		binary.BigEndian.PutUint32(p[g.iph+4:], next[g.key])
		next[g.key] += uint32(g.payload)
	}
	return pkts
}

func TestPlanHeads(t *testing.T) {
	a4, b4 := netip.MustParseAddrPort("100.64.0.1:5001"), netip.MustParseAddrPort("100.64.0.2:40000")
	c4 := netip.MustParseAddrPort("100.64.0.3:40000")
	a6, b6 := netip.MustParseAddrPort("[fd00::1]:5001"), netip.MustParseAddrPort("[fd00::2]:40000")
	run := func(n int, mk func(i int) []byte) [][]byte {
		ps := make([][]byte, n)
		for i := range ps {
			ps[i] = mk(i)
		}
		return numbered(ps)
	}
	bits := func(is ...int) uint64 {
		var m uint64
		for _, i := range is {
			m |= 1 << i
		}
		return m
	}
	// 1360 bytes of payload: a head of 1400 takes 47 more before 64 KB.
	perHead := (groHeadRoom-1400)/1360 + 1
	tests := []struct {
		name string
		pkts [][]byte
		want uint64
	}{
		{"empty", nil, 0},
		{"one packet", run(1, func(int) []byte { return tcpSeg(a4, b4, 1360) }), 0},
		{"a run of one flow", run(8, func(int) []byte { return tcpSeg(a4, b4, 1360) }), bits(0)},
		{"64 of one flow: a second head when the first is full", run(64, func(int) []byte { return tcpSeg(a4, b4, 1360) }), bits(0, perHead)},
		{"two interleaved flows", run(6, func(i int) []byte {
			if i%2 == 0 {
				return tcpSeg(a4, b4, 1360)
			}
			return tcpSeg(a4, c4, 1360)
		}), bits(0, 1)},
		{"a flow each: nothing coalesces", run(5, func(i int) []byte {
			return tcpSeg(a4, netip.AddrPortFrom(b4.Addr(), uint16(1000+i)), 1360)
		}), 0},
		{"PSH ends a run", run(6, func(i int) []byte {
			if i == 2 {
				return withFlags(tcpSeg(a4, b4, 1360), 0x18)
			}
			return tcpSeg(a4, b4, 1360)
		}), bits(0, 3)},
		{"pure ACKs and SYNs do not coalesce", run(4, func(i int) []byte {
			if i%2 == 0 {
				return tcpSeg(a4, b4, 0)
			}
			return withFlags(tcpSeg(a4, b4, 10), 0x12)
		}), 0},
		// What wireguard-go's GRO does not append, whatever the flow:
		// the plan must see a new item start there, or that item's run
		// goes to the kernel a segment at a time.
		{"a new TSO burst's timestamp starts an item", run(8, func(i int) []byte {
			return withTS(tcpSeg(a4, b4, 1348), uint32(100+i/4))
		}), bits(0, 4)},
		{"a sequence gap (a loss) starts an item", func() [][]byte {
			ps := run(8, func(int) []byte { return tcpSeg(a4, b4, 1360) })
			for _, p := range ps[4:] {
				binary.BigEndian.PutUint32(p[24:], binary.BigEndian.Uint32(p[24:])+1360)
			}
			return ps
		}(), bits(0, 4)},
		// GRO appends the run's rest to the first item again (it tries a
		// flow's older items too); the plan follows only the latest and
		// stages the packet after the retransmission as a head: a full
		// stage too many, which costs memory, not coalescing.
		{"a retransmission in a run", func() [][]byte {
			ps := run(6, func(int) []byte { return tcpSeg(a4, b4, 1360) })
			re := tcpSeg(a4, b4, 1360) // seq 0 again
			return append(ps[:3:3], append([][]byte{re}, ps[3:]...)...)
		}(), bits(0, 4)},
		{"a smaller segment ends the item", run(6, func(i int) []byte {
			if i == 2 {
				return tcpSeg(a4, b4, 500)
			}
			return tcpSeg(a4, b4, 1360)
		}), bits(0, 3)},
		{"a larger segment starts an item", run(6, func(i int) []byte {
			if i < 3 {
				return tcpSeg(a4, b4, 500)
			}
			return tcpSeg(a4, b4, 1360)
		}), bits(0, 3)},
		{"an ECN mark starts an item", run(6, func(i int) []byte {
			p := tcpSeg(a4, b4, 1360)
			if i >= 3 {
				p[1] = 0x03 // CE
			}
			return p
		}), bits(0, 3)},
		{"IPv6 hop limit", run(6, func(i int) []byte {
			p := tcpSeg(a6, b6, 1340)
			if i >= 2 {
				p[7] = 63
			}
			return p
		}), bits(0, 2)},
		{"IPv6", run(3, func(int) []byte { return tcpSeg(a6, b6, 1340) }), bits(0)},
		{"same ports, other family", [][]byte{tcpSeg(a4, b4, 100), tcpSeg(a6, b6, 100)}, 0},
		{"UDP", run(3, func(int) []byte { return buildUDP(a4, b4, make([]byte, 1000)) }), bits(0)},
		{"not IP, short, fragments", [][]byte{{0x45}, make([]byte, 40), func() []byte {
			p := tcpSeg(a4, b4, 100)
			p[6] = 0x20 // more fragments
			return p
		}(), func() []byte {
			p := tcpSeg(a4, b4, 100)
			p[6] = 0x20
			return p
		}()}, 0},
		{"ICMP", run(3, func(int) []byte {
			p := tcpSeg(a4, b4, 100)
			p[9] = 1
			return p
		}), 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := planHeads(tt.pkts); got != tt.want {
				t.Errorf("planHeads = %b, want %b", got, tt.want)
			}
		})
	}
}
