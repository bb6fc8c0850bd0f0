package handshake

import (
	"encoding/binary"
	"fmt"
	"time"

	"github.com/cyphonic/cyphonic-go/transport/seal"
)

// Size limits. Handshake messages are parsed before anything is known about
// the sender, so every length is bounded before it is trusted.
const (
	MaxCertLen       = 2048 // an Ed25519 X.509 node certificate is ~500 bytes
	MaxAppPayloadLen = 2048
	MaxSuites        = 8

	payloadVersion = 1
	// version | sender index | timestamp | suite count | suites | cert len | cert | app len | app
	payloadFixedLen = 1 + 4 + 8 + 1 + 2 + 2
	maxPayloadLen   = payloadFixedLen + MaxSuites + MaxCertLen + MaxAppPayloadLen

	dhLen  = 32
	tagLen = 16
	// MaxMessageLen bounds both handshake messages. msg2 is the larger:
	// e, encrypted s, encrypted payload.
	MaxMessageLen = dhLen + dhLen + tagLen + maxPayloadLen + tagLen
	minMsg1Len    = dhLen + dhLen + payloadFixedLen
	minMsg2Len    = dhLen + dhLen + tagLen + payloadFixedLen + tagLen
)

// payload is what each side sends inside its Noise message.
type payload struct {
	index     uint32       // the sender's receiver index for data packets
	timestamp time.Time    // msg1: the responder's replay defence
	suites    []seal.Suite // data suites, best first
	cert      []byte       // sender's certificate DER
	app       []byte       // opaque bytes for the caller (e.g. login request)
}

func (p *payload) encode() ([]byte, error) {
	switch {
	case len(p.suites) == 0 || len(p.suites) > MaxSuites:
		return nil, fmt.Errorf("handshake: %w: %d suites", ErrTooLarge, len(p.suites))
	case len(p.cert) > MaxCertLen:
		return nil, fmt.Errorf("handshake: %w: certificate %d bytes", ErrTooLarge, len(p.cert))
	case len(p.app) > MaxAppPayloadLen:
		return nil, fmt.Errorf("handshake: %w: payload %d bytes", ErrTooLarge, len(p.app))
	}
	b := make([]byte, 0, payloadFixedLen+len(p.suites)+len(p.cert)+len(p.app))
	b = append(b, payloadVersion)
	b = binary.BigEndian.AppendUint32(b, p.index)
	b = binary.BigEndian.AppendUint64(b, uint64(p.timestamp.UnixNano()))
	b = append(b, byte(len(p.suites)))
	for _, s := range p.suites {
		b = append(b, byte(s))
	}
	b = binary.BigEndian.AppendUint16(b, uint16(len(p.cert)))
	b = append(b, p.cert...)
	b = binary.BigEndian.AppendUint16(b, uint16(len(p.app)))
	b = append(b, p.app...)
	return b, nil
}

// decodePayload parses b strictly: every length is checked against the limits
// and the remaining bytes, and trailing bytes are an error. The result aliases b.
func decodePayload(b []byte) (payload, error) {
	var p payload
	r := reader{b: b}
	if v := r.byte(); v != payloadVersion {
		if r.err {
			return p, fmt.Errorf("handshake: %w: empty payload", ErrMalformed)
		}
		return p, fmt.Errorf("handshake: %w: version %d", ErrVersion, v)
	}
	p.index = r.uint32()
	p.timestamp = time.Unix(0, int64(r.uint64()))
	n := int(r.byte())
	if n == 0 || n > MaxSuites {
		return p, fmt.Errorf("handshake: %w: %d suites", ErrMalformed, n)
	}
	for _, s := range r.bytes(n) {
		p.suites = append(p.suites, seal.Suite(s))
	}
	if n := int(r.uint16()); n > MaxCertLen {
		return p, fmt.Errorf("handshake: %w: certificate %d bytes", ErrMalformed, n)
	} else {
		p.cert = r.bytes(n)
	}
	if n := int(r.uint16()); n > MaxAppPayloadLen {
		return p, fmt.Errorf("handshake: %w: app payload %d bytes", ErrMalformed, n)
	} else {
		p.app = r.bytes(n)
	}
	if r.err {
		return p, fmt.Errorf("handshake: %w: payload truncated", ErrMalformed)
	}
	if len(r.b) != 0 {
		return p, fmt.Errorf("handshake: %w: %d trailing bytes", ErrMalformed, len(r.b))
	}
	return p, nil
}

// reader consumes b front to back; a short read sets err and yields zeros.
type reader struct {
	b   []byte
	err bool
}

func (r *reader) bytes(n int) []byte {
	if r.err || n > len(r.b) {
		r.err = true
		return nil
	}
	v := r.b[:n:n]
	r.b = r.b[n:]
	return v
}

func (r *reader) byte() byte {
	if b := r.bytes(1); b != nil {
		return b[0]
	}
	return 0
}

func (r *reader) uint16() uint16 {
	if b := r.bytes(2); b != nil {
		return binary.BigEndian.Uint16(b)
	}
	return 0
}

func (r *reader) uint32() uint32 {
	if b := r.bytes(4); b != nil {
		return binary.BigEndian.Uint32(b)
	}
	return 0
}

func (r *reader) uint64() uint64 {
	if b := r.bytes(8); b != nil {
		return binary.BigEndian.Uint64(b)
	}
	return 0
}
