package messages

// Relay framing, between a node and TRS:
//
//	TypeRelay | token (16) | inner packet
//
// The token is the one from the node's RelayTicket; TRS maps it to one side
// of a relay session, learns that side's address from the packet's source,
// and forwards the inner packet, re-framed with the other side's token, to the
// other side. The inner packet is an already end-to-end protected node <->
// node packet (handshake, data, keepalive or probe); TRS never reads it.
//
// An empty inner packet is a bind: it tells TRS where this side is (and keeps
// the NAT mapping towards TRS open) and is not forwarded.
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
