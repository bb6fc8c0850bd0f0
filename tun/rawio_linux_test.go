package tun

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"

	"golang.org/x/sys/unix"
)

// superPacket builds an IFF_VNET_HDR read: a virtio header for gsoType and
// one IPv4 or IPv6 TCP/UDP packet with payload, its transport checksum
// field holding only the pseudo-header's sum, as the kernel hands it over.
func superPacket(v6, udp bool, gsoType uint8, gso int, tcpFlags byte, payload []byte) []byte {
	iph, thl := 20, 20
	if v6 {
		iph = 40
	}
	if udp {
		thl = 8
	}
	p := make([]byte, iph+thl+len(payload))
	proto := byte(unix.IPPROTO_TCP)
	if udp {
		proto = unix.IPPROTO_UDP
	}
	if v6 {
		p[0] = 0x60
		binary.BigEndian.PutUint16(p[4:], uint16(len(p)-40))
		p[6], p[7] = proto, 64
		p[8], p[23], p[24], p[39] = 0xfd, 1, 0xfd, 2
	} else {
		p[0] = 0x45
		binary.BigEndian.PutUint16(p[2:], uint16(len(p)))
		binary.BigEndian.PutUint16(p[4:], 0xfffe) // the ID wraps while splitting
		p[6] = 0x40                               // DF
		p[8], p[9] = 64, proto
		copy(p[12:], []byte{10, 0, 0, 1, 10, 0, 0, 2})
		binary.BigEndian.PutUint16(p[10:], ^checksumFold(checksumAdd(0, p[:20])))
	}
	th := p[iph:]
	binary.BigEndian.PutUint16(th[0:], 40000)
	binary.BigEndian.PutUint16(th[2:], 5201)
	csumAt := 16
	if udp {
		binary.BigEndian.PutUint16(th[4:], uint16(len(th)))
		csumAt = 6
	} else {
		binary.BigEndian.PutUint32(th[4:], 0xfffff000) // the sequence wraps too
		th[12], th[13] = 5<<4, tcpFlags
	}
	copy(p[iph+thl:], payload)
	// The pseudo-header's sum, not complemented (CHECKSUM_PARTIAL).
	var sum uint32
	if v6 {
		sum = checksumAdd(0, p[8:40])
	} else {
		sum = checksumAdd(0, p[12:20])
	}
	sum += uint32(proto) + uint32(len(th))
	binary.BigEndian.PutUint16(th[csumAt:], checksumFold(sum))

	h := make([]byte, virtioNetHdrLen)
	h[0], h[1] = vnetNeedsCsum, gsoType
	binary.NativeEndian.PutUint16(h[2:], uint16(iph+thl))
	binary.NativeEndian.PutUint16(h[4:], uint16(gso))
	binary.NativeEndian.PutUint16(h[6:], uint16(iph))
	binary.NativeEndian.PutUint16(h[8:], uint16(csumAt))
	return append(h, p...)
}

// checkSegment verifies one split packet with the tests' own checksum code:
// the IPv4 header and the transport checksums sum to 0xffff, the lengths
// match the packet. It returns the transport header and payload.
func checkSegment(t *testing.T, p []byte, v6, udp bool) (th, payload []byte) {
	t.Helper()
	iph := 20
	var pseudo uint32
	if v6 {
		iph = 40
		if got := int(binary.BigEndian.Uint16(p[4:])); got != len(p)-40 {
			t.Fatalf("IPv6 payload length %d, packet %d", got, len(p))
		}
		pseudo = checksumAdd(0, p[8:40])
	} else {
		if got := int(binary.BigEndian.Uint16(p[2:])); got != len(p) {
			t.Fatalf("IPv4 total length %d, packet %d", got, len(p))
		}
		if checksumFold(checksumAdd(0, p[:20])) != 0xffff {
			t.Fatalf("IPv4 header checksum wrong")
		}
		pseudo = checksumAdd(0, p[12:20])
	}
	th = p[iph:]
	proto, thl := uint32(unix.IPPROTO_TCP), 20
	if udp {
		proto, thl = unix.IPPROTO_UDP, 8
		if got := int(binary.BigEndian.Uint16(th[4:])); got != len(th) {
			t.Fatalf("UDP length %d, datagram %d", got, len(th))
		}
	}
	if checksumFold(checksumAdd(pseudo+proto+uint32(len(th)), th)) != 0xffff {
		t.Fatalf("transport checksum wrong")
	}
	return th, th[thl:]
}

func TestSplitVirtio(t *testing.T) {
	const (
		fin, psh, ack, cwr = 0x01, 0x08, 0x10, 0x80
		mss                = 1000
	)
	payload := make([]byte, 3*mss+123) // three full segments and a short one
	for i := range payload {
		payload[i] = byte(i * 13)
	}
	for _, tc := range []struct {
		name    string
		v6, udp bool
		gsoType uint8
		bufs    int
		want    int // packets
	}{
		{"tcp4", false, false, vnetGSOTCPv4, 8, 4},
		{"tcp6", true, false, vnetGSOTCPv6, 8, 4},
		{"udp4", false, true, vnetGSOUDPL4, 8, 4},
		{"udp6", true, true, vnetGSOUDPL4, 8, 4},
		{"tcp4 more segments than buffers", false, false, vnetGSOTCPv4, 2, 2},
		{"tcp4 no GSO, checksum left to us", false, false, vnetGSONone, 8, 1},
		{"udp6 no GSO, checksum left to us", true, true, vnetGSONone, 8, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := superPacket(tc.v6, tc.udp, tc.gsoType, mss, ack|psh|fin|cwr, payload)
			const offset = 16
			bufs := make([][]byte, tc.bufs)
			for i := range bufs {
				bufs[i] = make([]byte, offset+len(in))
			}
			sizes := make([]int, tc.bufs)
			n, err := splitVirtio(in, bufs, sizes, offset)
			if err != nil || n != tc.want {
				t.Fatalf("split: %d packets, %v; want %d", n, err, tc.want)
			}
			var got []byte
			for i := range n {
				p := bufs[i][offset : offset+sizes[i]]
				th, pl := checkSegment(t, p, tc.v6, tc.udp)
				got = append(got, pl...)
				if tc.gsoType == vnetGSONone {
					continue
				}
				if len(pl) != mss && i != 3 {
					t.Errorf("segment %d: %d bytes of payload, want %d", i, len(pl), mss)
				}
				if !tc.v6 {
					if id := binary.BigEndian.Uint16(p[4:]); id != 0xfffe+uint16(i) {
						t.Errorf("segment %d: IPv4 ID %#x, want %#x", i, id, 0xfffe+uint16(i))
					}
				}
				if tc.udp {
					continue
				}
				if seq := binary.BigEndian.Uint32(th[4:]); seq != 0xfffff000+uint32(i*mss) {
					t.Errorf("segment %d: seq %#x, want %#x", i, seq, 0xfffff000+uint32(i*mss))
				}
				flags := th[13]
				wantFlags := byte(ack)
				if i == 0 {
					wantFlags |= cwr
				}
				if i == 3 {
					wantFlags |= psh | fin
				}
				if flags != wantFlags {
					t.Errorf("segment %d: TCP flags %#x, want %#x", i, flags, wantFlags)
				}
			}
			want := payload[:min(len(payload), tc.want*mss)]
			if tc.gsoType == vnetGSONone {
				want = payload
			}
			if !bytes.Equal(got, want) {
				t.Errorf("payload: %d bytes differ from the %d sent", len(got), len(want))
			}
		})
	}
}

func TestSplitVirtioRejects(t *testing.T) {
	good := func() []byte { return superPacket(false, false, vnetGSOTCPv4, 1000, 0x10, make([]byte, 2500)) }
	for _, tc := range []struct {
		name string
		mod  func([]byte) []byte
		want error
	}{
		{"shorter than the virtio header", func(b []byte) []byte { return b[:5] }, errBadVirtio},
		{"a virtio header and no packet", func(b []byte) []byte { b[1] = vnetGSONone; return b[:virtioNetHdrLen] }, errBadVirtio},
		{"UFO", func(b []byte) []byte { b[1] = 3; return b }, errBadVirtio},
		{"ECN", func(b []byte) []byte { b[1] |= 0x80; return b }, errBadVirtio},
		{"gso size 0", func(b []byte) []byte { b[4], b[5] = 0, 0; return b }, errBadVirtio},
		{"TCPv4 type on an IPv6 packet", func(b []byte) []byte { b[virtioNetHdrLen] = 0x60; return b }, errBadVirtio},
		{"csum start is not the IPv4 header length", func(b []byte) []byte { b[6] = 24; return b }, errBadVirtio},
		{"TCP data offset under 20 bytes", func(b []byte) []byte { b[virtioNetHdrLen+20+12] = 3 << 4; return b }, errBadVirtio},
		{"TCP header past the packet", func(b []byte) []byte { b[virtioNetHdrLen+20+12] = 15 << 4; return b[:virtioNetHdrLen+50] }, errBadVirtio},
		{"no payload", func(b []byte) []byte { return b[:virtioNetHdrLen+40] }, errBadVirtio},
		{"checksum field past the packet", func(b []byte) []byte { b[1] = 0; b[8] = 200; return b[:virtioNetHdrLen+40] }, errBadVirtio},
		{"segment larger than the buffers", func(b []byte) []byte { b[4], b[5] = 0xff, 0xff; return b }, ErrShortBuffer},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bufs := [][]byte{make([]byte, 1500), make([]byte, 1500), make([]byte, 1500)}
			_, err := splitVirtio(tc.mod(good()), bufs, make([]int, 3), 0)
			if !errors.Is(err, tc.want) {
				t.Fatalf("split: %v, want %v", err, tc.want)
			}
		})
	}
}

// The checksum is the ones'-complement sum of 16-bit words at any length
// and alignment: compare with the tests' word-by-word reference.
func TestCsumAdd(t *testing.T) {
	b := make([]byte, 77)
	for i := range b {
		b[i] = byte(255 - i*31)
	}
	for n := range len(b) {
		for off := range 3 {
			if off > n {
				continue
			}
			got := csumFinish(csumAdd(b[off:n], 0x1234))
			want := ^checksumFold(checksumAdd(0x1234, b[off:n]))
			if got != want {
				t.Fatalf("b[%d:%d]: %#x, want %#x", off, n, got, want)
			}
		}
	}
}

// TestRawReadCountsMalformed: the raw reader drops a super-packet it cannot
// split, counts it, and reads on to the good one behind it. A SEQPACKET
// socket pair stands in for the TUN descriptor (one read, one packet, and
// EAGAIN when empty), so the bad header is ours, not the kernel's.
func TestRawReadCountsMalformed(t *testing.T) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fds[0])
	defer unix.Close(fds[1])
	good := superPacket(false, false, vnetGSOTCPv4, 1000, 0x10, make([]byte, 2500)) // 3 segments
	bad := superPacket(false, false, vnetGSOTCPv4, 1000, 0x10, make([]byte, 2500))
	bad[1] = 3 // UFO: not something this reader splits
	for _, p := range [][]byte{bad, good, bad} {
		if _, err := unix.Write(fds[1], p); err != nil {
			t.Fatal(err)
		}
	}
	const mtu = 1420
	d := &offloadDevice{name: "test", mtu: mtu, raw: true, reserve: maxSegments(mtu),
		readBuf: make([]byte, virtioNetHdrLen+maxIPPacket)}
	bufs, sizes := make([][]byte, 2*d.reserve), make([]int, 2*d.reserve)
	for i := range bufs {
		bufs[i] = make([]byte, mtu)
	}
	d.rb = rawBatch{bufs: bufs, sizes: sizes}
	if !d.rawRead(uintptr(fds[0])) {
		t.Fatal("rawRead parked with a good packet read")
	}
	if d.rb.n != 3 || d.rb.err != nil {
		t.Fatalf("read %d packets (err %v), want the good one's 3 segments", d.rb.n, d.rb.err)
	}
	if got := d.Malformed(); got != 2 {
		t.Fatalf("Malformed() = %d, want 2", got)
	}
	var _ MalformedCounter = d
}

// FuzzSplitVirtio: whatever a read hands it, splitVirtio neither panics nor
// writes outside its buffers: it returns at most len(bufs) packets, each
// within its buffer after offset, leaves the headroom before offset as it
// was, and returns at least one packet when it reports no error. (The
// kernel writes the input, but a bug here would take the node down.)
func FuzzSplitVirtio(f *testing.F) {
	payload := make([]byte, 2500)
	for i := range payload {
		payload[i] = byte(i)
	}
	for _, v6 := range []bool{false, true} {
		for _, udp := range []bool{false, true} {
			gso := uint8(vnetGSOTCPv4)
			switch {
			case udp:
				gso = vnetGSOUDPL4
			case v6:
				gso = vnetGSOTCPv6
			}
			f.Add(superPacket(v6, udp, gso, 1000, 0x18, payload), uint8(4))
			f.Add(superPacket(v6, udp, vnetGSONone, 0, 0x18, payload[:600]), uint8(1))
			f.Add(superPacket(v6, udp, gso, 7, 0x11, payload[:50]), uint8(9))
		}
	}
	const offset, bufLen = 16, 1500
	f.Fuzz(func(t *testing.T, in []byte, nbufs uint8) {
		if len(in) > virtioNetHdrLen+maxIPPacket {
			return // a read of the device is never longer
		}
		n := int(nbufs%64) + 1
		bufs, sizes := make([][]byte, n), make([]int, n)
		for i := range bufs {
			bufs[i] = bytes.Repeat([]byte{0xa5}, bufLen)
		}
		m, err := splitVirtio(in, bufs, sizes, offset)
		if m < 0 || m > n {
			t.Fatalf("split into %d packets with %d buffers", m, n)
		}
		if err == nil && m == 0 {
			t.Fatal("no packet and no error")
		}
		for i := range m {
			if sizes[i] <= 0 || sizes[i] > bufLen-offset {
				t.Fatalf("packet %d: size %d, buffers hold %d after the offset", i, sizes[i], bufLen-offset)
			}
		}
		for i := range bufs {
			if !bytes.Equal(bufs[i][:offset], bytes.Repeat([]byte{0xa5}, offset)) {
				t.Fatalf("buffer %d: the headroom before the offset was written", i)
			}
		}
	})
}
