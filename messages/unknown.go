package messages

import "encoding/binary"

// UnknownIndexLen is the length of an unknown-index answer.
const UnknownIndexLen = 16

// UnknownIndex is what a node answers a data packet whose receiver index
// names no session (it restarted and lost its sessions):
//
//	TypeUnknownIndex | reserved (3, zero) | receiver index (4) | counter (8)
//
// It echoes the receiver index and counter of the data packet it answers,
// so only someone who saw that packet can forge one; it carries no other
// authentication (the answering node has no key the sender knows), so a
// sender may take it only as a hint to set up a new session beside its
// live one, never to end that one. At 16 bytes it is smaller than any data
// packet (DataHeaderLen+AEADOverhead at least).
type UnknownIndex struct {
	Receiver uint32 // the receiver index the data packet carried
	Counter  uint64 // its counter
}

// Put writes u into b[:UnknownIndexLen]; it panics if b is shorter (a bug
// in the caller's buffer sizing, never a property of network input).
func (u UnknownIndex) Put(b []byte) {
	_ = b[UnknownIndexLen-1]
	b[0] = byte(TypeUnknownIndex)
	b[1], b[2], b[3] = 0, 0, 0
	binary.BigEndian.PutUint32(b[4:8], u.Receiver)
	binary.BigEndian.PutUint64(b[8:16], u.Counter)
}

// ParseUnknownIndex parses an unknown-index answer. It returns the bare
// sentinels ErrTruncated, ErrTooLarge, ErrBadType or ErrReserved, so it
// never allocates.
func ParseUnknownIndex(b []byte) (UnknownIndex, error) {
	switch {
	case len(b) < UnknownIndexLen:
		return UnknownIndex{}, ErrTruncated
	case len(b) > UnknownIndexLen:
		return UnknownIndex{}, ErrTooLarge
	case PacketType(b[0]) != TypeUnknownIndex:
		return UnknownIndex{}, ErrBadType
	case b[1] != 0 || b[2] != 0 || b[3] != 0:
		return UnknownIndex{}, ErrReserved
	}
	return UnknownIndex{Receiver: binary.BigEndian.Uint32(b[4:8]), Counter: binary.BigEndian.Uint64(b[8:16])}, nil
}
