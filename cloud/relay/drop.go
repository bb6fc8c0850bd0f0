package relay

import "strconv"

// DropReason says why Forward refused a packet. Every drop is counted by
// reason in Stats.
type DropReason uint8

const (
	// DropNone: the packet was forwarded, or the bind accepted.
	DropNone DropReason = iota
	// DropUnknownToken: no live session has this token (never allocated,
	// expired and swept, or released).
	DropUnknownToken
	// DropExpired: the session's ticket has expired; it is swept by the
	// next Expire.
	DropExpired
	// DropPeerUnknown: the other side has not bound yet, so there is no
	// endpoint to forward to.
	DropPeerUnknown
	// DropBadSource: the source address cannot be answered (invalid,
	// port 0, unspecified, multicast) or is one of the relay's own.
	DropBadSource
	// DropBadBind: a bind that is malformed or whose MAC is wrong (made
	// without the side's bind key), or an empty relay frame (the old,
	// unauthenticated bind). It moves nothing.
	DropBadBind
	// DropReplay: a bind with a valid MAC whose counter is not above the
	// last one accepted for its side: a recorded bind sent again. It
	// moves nothing.
	DropReplay
	// DropNotBound: a relay frame from an address that is not its side's
	// bound endpoint (the source of its last accepted bind). Only a bind
	// moves an endpoint; the token alone, seen in clear on the wire,
	// proves nothing.
	DropNotBound
	// DropMalformed: a packet on the relay port that is neither a relay
	// frame nor a bind (too short, another type, an inner packet that is
	// not node-to-node). Counted by the TRS (Table.CountDrop).
	DropMalformed
	// DropFull: a genuine first bind of a stateless ticket's side found
	// the table full (Config.MaxSessions). Nothing was kept.
	DropFull
	// DropOwnerFull: a genuine first bind of a stateless ticket's side
	// whose node (owner ID) already holds Config.MaxPerOwner bound sides.
	// Nothing was kept: one node cannot fill the table.
	DropOwnerFull

	// NumDropReasons sizes arrays indexed by DropReason.
	NumDropReasons = int(DropOwnerFull) + 1
)

func (r DropReason) String() string {
	switch r {
	case DropNone:
		return "none"
	case DropUnknownToken:
		return "unknown-token"
	case DropExpired:
		return "expired"
	case DropPeerUnknown:
		return "peer-unknown"
	case DropBadSource:
		return "bad-source"
	case DropBadBind:
		return "bad-bind"
	case DropReplay:
		return "replay"
	case DropNotBound:
		return "not-bound"
	case DropMalformed:
		return "malformed"
	case DropFull:
		return "table-full"
	case DropOwnerFull:
		return "owner-full"
	}
	return "drop(" + strconv.Itoa(int(r)) + ")"
}
