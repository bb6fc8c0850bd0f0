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

// An init ends in a MAC trailer, after its Noise message (WireGuard's mac1
// and mac2; transport/cookie computes and checks them):
//
//	init | mac1 (16) | mac2 (16)
//
// mac1 covers the init packet before it, mac2 the packet and mac1. The
// trailer is inside the init packet rather than in a packet of a new type
// because a MAC is useful only if every init must carry one: a responder
// accepts no init without a valid mac1, so there is no unauthenticated form
// to fall back to. SplitInitTrailer takes it off before ParseHandshake.
const HandshakeTrailerLen = 32

// SplitInitTrailer returns an init packet without its MAC trailer, and the
// trailer. The packet without it must still hold a header and a Noise
// message. It never allocates.
func SplitInitTrailer(b []byte) (pkt, trailer []byte, err error) {
	if len(b) > MaxPacket {
		return nil, nil, ErrTooLarge
	}
	if len(b) <= HandshakeInitHeaderLen+HandshakeTrailerLen {
		return nil, nil, ErrTruncated
	}
	n := len(b) - HandshakeTrailerLen
	return b[:n], b[n:], nil
}

// Cookie reply: a responder that is busy answers an init that lacks a valid
// mac2 with this instead of running the handshake (transport/cookie).
//
//	TypeCookieReply | reserved (3) | receiver index (4) | nonce (24) | encrypted cookie (16) | tag (16)
//
// The receiver index is the init's sender index, so the initiator finds its
// pending handshake. At 64 bytes it is smaller than any init it answers.
const (
	CookieReplyHeaderLen = 8
	CookieReplyBodyLen   = 56
	CookieReplyLen       = CookieReplyHeaderLen + CookieReplyBodyLen
)

// PutCookieReplyHeader writes the header of a cookie reply to receiver into
// b and returns CookieReplyHeaderLen; the body goes at b[CookieReplyHeaderLen:].
// It panics if b is shorter (a caller bug).
func PutCookieReplyHeader(b []byte, receiver uint32) int {
	_ = b[CookieReplyHeaderLen-1]
	b[0] = byte(TypeCookieReply)
	b[1], b[2], b[3] = 0, 0, 0
	binary.BigEndian.PutUint32(b[4:8], receiver)
	return CookieReplyHeaderLen
}

// ParseCookieReply returns a cookie reply's receiver index and body (a
// sub-slice of b). Errors are bare sentinels; it never allocates.
func ParseCookieReply(b []byte) (receiver uint32, body []byte, err error) {
	if len(b) == 0 {
		return 0, nil, ErrTruncated
	}
	if PacketType(b[0]) != TypeCookieReply {
		return 0, nil, ErrBadType
	}
	if len(b) < CookieReplyLen {
		return 0, nil, ErrTruncated
	}
	if len(b) > CookieReplyLen {
		return 0, nil, ErrTooLarge
	}
	if b[1] != 0 || b[2] != 0 || b[3] != 0 {
		return 0, nil, ErrReserved
	}
	return binary.BigEndian.Uint32(b[4:8]), b[CookieReplyHeaderLen:], nil
}
