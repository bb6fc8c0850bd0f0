package dataplane

import (
	"net/netip"
	"time"

	"github.com/cyphonic/cyphonic-go/actors/supervise"
	"github.com/cyphonic/cyphonic-go/messages"
)

// Peer states as PeerStatus.State shows them. A failed peer's state is
// StateFailed followed by ": " and the reason.
const (
	StateHandshaking = "handshaking" // no usable session yet
	StateUp          = "up"          // a confirmed session carries data
	StateBackoff     = "backoff"     // failed; its supervisor restarts it after a delay
	StateFailed      = "failed"      // gave up after too many failures (or Close)
)

// PeerStatus is a snapshot of one peer connection, for `cyphonic status`, the
// debug endpoint and metrics. It is plain data (encodes to JSON).
type PeerStatus struct {
	FQDN          string            `json:"fqdn"`
	VIP6          netip.Addr        `json:"vip6"`
	VIP4          netip.Addr        `json:"vip4"`
	Path          messages.PathKind `json:"path,omitempty"`
	Endpoint      netip.AddrPort    `json:"endpoint"` // where data goes now (TRS for a relayed path)
	LastHandshake time.Time         `json:"last_handshake,omitzero"`
	// Handshakes counts completed handshakes (rekeys included),
	// HandshakeTimeouts the attempt series that got no answer in time.
	Handshakes        uint64 `json:"handshakes"`
	HandshakeTimeouts uint64 `json:"handshake_timeouts"`
	// Primers counts the low-TTL packets that opened our NAT mapping
	// toward a hole-punched endpoint before full inits went there.
	Primers   uint64            `json:"primers,omitempty"`
	Cipher    string            `json:"cipher,omitempty"` // the data suite the last handshake negotiated
	TxBytes   uint64            `json:"tx_bytes"`
	RxBytes   uint64            `json:"rx_bytes"`
	TxPackets uint64            `json:"tx_packets"`
	RxPackets uint64            `json:"rx_packets"`
	Drops     map[string]uint64 `json:"drops,omitempty"` // by reason (Reason names)
	// Lost is the packets the peer sent that never reached the replay
	// window: lost on the way, or shed here before authentication (those
	// count as drops too, and in Unopened). Gaps in its counters count
	// once they are too old to come (replay.Window.Lost), so Lost lags.
	Lost uint64 `json:"lost"`
	// Unopened is the peer's packets shed here before authentication:
	// Lost - Unopened is what was lost on the way.
	Unopened uint64 `json:"unopened"`
	Restarts int    `json:"restarts"`
	State    string `json:"state"`
	// Queues are the peer's in-flight bounds ("out": TUN to socket, "in":
	// socket to TUN), whose full slots are its queue-full drops.
	Queues []supervise.Queue `json:"queues,omitempty"`
}
