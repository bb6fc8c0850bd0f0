package peer

import (
	"net/netip"

	"github.com/cyphonic/cyphonic-go/messages"
	"github.com/cyphonic/cyphonic-go/transport/handshake"
)

// Messages to the peers manager.
type (
	// Open creates the peer (or updates it) as NMS directed.
	Open struct{ Info messages.PathInfo }
	// Close stops the peer and forgets it.
	Close struct{ FQDN string }
	// UpdateEndpoints replaces the peer's candidate endpoints.
	UpdateEndpoints struct {
		FQDN      string
		Endpoints []netip.AddrPort
	}
	// RawInit is a handshake init from the wire (copied); the manager reads
	// it to learn who sent it, then passes it to that peer.
	RawInit struct {
		Msg     []byte // the Noise message
		Sender  uint32
		From    netip.AddrPort
		Relayed bool
	}
)

// Messages to a peer actor (besides *batch.Batch, outbound packets).
type (
	// Response is a handshake response from the wire (copied).
	Response struct {
		Header  messages.HandshakeHeader
		Msg     []byte
		From    netip.AddrPort
		Relayed bool
	}
	// Init is a handshake init the manager has read and checked.
	Init struct {
		Responder *handshake.Responder
		From      netip.AddrPort
		Relayed   bool
	}
	// Update replaces the peer's path.
	Update struct{ Info messages.PathInfo }
	// Rebind (to the manager, which passes it to every peer): our own
	// address may have moved, so every peer on a relay binds its side
	// there now rather than at its next keepalive.
	Rebind struct{}
	// Crash makes the peer fail as if a timer had expired (tests, and an
	// operator's "reset tunnel").
	Crash struct{ Reason string }
)

// Internal messages.
type (
	tick      struct{}
	confirmed struct{ s *Session }
	roamed    struct{ from netip.AddrPort }
)

// Failure is what a peer actor fails with; its supervisor restarts it.
type Failure struct {
	FQDN   string
	Reason string
}

func (f *Failure) Error() string { return "peer " + f.FQDN + ": " + f.Reason }
