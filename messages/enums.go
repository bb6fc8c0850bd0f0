package messages

import (
	"fmt"
	"strconv"
	"strings"
)

// MsgType says which body an Envelope carries.
type MsgType uint8

const (
	MsgLoginRequest    MsgType = 1  // node -> AS (payload of Noise message 1)
	MsgLoginReply      MsgType = 2  // AS -> node (payload of Noise message 2)
	MsgKeyHandover     MsgType = 3  // AS -> NMS: the node's session keys
	MsgKeyHandoverAck  MsgType = 4  // NMS -> AS
	MsgRegister        MsgType = 5  // node -> NMS: locator
	MsgRegisterReply   MsgType = 6  // NMS -> node
	MsgTunnelRequest   MsgType = 7  // node -> NMS: "I want to talk to bob"
	MsgDirection       MsgType = 8  // NMS -> peer: expect / set up this tunnel
	MsgDirectionAck    MsgType = 9  // peer -> NMS
	MsgPath            MsgType = 10 // NMS -> requester: the path to use
	MsgRelayAlloc      MsgType = 11 // NMS -> TRS: allocate a relay session
	MsgRelayAllocReply MsgType = 12 // TRS -> NMS
	MsgKeepalive       MsgType = 13 // node -> NMS
	MsgKeepaliveAck    MsgType = 14 // NMS -> node
	MsgLogout          MsgType = 15 // node -> cloud
	MsgLogoutAck       MsgType = 16 // cloud -> node
	MsgPeerUpdate      MsgType = 17 // NMS -> node: a peer moved
	MsgPeerUpdateAck   MsgType = 18 // node -> NMS
	MsgError           MsgType = 19 // any response that failed
	MsgDenyList        MsgType = 20 // NMS -> node: the CA-signed deny list (CRL)
	MsgDenyListAck     MsgType = 21 // node -> NMS
	// The login's second round (issue 9): numbered apart from the block
	// above so that types added elsewhere meanwhile cannot take the same
	// values.
	MsgLoginChallenge MsgType = 32 // AS -> node (payload of Noise message 2): prove your key
	MsgLoginConfirm   MsgType = 33 // node -> AS, sealed on the new session: the proof
	// A tunnel on the first packet (issue 10), numbered apart as well.
	MsgTunnelByVIP MsgType = 40 // node -> NMS: "I want to talk to whoever holds this VIP"
	// Reverse lookups (PTR for a VIP, issue 13): a lookup only, no tunnel.
	MsgVIPLookup MsgType = 41 // node -> NMS: "who holds this VIP?"
	MsgVIPHolder MsgType = 42 // NMS -> node: the holder's FQDN
	// Stateless relay tickets with the TRS in another process (issue 14),
	// numbered apart as well.
	MsgRelayKey      MsgType = 50 // NMS -> TRS: the key to mint your relay tickets under
	MsgRelayKeyReply MsgType = 51 // TRS -> NMS
)

var msgTypeNames = [...]string{
	MsgLoginRequest:    "login-request",
	MsgLoginReply:      "login-reply",
	MsgKeyHandover:     "key-handover",
	MsgKeyHandoverAck:  "key-handover-ack",
	MsgRegister:        "register",
	MsgRegisterReply:   "register-reply",
	MsgTunnelRequest:   "tunnel-request",
	MsgDirection:       "direction",
	MsgDirectionAck:    "direction-ack",
	MsgPath:            "path",
	MsgRelayAlloc:      "relay-alloc",
	MsgRelayAllocReply: "relay-alloc-reply",
	MsgKeepalive:       "keepalive",
	MsgKeepaliveAck:    "keepalive-ack",
	MsgLogout:          "logout",
	MsgLogoutAck:       "logout-ack",
	MsgPeerUpdate:      "peer-update",
	MsgPeerUpdateAck:   "peer-update-ack",
	MsgError:           "error",
	MsgDenyList:        "deny-list",
	MsgDenyListAck:     "deny-list-ack",
	MsgLoginChallenge:  "login-challenge",
	MsgLoginConfirm:    "login-confirm",
	MsgTunnelByVIP:     "tunnel-by-vip",
	MsgVIPLookup:       "vip-lookup",
	MsgVIPHolder:       "vip-holder",
	MsgRelayKey:        "relay-key",
	MsgRelayKeyReply:   "relay-key-reply",
}

// Valid reports whether t is a message type this package defines.
func (t MsgType) Valid() bool { return int(t) < len(msgTypeNames) && msgTypeNames[t] != "" }

func (t MsgType) String() string {
	if t.Valid() {
		return msgTypeNames[t]
	}
	return "MsgType(" + strconv.Itoa(int(t)) + ")"
}

// NATType is what NMS concluded about the NAT in front of a node, from the
// mappings it and the second observation point saw.
type NATType uint8

const (
	NATUnknown NATType = 0 // not enough observations yet
	// NATNone: the observed address is one of the node's own addresses.
	NATNone NATType = 1
	// NATEndpointIndependent: both observation points saw the same mapping
	// (full/restricted cone); hole punching works.
	NATEndpointIndependent NATType = 2
	// NATSymmetric: the observation points saw different mappings
	// (endpoint-dependent mapping); a relay is needed.
	NATSymmetric NATType = 3
)

var natTypeNames = [...]string{"unknown", "none", "endpoint-independent", "symmetric"}

func (t NATType) Valid() bool { return int(t) < len(natTypeNames) }

func (t NATType) String() string {
	if t.Valid() {
		return natTypeNames[t]
	}
	return "NATType(" + strconv.Itoa(int(t)) + ")"
}

// PathKind is how two nodes reach each other.
type PathKind uint8

const (
	PathDirect    PathKind = 1 // the peer is reachable at one of the endpoints as is
	PathHolePunch PathKind = 2 // both sides probe each other's public mapping at once
	PathRelay     PathKind = 3 // through TRS, with a RelayTicket
)

var pathKindNames = [...]string{PathDirect: "direct", PathHolePunch: "hole-punch", PathRelay: "relay"}

func (k PathKind) Valid() bool { return k >= PathDirect && int(k) < len(pathKindNames) }

func (k PathKind) String() string {
	if k.Valid() {
		return pathKindNames[k]
	}
	return "PathKind(" + strconv.Itoa(int(k)) + ")"
}

// ErrorCode classifies an Error body. Decoders accept any value so that a
// newer cloud can add codes; receivers treat codes they do not know as
// CodeUnknown.
type ErrorCode uint16

const (
	CodeUnknown          ErrorCode = 0
	CodeBadRequest       ErrorCode = 1
	CodeNotAuthenticated ErrorCode = 2
	CodeCertExpired      ErrorCode = 3
	CodeCertNotYetValid  ErrorCode = 4
	CodeCertUnknownCA    ErrorCode = 5
	CodeCertRevoked      ErrorCode = 6
	CodeCertFQDNMismatch ErrorCode = 7
	CodeSessionExpired   ErrorCode = 8
	CodeUnknownFQDN      ErrorCode = 9
	CodePeerUnreachable  ErrorCode = 10
	CodeNoRelay          ErrorCode = 11
	CodeVIPExhausted     ErrorCode = 12
	CodeInternal         ErrorCode = 13
	CodeRateLimited      ErrorCode = 14
)

var errorCodeNames = [...]string{
	CodeUnknown:          "unknown",
	CodeBadRequest:       "bad-request",
	CodeNotAuthenticated: "not-authenticated",
	CodeCertExpired:      "cert-expired",
	CodeCertNotYetValid:  "cert-not-yet-valid",
	CodeCertUnknownCA:    "cert-unknown-ca",
	CodeCertRevoked:      "cert-revoked",
	CodeCertFQDNMismatch: "cert-fqdn-mismatch",
	CodeSessionExpired:   "session-expired",
	CodeUnknownFQDN:      "unknown-fqdn",
	CodePeerUnreachable:  "peer-unreachable",
	CodeNoRelay:          "no-relay",
	CodeVIPExhausted:     "vip-exhausted",
	CodeInternal:         "internal",
	CodeRateLimited:      "rate-limited",
}

// Known reports whether c is a code this package defines.
func (c ErrorCode) Known() bool { return int(c) < len(errorCodeNames) }

func (c ErrorCode) String() string {
	if c.Known() {
		return errorCodeNames[c]
	}
	return "ErrorCode(" + strconv.Itoa(int(c)) + ")"
}

// The enums that reach JSON (status, the debug endpoint) marshal as their
// names, as the terminal tables print them; the wire keeps the numbers
// (every body has a hand-written msgpack codec).

// MarshalText names k ("direct", "hole-punch", "relay"); the zero kind, a
// peer with no path yet, is "".
func (k PathKind) MarshalText() ([]byte, error) {
	if k == 0 {
		return nil, nil
	}
	return []byte(k.String()), nil
}

// UnmarshalText is MarshalText's inverse.
func (k *PathKind) UnmarshalText(b []byte) error {
	v, err := parseEnumText(pathKindNames[:], "PathKind", 8, b)
	*k = PathKind(v)
	return err
}

// MarshalText names t ("unknown", "none", "endpoint-independent", "symmetric").
func (t NATType) MarshalText() ([]byte, error) { return []byte(t.String()), nil }

// UnmarshalText is MarshalText's inverse.
func (t *NATType) UnmarshalText(b []byte) error {
	v, err := parseEnumText(natTypeNames[:], "NATType", 8, b)
	*t = NATType(v)
	return err
}

// MarshalText names c ("cert-expired", ...).
func (c ErrorCode) MarshalText() ([]byte, error) { return []byte(c.String()), nil }

// UnmarshalText is MarshalText's inverse.
func (c *ErrorCode) UnmarshalText(b []byte) error {
	v, err := parseEnumText(errorCodeNames[:], "ErrorCode", 16, b)
	*c = ErrorCode(v)
	return err
}

// MarshalText names t ("login-request", ...).
func (t MsgType) MarshalText() ([]byte, error) { return []byte(t.String()), nil }

// UnmarshalText is MarshalText's inverse.
func (t *MsgType) UnmarshalText(b []byte) error {
	v, err := parseEnumText(msgTypeNames[:], "MsgType", 8, b)
	*t = MsgType(v)
	return err
}

// parseEnumText reads what an enum's String wrote: one of names (its index),
// "" (zero), or the "Type(N)" form of a value without a name that fits in
// bits.
func parseEnumText(names []string, typ string, bits int, b []byte) (int, error) {
	s := string(b)
	if s == "" {
		return 0, nil
	}
	for i, n := range names {
		if n != "" && n == s {
			return i, nil
		}
	}
	if inner, ok := strings.CutPrefix(s, typ+"("); ok {
		if num, ok := strings.CutSuffix(inner, ")"); ok {
			if v, err := strconv.ParseUint(num, 10, bits); err == nil {
				return int(v), nil
			}
		}
	}
	return 0, fmt.Errorf("messages: %q is not a %s", s, typ)
}
