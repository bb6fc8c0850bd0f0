package messages

import "encoding/binary"

// Sealed signaling packet, node <-> cloud after login:
//
//	TypeSignaling | session ID (4) | nonce (24) | XChaCha20-Poly1305(envelope)
//
// This package only frames it; the caller seals and opens. Bytes
// [0:SignalingAADLen] (type and session ID) are the AEAD's additional data;
// the nonce is the AEAD nonce (random, which XChaCha20's 24 bytes make safe).
// The plaintext is an encoded Envelope.
const (
	SignalingAADLen    = 1 + 4
	SignalingNonceLen  = 24
	SignalingHeaderLen = SignalingAADLen + SignalingNonceLen
	// MaxSignalingPacket is the largest sealed signaling packet accepted.
	MaxSignalingPacket = SignalingHeaderLen + MaxEnvelopeLen + AEADOverhead
)

// SignalingHeader is the cleartext header of a sealed signaling packet.
type SignalingHeader struct {
	SessionID uint32 // from LoginReply; selects the session key
	Nonce     [SignalingNonceLen]byte
}

// Put writes h into b[:SignalingHeaderLen] and returns SignalingHeaderLen;
// the ciphertext goes at b[SignalingHeaderLen:]. It panics if b is too short.
func (h SignalingHeader) Put(b []byte) int {
	_ = b[SignalingHeaderLen-1]
	b[0] = byte(TypeSignaling)
	binary.BigEndian.PutUint32(b[1:5], h.SessionID)
	copy(b[SignalingAADLen:SignalingHeaderLen], h.Nonce[:])
	return SignalingHeaderLen
}

// ParseSignaling returns the header and the ciphertext (a sub-slice of b, at
// least AEADOverhead long). Errors are bare sentinels; it never allocates.
func ParseSignaling(b []byte) (SignalingHeader, []byte, error) {
	if len(b) < SignalingHeaderLen+AEADOverhead {
		return SignalingHeader{}, nil, ErrTruncated
	}
	if len(b) > MaxSignalingPacket {
		return SignalingHeader{}, nil, ErrTooLarge
	}
	if PacketType(b[0]) != TypeSignaling {
		return SignalingHeader{}, nil, ErrBadType
	}
	return SignalingHeader{
		SessionID: binary.BigEndian.Uint32(b[1:5]),
		Nonce:     [SignalingNonceLen]byte(b[SignalingAADLen:SignalingHeaderLen]),
	}, b[SignalingHeaderLen:], nil
}

// Login packets carry one Noise handshake message each, after the type byte:
//
//	TypeLogin | Noise message 1       (node -> AS; its payload is an encoded
//	                                   Envelope with a LoginRequest body,
//	                                   padded to LoginMinLen)
//	TypeLoginReply | Noise message 2  (AS -> node; payload: Envelope with a
//	                                   LoginChallenge or Error body, same ID)
//
// The node then proves its key with a LoginConfirm sealed on the new
// session (a TypeSignaling packet, padded to LoginMinLen) and the AS
// answers it with the LoginReply, sealed (see transport/signaling).
const LoginHeaderLen = 1

// A login packet ends in the trailer of transport/cookie, keyed by the AS's
// name (pki.RoleAS.ServiceFQDN()):
//
//	TypeLogin | Noise message 1 | mac1 (16) | mac2 (16)
//
// mac1 lets the AS drop, before any work, packets not made for an AS; mac2,
// zero unless the node holds a cookie, proves the node receives at its
// source address. An AS under load answers a login without a valid mac2
// with a TypeLoginCookie (below) instead of a challenge, and keeps no state
// for it: a flood from spoofed sources then costs it a MAC and a small
// reply per packet, never a Diffie-Hellman or a slot.
const LoginTrailerLen = 32

// ParseLogin returns the Noise message of a TypeLogin packet, without its
// trailer.
func ParseLogin(b []byte) ([]byte, error) {
	msg, err := parseLogin(b, TypeLogin)
	if err != nil {
		return nil, err
	}
	if len(msg) <= LoginTrailerLen {
		return nil, ErrTruncated
	}
	return msg[:len(msg)-LoginTrailerLen], nil
}

// Login cookie: a loaded AS's answer to a login without a valid mac2.
//
//	TypeLoginCookie | reserved (3) | nonce (24) | encrypted cookie (16) | tag (16)
//
// The body is transport/cookie's reply, bound to the login's mac1. At 60
// bytes it is a twentieth of the login it answers.
const (
	LoginCookieHeaderLen = 4
	LoginCookieBodyLen   = 56
	LoginCookieLen       = LoginCookieHeaderLen + LoginCookieBodyLen
)

// PutLoginCookieHeader writes a login cookie's header into b and returns
// LoginCookieHeaderLen; the body goes at b[LoginCookieHeaderLen:]. It
// panics if b is shorter (a caller bug).
func PutLoginCookieHeader(b []byte) int {
	_ = b[LoginCookieHeaderLen-1]
	b[0] = byte(TypeLoginCookie)
	b[1], b[2], b[3] = 0, 0, 0
	return LoginCookieHeaderLen
}

// ParseLoginCookie returns a login cookie's body (a sub-slice of b). Errors
// are bare sentinels; it never allocates.
func ParseLoginCookie(b []byte) ([]byte, error) {
	switch {
	case len(b) == 0:
		return nil, ErrTruncated
	case PacketType(b[0]) != TypeLoginCookie:
		return nil, ErrBadType
	case len(b) < LoginCookieLen:
		return nil, ErrTruncated
	case len(b) > LoginCookieLen:
		return nil, ErrTooLarge
	case b[1] != 0 || b[2] != 0 || b[3] != 0:
		return nil, ErrReserved
	}
	return b[LoginCookieHeaderLen:], nil
}

// ParseLoginReply returns the Noise message of a TypeLoginReply packet.
func ParseLoginReply(b []byte) ([]byte, error) { return parseLogin(b, TypeLoginReply) }

func parseLogin(b []byte, t PacketType) ([]byte, error) {
	if len(b) <= LoginHeaderLen {
		return nil, ErrTruncated
	}
	if len(b) > MaxPacket {
		return nil, ErrTooLarge
	}
	if PacketType(b[0]) != t {
		return nil, ErrBadType
	}
	return b[LoginHeaderLen:], nil
}
