package seal

import (
	"encoding/binary"
	"errors"
	"fmt"
	"unsafe"
)

// Data packet layout, fixed by the wire spec:
//
//	type(1)=6 | flags(1) | reserved(2) | receiver index(4, BE) | counter(8, BE) | AEAD(inner packet)
//
// The 16-byte header is the AEAD's additional data; the nonce is 4 zero bytes
// followed by the counter, big endian, for both suites.
const (
	TypeData  = 6
	HeaderLen = 16
	Overhead  = 16 // authentication tag of both suites
	NonceLen  = 12
)

var (
	ErrTruncated    = errors.New("seal: packet truncated")
	ErrBadType      = errors.New("seal: not a data packet")
	ErrAuth         = errors.New("seal: authentication failed")
	ErrWrongIndex   = errors.New("seal: receiver index does not match session")
	ErrCounterLimit = errors.New("seal: counter beyond session limit")
	ErrShortBuffer  = errors.New("seal: destination buffer too small")
	ErrOverlap      = errors.New("seal: plaintext partially overlaps destination")
	ErrUnknownSuite = errors.New("seal: unknown cipher suite")
)

// Header is the parsed cleartext header of a data packet.
type Header struct {
	Flags         uint8
	ReceiverIndex uint32
	Counter       uint64
}

// ParseHeader reads the header of a data packet without authenticating it:
// the receive path uses the receiver index to find the session. It checks the
// length covers a header and a tag.
func ParseHeader(pkt []byte) (Header, error) {
	if len(pkt) < HeaderLen+Overhead {
		return Header{}, ErrTruncated
	}
	if pkt[0] != TypeData {
		return Header{}, fmt.Errorf("%w: type %d", ErrBadType, pkt[0])
	}
	return Header{
		Flags:         pkt[1],
		ReceiverIndex: binary.BigEndian.Uint32(pkt[4:8]),
		Counter:       binary.BigEndian.Uint64(pkt[8:16]),
	}, nil
}

func putHeader(b []byte, flags uint8, receiver uint32, counter uint64) {
	b[0] = TypeData
	b[1] = flags
	b[2], b[3] = 0, 0
	binary.BigEndian.PutUint32(b[4:8], receiver)
	binary.BigEndian.PutUint64(b[8:16], counter)
}

// overlaps reports whether x and y share any memory.
func overlaps(x, y []byte) bool {
	if len(x) == 0 || len(y) == 0 {
		return false
	}
	x0, y0 := start(x), start(y)
	return x0 <= y0+uintptr(len(y)-1) && y0 <= x0+uintptr(len(x)-1)
}

func start(b []byte) uintptr { return uintptr(unsafe.Pointer(unsafe.SliceData(b))) }
