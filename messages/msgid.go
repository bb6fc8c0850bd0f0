package messages

import (
	"crypto/rand"
	"encoding/hex"
)

// MsgID names a signaling transaction: 16 random bytes chosen by the
// requester. Every response carries the request's ID, and the transaction
// state waits in a cache under it.
type MsgID [16]byte

// NewMsgID returns a fresh random ID from crypto/rand.
func NewMsgID() MsgID {
	var id MsgID
	rand.Read(id[:]) // never returns an error (Go 1.24+: it crashes the program instead)
	return id
}

// IsZero reports whether id is the zero ID, which is never valid on the wire.
func (id MsgID) IsZero() bool { return id == MsgID{} }

// String returns the ID as 32 lower-case hex digits.
func (id MsgID) String() string { return hex.EncodeToString(id[:]) }
