package admin

import (
	"net/netip"
	"time"
)

// SocketName is the admin socket's name in the cloud's data directory.
const SocketName = "admin.sock"

// Node is what the channel tells about one node: the registry's record and,
// when this process's NMS holds its session, that session's live state.
type Node struct {
	FQDN string     `json:"fqdn"`
	VIP6 netip.Addr `json:"vip6"`
	VIP4 netip.Addr `json:"vip4"`
	// Observed4/6 are the public mappings NMS saw (the address and port
	// the node's packets come from, after its NATs); Locals what the node
	// declared.
	Observed4 netip.AddrPort   `json:"observed4"`
	Observed6 netip.AddrPort   `json:"observed6"`
	Locals    []netip.AddrPort `json:"locals,omitempty"`
	NAT4      string           `json:"nat4"`
	NAT6      string           `json:"nat6"`
	// Online: the node has a session. Live: this process's NMS holds it
	// (else Online comes from the registry: a session another NMS holds,
	// or NMS does not run here).
	Online bool `json:"online"`
	Live   bool `json:"live"`
	// Session is the session ID (0: none); SessionExpires its end.
	Session        uint32    `json:"session,omitempty"`
	SessionExpires time.Time `json:"session_expires,omitzero"`
	// LastSeen is the node's last authenticated packet (Live), or else the
	// last time an NMS wrote its record: its registration or its last
	// move. Keepalives from an unchanged mapping are not written (they cost
	// no store call), so for a node homed at another cloud process this is
	// when its mapping last changed, not its last keepalive. From is the
	// address the Live packet came from.
	LastSeen     time.Time      `json:"last_seen,omitzero"`
	From         netip.AddrPort `json:"from,omitzero"`
	CertSerial   string         `json:"cert_serial"`
	CertNotAfter time.Time      `json:"cert_not_after,omitzero"`
	HomeNMS      string         `json:"home_nms,omitempty"`
}

// Ended is the answer to an end-session request.
type Ended struct {
	FQDN    string `json:"fqdn"`
	Session uint32 `json:"session"`
}

// apiError is the body of every refusal.
type apiError struct {
	Error string `json:"error"`
	Code  string `json:"code"` // one of the code* constants
}

const (
	codeUnknownNode = "unknown-node"
	codeNoSession   = "no-session"
	codeNoNMS       = "no-nms"
	codeInternal    = "internal"
)
