package messages

import "encoding/binary"

// DataHeaderLen is the length of the header in front of every data and
// keepalive packet. The whole header is the AEAD's additional data and the
// counter is its nonce, so none of it can be altered in flight.
const DataHeaderLen = 16

// DataHeader is the cleartext header of a data or keepalive packet:
//
//	type (1) | flags (1) | reserved (2, zero) | receiver index (4) | counter (8)
//
// The AEAD ciphertext of the inner packet follows it; a keepalive seals an
// empty payload, so it is DataHeaderLen+AEADOverhead bytes long.
type DataHeader struct {
	Type     PacketType // TypeData or TypeKeepalive
	Flags    uint8      // no flags are defined yet: send zero, ignore unknown bits
	Receiver uint32     // the index the receiver chose for this session in its handshake
	Counter  uint64     // per-session packet counter, the AEAD nonce
}

// Put writes h into b[:DataHeaderLen]. Like encoding/binary, it panics if b
// is shorter than DataHeaderLen: that is a bug in the caller's buffer sizing,
// never a property of network input.
func (h DataHeader) Put(b []byte) {
	_ = b[DataHeaderLen-1] // one bounds check
	b[0] = byte(h.Type)
	b[1] = h.Flags
	b[2], b[3] = 0, 0
	binary.BigEndian.PutUint32(b[4:8], h.Receiver)
	binary.BigEndian.PutUint64(b[8:16], h.Counter)
}

// ParseDataHeader parses the header at the start of b; the ciphertext is
// b[DataHeaderLen:]. It accepts TypeData and TypeKeepalive and returns the
// bare sentinels ErrTruncated, ErrTooLarge, ErrBadType or ErrReserved, so it
// never allocates.
func ParseDataHeader(b []byte) (DataHeader, error) {
	if len(b) < DataHeaderLen+AEADOverhead {
		return DataHeader{}, ErrTruncated
	}
	if len(b) > MaxPacket {
		return DataHeader{}, ErrTooLarge
	}
	t := PacketType(b[0])
	if t != TypeData && t != TypeKeepalive {
		return DataHeader{}, ErrBadType
	}
	if b[2] != 0 || b[3] != 0 {
		return DataHeader{}, ErrReserved
	}
	return DataHeader{
		Type:     t,
		Flags:    b[1],
		Receiver: binary.BigEndian.Uint32(b[4:8]),
		Counter:  binary.BigEndian.Uint64(b[8:16]),
	}, nil
}
