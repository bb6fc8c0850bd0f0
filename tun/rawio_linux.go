package tun

import (
	"encoding/binary"
	"errors"
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The offload device's raw I/O (BackendOffloadRaw): reads and the writes
// that GRO would not coalesce go to the TUN's file descriptor as
// RawSyscall, not through wireguard-go's os.File.
//
// Why: the descriptor is non-blocking (EAGAIN parks the goroutine in the
// netpoller through the file's RawConn), so the read(2) or write(2) never
// blocks, but os.File's path runs it through the scheduler's entersyscall.
// When every P is idle, sysmon sleeps deeply and entersyscall wakes it; a
// woken sysmon polls every 20 µs for a while and retakes Ps. On a pusher at
// a slow flow's rate every batch finds the process idle, so that is once
// per batch. Only when no data-path syscall tells the scheduler (this and
// transport/udp's sendmmsg/recvmmsg) does sysmon stay asleep: one capped
// pusher's futex calls per GB fell by a third and its CPU per GB by a quarter
// (BENCHMARKS.md, s10-raw). The cost of a raw syscall is that its P is
// held for its duration (a GC stop-the-world waits for it); a TUN read or
// write of at most 64 KB takes microseconds.
//
// What wireguard-go does around the syscall, done here too: an
// IFF_VNET_HDR read starts with a virtio_net_hdr, and a GSO super-packet
// is split into MTU-sized packets with their IP and transport headers
// and checksums fixed (splitVirtio); a write without GRO carries a zeroed
// virtio header. Writes GRO can coalesce still go through wireguard-go.

// virtio_net_hdr fields (include/uapi/linux/virtio_net.h).
const (
	vnetNeedsCsum = 1 // VIRTIO_NET_HDR_F_NEEDS_CSUM

	vnetGSONone  = 0 // VIRTIO_NET_HDR_GSO_NONE
	vnetGSOTCPv4 = 1
	vnetGSOTCPv6 = 4
	vnetGSOUDPL4 = 5
)

// vnetHdr is struct virtio_net_hdr, in the host's byte order (a TUN
// without TUNSETVNETLE/BE uses the native one).
type vnetHdr struct {
	flags      uint8
	gsoType    uint8
	hdrLen     uint16
	gsoSize    uint16
	csumStart  uint16
	csumOffset uint16
}

func decodeVnetHdr(b []byte) vnetHdr {
	return vnetHdr{
		flags:      b[0],
		gsoType:    b[1],
		hdrLen:     binary.NativeEndian.Uint16(b[2:]),
		gsoSize:    binary.NativeEndian.Uint16(b[4:]),
		csumStart:  binary.NativeEndian.Uint16(b[6:]),
		csumOffset: binary.NativeEndian.Uint16(b[8:]),
	}
}

// errBadVirtio means a super-packet's virtio header or packet headers do
// not describe something this reader can split; the packet is dropped.
var errBadVirtio = errors.New("tun: malformed or unsupported virtio packet")

// csumAdd adds b to a ones'-complement sum kept in 64 bits. Big-endian
// 32-bit words are summed: as 2^16 ≡ 1 (mod 2^16-1), folding the result
// gives the sum of the 16-bit words.
func csumAdd(b []byte, sum uint64) uint64 {
	for len(b) >= 8 {
		v := binary.BigEndian.Uint64(b)
		sum += v>>32 + v&0xffffffff
		b = b[8:]
	}
	if len(b) >= 4 {
		sum += uint64(binary.BigEndian.Uint32(b))
		b = b[4:]
	}
	if len(b) >= 2 {
		sum += uint64(binary.BigEndian.Uint16(b))
		b = b[2:]
	}
	if len(b) == 1 {
		sum += uint64(b[0]) << 8
	}
	return sum
}

// csumFinish folds a csumAdd sum to 16 bits and complements it.
func csumFinish(sum uint64) uint16 {
	sum = sum>>32 + sum&0xffffffff
	sum = sum>>32 + sum&0xffffffff
	sum = sum>>16 + sum&0xffff
	sum = sum>>16 + sum&0xffff
	return ^uint16(sum)
}

// splitVirtio turns one IFF_VNET_HDR read, in (virtio header, then the
// packet), into packets at bufs[i][offset:] with their sizes; it returns
// how many. A super-packet with more segments than bufs fills them all and
// drops the rest (TCP sends it again), as the wireguard-go path does.
func splitVirtio(in []byte, bufs [][]byte, sizes []int, offset int) (int, error) {
	if len(in) < virtioNetHdrLen || len(bufs) == 0 {
		return 0, errBadVirtio
	}
	h := decodeVnetHdr(in)
	pkt := in[virtioNetHdrLen:]
	if len(pkt) == 0 {
		return 0, errBadVirtio // a header and no packet
	}
	if h.gsoType == vnetGSONone {
		if h.flags&vnetNeedsCsum != 0 {
			// The kernel left the checksum to us: the field holds the
			// pseudo-header's sum; summing from csumStart completes it.
			cs, at := int(h.csumStart), int(h.csumStart)+int(h.csumOffset)
			if at+2 > len(pkt) || cs > at {
				return 0, errBadVirtio
			}
			binary.BigEndian.PutUint16(pkt[at:], csumFinish(csumAdd(pkt[cs:], 0)))
		}
		out := bufs[0][offset:]
		if len(pkt) > len(out) {
			return 0, fmt.Errorf("tun: %d-byte packet: %w", len(pkt), ErrShortBuffer)
		}
		sizes[0] = copy(out, pkt)
		return 1, nil
	}

	// A super-packet: IP header (csumStart long), TCP or UDP header, then
	// payload cut into gsoSize segments.
	var v6, udp bool
	switch h.gsoType {
	case vnetGSOTCPv4:
	case vnetGSOTCPv6:
		v6 = true
	case vnetGSOUDPL4:
		udp = true
		v6 = len(pkt) > 0 && pkt[0]>>4 == 6
	default:
		return 0, errBadVirtio // UFO, ECN: never enabled on this device
	}
	iph, gso := int(h.csumStart), int(h.gsoSize)
	if gso == 0 || len(pkt) < iph+8 {
		return 0, errBadVirtio
	}
	if v6 {
		if pkt[0]>>4 != 6 || iph < 40 || (!udp && pkt[6] != unix.IPPROTO_TCP) {
			return 0, errBadVirtio
		}
	} else if pkt[0]>>4 != 4 || int(pkt[0]&0x0f)*4 != iph || iph < 20 {
		return 0, errBadVirtio
	}
	// The transport header's length from the packet, not h.hdrLen (which
	// some kernels set loosely).
	thl := 8
	if !udp {
		if len(pkt) < iph+20 {
			return 0, errBadVirtio
		}
		thl = int(pkt[iph+12]>>4) * 4
	}
	hl := iph + thl
	if (udp && thl != 8) || (!udp && thl < 20) || hl > len(pkt) {
		// A TCP data offset under 5 words would put the flags and the
		// checksum written below past the header (FuzzSplitVirtio).
		return 0, errBadVirtio
	}
	// The pseudo-header's addresses, which every segment shares.
	var addrSum uint64
	var proto uint64 = unix.IPPROTO_TCP
	if udp {
		proto = unix.IPPROTO_UDP
	}
	if v6 {
		addrSum = csumAdd(pkt[8:40], proto)
	} else {
		addrSum = csumAdd(pkt[12:20], proto)
	}
	payload := pkt[hl:]
	if len(payload) == 0 {
		return 0, errBadVirtio
	}
	seq := uint32(0)
	if !udp {
		seq = binary.BigEndian.Uint32(pkt[iph+4:])
	}
	id := binary.BigEndian.Uint16(pkt[4:]) // IPv4
	n := 0
	for off := 0; off < len(payload); off += gso {
		if n == len(bufs) {
			break // more segments than buffers: the rest is lost
		}
		seg := payload[off:min(off+gso, len(payload))]
		last := off+gso >= len(payload)
		total := hl + len(seg)
		out := bufs[n][offset:]
		if total > len(out) {
			return n, fmt.Errorf("tun: %d-byte segment: %w", total, ErrShortBuffer)
		}
		copy(out, pkt[:hl])
		copy(out[hl:], seg)
		p := out[:total]
		if v6 {
			binary.BigEndian.PutUint16(p[4:], uint16(total-40))
		} else {
			binary.BigEndian.PutUint16(p[2:], uint16(total))
			binary.BigEndian.PutUint16(p[4:], id+uint16(n))
			p[10], p[11] = 0, 0
			binary.BigEndian.PutUint16(p[10:], csumFinish(csumAdd(p[:iph], 0)))
		}
		th := p[iph:]
		if udp {
			binary.BigEndian.PutUint16(th[4:], uint16(len(th)))
			th[6], th[7] = 0, 0
			cs := csumFinish(csumAdd(th, addrSum+uint64(len(th))))
			if cs == 0 {
				cs = 0xffff // 0 means "no checksum" in UDP
			}
			binary.BigEndian.PutUint16(th[6:], cs)
		} else {
			binary.BigEndian.PutUint32(th[4:], seq+uint32(off))
			if n > 0 {
				th[13] &^= 0x80 // CWR only on the first segment, as the kernel's TSO
			}
			if !last {
				th[13] &^= 0x01 | 0x08 // FIN and PSH only on the last
			}
			th[16], th[17] = 0, 0
			binary.BigEndian.PutUint16(th[16:], csumFinish(csumAdd(th, addrSum+uint64(len(th)))))
		}
		sizes[n] = total
		n++
		if last {
			break
		}
	}
	return n, nil
}

// rawRead runs under the device's RawConn.Read: read super-packets and
// split them into d.rb's buffers until the device has nothing more queued
// or the buffers left cannot take a whole super-packet. Returning false
// parks in the netpoller; it does so only while nothing has been read.
func (d *offloadDevice) rawRead(fd uintptr) bool {
	b := &d.rb
	for b.n == 0 || len(b.bufs)-b.n >= d.reserve {
		r, _, errno := unix.RawSyscall(unix.SYS_READ, fd,
			uintptr(unsafe.Pointer(&d.readBuf[0])), uintptr(len(d.readBuf)))
		switch errno {
		case 0:
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			return b.n > 0
		default:
			if b.n == 0 {
				b.err = errno
			}
			return true
		}
		if r == 0 {
			if b.n == 0 {
				b.err = errBadVirtio
			}
			return true
		}
		// A malformed packet is dropped and counted (what split before the
		// error is kept): not a device failure, so read on.
		m, err := splitVirtio(d.readBuf[:r], b.bufs[b.n:], b.sizes[b.n:], b.offset)
		b.n += m
		if err != nil {
			d.malformed.Add(1)
		}
	}
	return true
}

// rawWrite runs under the device's RawConn.Write: write d.wb's packets
// (virtio header included) one write(2) each. A packet the kernel rejects
// is skipped and counted; EAGAIN parks until writable.
func (d *offloadDevice) rawWrite(fd uintptr) bool {
	b := &d.wb
	for b.next < len(b.pkts) {
		p := b.pkts[b.next]
		_, _, errno := unix.RawSyscall(unix.SYS_WRITE, fd, uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
		switch errno {
		case 0:
			b.n++
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			return false
		default:
			if b.err == nil {
				b.err = errno
			}
		}
		b.next++
	}
	return true
}

// rawBatch is a raw read's or write's state, so the RawConn closures are
// bound once (no allocation per call).
type rawBatch struct {
	bufs   [][]byte // read: the caller's buffers
	sizes  []int
	offset int
	pkts   [][]byte // write: each packet with its virtio header
	next   int
	n      int   // packets read or written
	err    error // first error
}
