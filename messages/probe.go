package messages

import (
	"encoding/binary"
	"net/netip"
)

// Probe framing, for hole punching between nodes and for NAT mapping
// discovery against a second cloud observation point:
//
//	probe: TypeProbe | probe id (8) | sender index (4) | zero padding
//	reply: TypeProbeReply | probe id (8) | observed address (16) | observed port (2)
//
// A probe is padded to ProbeLen, the reply's length, so that answering an
// unauthenticated probe (whose source may be spoofed) never sends more bytes
// than it received: probes cannot be used for amplification. Longer probes
// are accepted (padding may be used for path MTU probing).
const (
	AddrPortLen   = 18
	ProbeReplyLen = 1 + 8 + AddrPortLen
	ProbeLen      = ProbeReplyLen
)

// Probe is a probe's content.
type Probe struct {
	ID     uint64 // chosen by the sender, echoed in the reply
	Sender uint32 // the sender's session index for the peer, 0 when probing the cloud
}

// Put writes p into b[:ProbeLen] (including the zero padding) and returns
// ProbeLen. It panics if b is shorter than ProbeLen.
func (p Probe) Put(b []byte) int {
	_ = b[ProbeLen-1]
	b[0] = byte(TypeProbe)
	binary.BigEndian.PutUint64(b[1:9], p.ID)
	binary.BigEndian.PutUint32(b[9:13], p.Sender)
	clear(b[13:ProbeLen])
	return ProbeLen
}

// ParseProbe parses a probe. Errors are bare sentinels; it never allocates.
func ParseProbe(b []byte) (Probe, error) {
	if len(b) < ProbeLen {
		return Probe{}, ErrTruncated
	}
	if len(b) > MaxPacket {
		return Probe{}, ErrTooLarge
	}
	if PacketType(b[0]) != TypeProbe {
		return Probe{}, ErrBadType
	}
	return Probe{
		ID:     binary.BigEndian.Uint64(b[1:9]),
		Sender: binary.BigEndian.Uint32(b[9:13]),
	}, nil
}

// ProbeReply answers a probe with the source address the probe arrived from.
type ProbeReply struct {
	ID       uint64
	Observed netip.AddrPort
}

// Put writes r into b[:ProbeReplyLen] and returns ProbeReplyLen. It panics if
// b is too short.
func (r ProbeReply) Put(b []byte) int {
	_ = b[ProbeReplyLen-1]
	b[0] = byte(TypeProbeReply)
	binary.BigEndian.PutUint64(b[1:9], r.ID)
	PutAddrPort(b[9:ProbeReplyLen], r.Observed)
	return ProbeReplyLen
}

// ParseProbeReply parses a probe reply; the packet must be exactly
// ProbeReplyLen long. Errors are bare sentinels; it never allocates.
func ParseProbeReply(b []byte) (ProbeReply, error) {
	if len(b) < ProbeReplyLen {
		return ProbeReply{}, ErrTruncated
	}
	if len(b) > ProbeReplyLen {
		return ProbeReply{}, ErrTooLarge
	}
	if PacketType(b[0]) != TypeProbeReply {
		return ProbeReply{}, ErrBadType
	}
	ap, err := ParseAddrPort(b[9:])
	if err != nil {
		return ProbeReply{}, err
	}
	return ProbeReply{ID: binary.BigEndian.Uint64(b[1:9]), Observed: ap}, nil
}

// PutAddrPort writes ap into b[:AddrPortLen] as a 16-byte IPv6 address (IPv4
// as IPv4-mapped) and a 2-byte port. The zone is dropped. It panics if b is
// shorter than AddrPortLen.
func PutAddrPort(b []byte, ap netip.AddrPort) {
	_ = b[AddrPortLen-1]
	a16 := ap.Addr().As16() // the zero Addr gives all zeros
	copy(b[:16], a16[:])
	binary.BigEndian.PutUint16(b[16:18], ap.Port())
}

// ParseAddrPort reads the 18-byte form written by PutAddrPort. IPv4-mapped
// addresses come back as IPv4. The unspecified address and port zero are
// rejected with ErrInvalid: no real source address looks like that.
func ParseAddrPort(b []byte) (netip.AddrPort, error) {
	if len(b) < AddrPortLen {
		return netip.AddrPort{}, ErrTruncated
	}
	addr := netip.AddrFrom16([16]byte(b[:16])).Unmap()
	port := binary.BigEndian.Uint16(b[16:18])
	if addr.IsUnspecified() || port == 0 {
		return netip.AddrPort{}, ErrInvalid
	}
	return netip.AddrPortFrom(addr, port), nil
}
