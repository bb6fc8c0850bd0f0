package messages

import "encoding/binary"

// Node <-> node handshake headers. The Noise message follows the header.
//
//	init: TypeHandshakeInit | reserved (3) | sender index (4)
//	resp: TypeHandshakeResp | reserved (3) | sender index (4) | receiver index (4)
//
// A sender index is the value the sender wants to see as Receiver in the data
// packets it will receive; the response echoes the initiator's index as its
// receiver index so the initiator can find its pending handshake.
const (
	HandshakeInitHeaderLen = 8
	HandshakeRespHeaderLen = 12
)

// HandshakeHeader is the cleartext header of a handshake packet.
type HandshakeHeader struct {
	Type     PacketType // TypeHandshakeInit or TypeHandshakeResp
	Sender   uint32
	Receiver uint32 // only on the wire for TypeHandshakeResp; zero for init
}

// Len is the encoded length of h: HandshakeInitHeaderLen or HandshakeRespHeaderLen.
func (h HandshakeHeader) Len() int {
	if h.Type == TypeHandshakeResp {
		return HandshakeRespHeaderLen
	}
	return HandshakeInitHeaderLen
}

// Put writes h into b and returns h.Len(); the Noise message goes at b[h.Len():].
// It panics if b is shorter than h.Len() (a caller bug, like encoding/binary).
// Any type other than TypeHandshakeResp is written as TypeHandshakeInit.
func (h HandshakeHeader) Put(b []byte) int {
	n := h.Len()
	_ = b[n-1]
	b[0] = byte(TypeHandshakeInit)
	b[1], b[2], b[3] = 0, 0, 0
	binary.BigEndian.PutUint32(b[4:8], h.Sender)
	if n == HandshakeRespHeaderLen {
		b[0] = byte(TypeHandshakeResp)
		binary.BigEndian.PutUint32(b[8:12], h.Receiver)
	}
	return n
}

// ParseHandshake parses a handshake init or response and returns its header
// and the Noise message (a sub-slice of b, never empty). Errors are bare
// sentinels; it never allocates.
func ParseHandshake(b []byte) (HandshakeHeader, []byte, error) {
	if len(b) == 0 {
		return HandshakeHeader{}, nil, ErrTruncated
	}
	if len(b) > MaxPacket {
		return HandshakeHeader{}, nil, ErrTooLarge
	}
	h := HandshakeHeader{Type: PacketType(b[0])}
	if h.Type != TypeHandshakeInit && h.Type != TypeHandshakeResp {
		return HandshakeHeader{}, nil, ErrBadType
	}
	n := h.Len()
	if len(b) <= n { // the Noise message may not be empty
		return HandshakeHeader{}, nil, ErrTruncated
	}
	if b[1] != 0 || b[2] != 0 || b[3] != 0 {
		return HandshakeHeader{}, nil, ErrReserved
	}
	h.Sender = binary.BigEndian.Uint32(b[4:8])
	if h.Type == TypeHandshakeResp {
		h.Receiver = binary.BigEndian.Uint32(b[8:12])
	}
	return h, b[n:], nil
}
