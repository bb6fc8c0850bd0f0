package relay

import "strconv"

// DropReason says why Forward refused a packet. Every drop is counted by
// reason in Stats.
type DropReason uint8

const (
	// DropNone: the packet was forwarded.
	DropNone DropReason = iota
	// DropUnknownToken: no live session has this token (never allocated,
	// expired and swept, or released).
	DropUnknownToken
	// DropExpired: the session's ticket has expired; it is swept by the
	// next Expire.
	DropExpired
	// DropPeerUnknown: the other side has not sent anything yet, so there
	// is no endpoint to forward to. The sender's endpoint is still learnt.
	DropPeerUnknown
	// DropBadSource: the source address cannot be answered (invalid,
	// port 0, unspecified, multicast) or is one of the relay's own.
	DropBadSource

	// NumDropReasons sizes arrays indexed by DropReason.
	NumDropReasons = int(DropBadSource) + 1
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
	}
	return "drop(" + strconv.Itoa(int(r)) + ")"
}
