package messages

import "encoding/binary"

// Relay framing, between a node and TRS:
//
//	TypeRelay | token (16) | inner packet
//
// The token is the one from the node's RelayTicket; TRS maps it to one side
// of a relay session and, if the packet comes from that side's bound
// endpoint (the source of its last authenticated RelayBind, below), forwards
// the inner packet, re-framed with the other side's token, to the other
// side's bound endpoint. A relay frame never moves an endpoint: the token is
// seen in clear by anyone on the path. The inner packet is an already
// end-to-end protected node <-> node packet (handshake, data, keepalive or
// probe); TRS never reads it.
//
// An empty inner packet parses, but TRS drops it: it is no bind.
const RelayHeaderLen = 1 + 16

// RelayToken names one side of a relay session.
type RelayToken [16]byte

// PutRelayHeader writes the relay header into b and returns RelayHeaderLen;
// the inner packet goes at b[RelayHeaderLen:]. It panics if b is too short.
func PutRelayHeader(b []byte, token RelayToken) int {
	_ = b[RelayHeaderLen-1]
	b[0] = byte(TypeRelay)
	copy(b[1:RelayHeaderLen], token[:])
	return RelayHeaderLen
}

// ParseRelay returns the token and the inner packet (a sub-slice of b, empty
// for a bind). The inner packet, if any, must start with a node <-> node
// packet type; relays do not nest. Errors are bare sentinels; it never allocates.
func ParseRelay(b []byte) (RelayToken, []byte, error) {
	if len(b) < RelayHeaderLen {
		return RelayToken{}, nil, ErrTruncated
	}
	if len(b) > MaxPacket {
		return RelayToken{}, nil, ErrTooLarge
	}
	if PacketType(b[0]) != TypeRelay {
		return RelayToken{}, nil, ErrBadType
	}
	inner := b[RelayHeaderLen:]
	if len(inner) > 0 && !PacketType(inner[0]).nodeToNode() {
		return RelayToken{}, nil, ErrBadType
	}
	return RelayToken(b[1:RelayHeaderLen]), inner, nil
}

// Relay bind, node -> TRS (TypeRelayBind):
//
//	TypeRelayBind | token (16) | counter (8) | MAC (16)
//
// A bind tells TRS where one side of a relay session is now: it is the only
// packet that moves a side's endpoint. The MAC is a keyed BLAKE2s-128 (see
// transport/relaybind) under that side's bind key, over the first
// RelayBindMACOffset bytes (type, token and counter); the key comes to the
// node in its RelayTicket over sealed signaling and to TRS in the
// RelayAlloc, and never crosses the network in clear. The counter must be
// greater than the last one TRS accepted for that side, so a recorded bind
// sent again later, from anywhere, moves nothing. Nodes use a strictly
// increasing count seeded from the wall clock (unix nanoseconds), so it
// keeps increasing across restarts of the peer without any stored state.
//
// TRS never answers a bind: it is not a reflector. A relay frame with an
// empty inner packet, which was the unauthenticated bind before this
// format, is dropped and moves nothing.
const (
	RelayBindLen       = 1 + 16 + 8 + RelayBindMACLen
	RelayBindMACOffset = 1 + 16 + 8
	RelayBindMACLen    = 16
)

// RelayBind is a parsed bind. The MAC is checked by its receiver, which
// knows the key; ParseRelayBind only checks the layout.
type RelayBind struct {
	Token   RelayToken
	Counter uint64
	MAC     [RelayBindMACLen]byte
}

// PutRelayBindHeader writes the type, token and counter of a bind into b
// and returns RelayBindMACOffset; the MAC goes at b[RelayBindMACOffset:].
// It panics if b is shorter than RelayBindLen.
func PutRelayBindHeader(b []byte, token RelayToken, counter uint64) int {
	_ = b[RelayBindLen-1]
	b[0] = byte(TypeRelayBind)
	copy(b[1:17], token[:])
	binary.BigEndian.PutUint64(b[17:RelayBindMACOffset], counter)
	return RelayBindMACOffset
}

// ParseRelayBind parses a bind of exactly RelayBindLen bytes. Errors are
// bare sentinels; it never allocates.
func ParseRelayBind(b []byte) (RelayBind, error) {
	switch {
	case len(b) < RelayBindLen:
		return RelayBind{}, ErrTruncated
	case len(b) > RelayBindLen:
		return RelayBind{}, ErrTooLarge
	case PacketType(b[0]) != TypeRelayBind:
		return RelayBind{}, ErrBadType
	}
	var m RelayBind
	copy(m.Token[:], b[1:17])
	m.Counter = binary.BigEndian.Uint64(b[17:RelayBindMACOffset])
	copy(m.MAC[:], b[RelayBindMACOffset:])
	return m, nil
}
