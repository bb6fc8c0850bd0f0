package dataplane

import (
	"math/big"
	"net/netip"

	"github.com/cyphonic/cyphonic-go/messages"
	"github.com/cyphonic/cyphonic-go/transport/seal"
)

// Messages to the peers manager.
type (
	// openPeer creates the peer (or updates it) as NMS directed. Ready,
	// if set, is called once the peer can take a handshake init (see
	// peerHandle.whenReady), or with the error that it will not.
	openPeer struct {
		Info  messages.PathInfo
		Ready func(error)
		// Answer: the path is NMS's answer to our own request (Open),
		// which NMS sends only once the peer acknowledged its Direction.
		Answer bool
		// Seq numbers the Open (Dataplane.opens): WaitUp waits for the
		// peer that has taken the latest one.
		Seq uint64
	}
	// closePeer stops the peer and forgets it.
	closePeer struct{ FQDN string }
	// updateEndpoints replaces the peer's candidate endpoints.
	updateEndpoints struct {
		FQDN      string
		Endpoints []netip.AddrPort
	}
	// rawInit is a handshake init from the wire (copied) that passed the
	// data plane's admission (mac1, and a cookie when busy); respond reads it.
	rawInit struct {
		Msg     []byte // the Noise message
		Sender  uint32
		From    netip.AddrPort
		Relayed bool
		// SourceProven: the init carried a valid mac2, so its sender
		// receives at From (it got our cookie there).
		SourceProven bool
		// WireLen is the init packet's length (header, Noise message and
		// MAC trailer): our response may not be longer.
		WireLen int
	}
)

// Messages to a peer actor (besides *batch, outbound packets).
type (
	// rawResponse is a handshake response from the wire (copied).
	rawResponse struct {
		Header  messages.HandshakeHeader
		Msg     []byte
		From    netip.AddrPort
		Relayed bool
	}
	// answeredInit is an init a handshake worker has read, checked and answered
	// (respond): Session is the new session under Index (published, not
	// yet confirmed), Resp the handshake response to send. The peer actor
	// decides whether to keep it.
	answeredInit struct {
		Session      *peerSession
		Index        uint32
		Resp         []byte
		PeerIndex    uint32
		From         netip.AddrPort
		Relayed      bool
		SourceProven bool
	}
	// updatePath replaces the peer's path; Ready (may be nil) is called
	// once the peer has taken it (see openPeer).
	updatePath struct {
		Info  messages.PathInfo
		Ready func(error)
	}
	// rebindRelays (to the manager, which passes it to every peer): our own
	// address may have moved, so every peer on a relay binds its side
	// there now rather than at its next keepalive.
	rebindRelays struct{}
	// Crash makes the peer fail as if a timer had expired (tests, and an
	// operator's "reset tunnel").
	Crash struct{ Reason string }
)

// Internal messages.
type (
	tick      struct{}
	confirmed struct{ s *peerSession }
	roamed    struct{ from netip.AddrPort }
	// lost: the peer answered our data on s with unknown-index (lost).
	lost struct{ s *peerSession }
	// finished is a handshake response a worker processed for our pending
	// initiator session: key on success, err if authenticated but refused.
	finished struct {
		pending *peerSession
		key     *seal.Keypair
		serial  *big.Int // the responder certificate's, for the deny list
		err     error
		from    netip.AddrPort
		relayed bool
	}
	// cookieTaken: a busy responder's cookie for our pending init opened.
	cookieTaken struct{ pending *peerSession }
)

// peerFailure is what a peer actor fails with; its supervisor restarts it.
type peerFailure struct {
	FQDN   string
	Reason string
}

func (f *peerFailure) Error() string { return "peer " + f.FQDN + ": " + f.Reason }
