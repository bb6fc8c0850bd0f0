package messages

import "strconv"

// PacketType is the first byte of every UDP payload.
type PacketType uint8

const (
	TypeSignaling     PacketType = 1  // sealed signaling envelope, node <-> cloud after login
	TypeLogin         PacketType = 2  // node -> AS, login handshake message 1
	TypeLoginReply    PacketType = 3  // AS -> node, login handshake message 2
	TypeHandshakeInit PacketType = 4  // node <-> node Noise handshake, initiator
	TypeHandshakeResp PacketType = 5  // node <-> node Noise handshake, responder
	TypeData          PacketType = 6  // node <-> node sealed inner packet
	TypeRelay         PacketType = 7  // node <-> TRS, wraps a node <-> node packet
	TypeProbe         PacketType = 8  // hole punching / NAT mapping discovery
	TypeProbeReply    PacketType = 9  // answer to a probe with the observed address
	TypeKeepalive     PacketType = 10 // node <-> node, data header with an empty payload
	TypeRelayBind     PacketType = 11 // node -> TRS, authenticated bind of one relay side (relay.go)
	TypeCookieReply   PacketType = 12 // node <-> node, a busy responder's answer to an init (handshake.go)
	TypeUnknownIndex  PacketType = 13 // node <-> node, "no session has this receiver index" (unknown.go)
	TypeLoginCookie   PacketType = 14 // AS -> node, a loaded AS's answer to a login without a valid mac2 (signaling.go)
)

var packetTypeNames = [...]string{
	TypeSignaling:     "signaling",
	TypeLogin:         "login",
	TypeLoginReply:    "login-reply",
	TypeHandshakeInit: "handshake-init",
	TypeHandshakeResp: "handshake-resp",
	TypeData:          "data",
	TypeRelay:         "relay",
	TypeProbe:         "probe",
	TypeProbeReply:    "probe-reply",
	TypeKeepalive:     "keepalive",
	TypeRelayBind:     "relay-bind",
	TypeCookieReply:   "cookie-reply",
	TypeUnknownIndex:  "unknown-index",
	TypeLoginCookie:   "login-cookie",
}

// Valid reports whether t is a packet type this package defines.
func (t PacketType) Valid() bool {
	return int(t) < len(packetTypeNames) && packetTypeNames[t] != ""
}

func (t PacketType) String() string {
	if t.Valid() {
		return packetTypeNames[t]
	}
	return "PacketType(" + strconv.Itoa(int(t)) + ")"
}

// PeekType returns the type byte of a UDP payload, for dispatch before parsing.
func PeekType(b []byte) (PacketType, error) {
	if len(b) == 0 {
		return 0, ErrTruncated
	}
	t := PacketType(b[0])
	if !t.Valid() {
		return t, ErrBadType
	}
	return t, nil
}

// nodeToNode reports whether t may travel between two nodes, and therefore
// inside a relay packet.
func (t PacketType) nodeToNode() bool {
	switch t {
	case TypeHandshakeInit, TypeHandshakeResp, TypeData, TypeKeepalive, TypeProbe, TypeProbeReply, TypeCookieReply, TypeUnknownIndex:
		return true
	}
	return false
}
