package signaling

import (
	"crypto/cipher"
	"crypto/rand"
	"errors"
	"fmt"
	"slices"
	"time"

	"golang.org/x/crypto/chacha20poly1305"

	"github.com/cyphonic/cyphonic-go/messages"
)

// MaxClockSkew is how far an envelope's timestamp may be from the
// receiver's clock. Outside it the envelope is refused as a possible replay:
// message-ID deduplication only has to remember IDs for this long.
const MaxClockSkew = 2 * time.Minute

// Errors callers can test with errors.Is.
var (
	// ErrOpen: the packet did not authenticate under the session's key
	// (forged, corrupted, or sealed for another session).
	ErrOpen = errors.New("signaling: packet does not authenticate")
	// ErrWrongSession: the packet names another session ID.
	ErrWrongSession = errors.New("signaling: packet for another session")
	// ErrStale: the envelope's timestamp is outside MaxClockSkew.
	ErrStale = errors.New("signaling: timestamp outside the accepted window")
	// ErrWrongReply: a reply does not carry the request's message ID.
	ErrWrongReply = errors.New("signaling: reply for another request")
)

// Keys are a session's two signaling keys, one per direction.
type Keys struct {
	NodeToCloud [32]byte
	CloudToNode [32]byte
}

// Session seals outgoing and opens incoming signaling packets of one login
// session. It is safe for concurrent use (the AEADs are stateless: nonces
// are random).
type Session struct {
	id   uint32
	seal cipher.AEAD
	open cipher.AEAD
}

// NewNodeSession is the node's end: it seals with NodeToCloud and opens
// with CloudToNode.
func NewNodeSession(id uint32, k Keys) (*Session, error) {
	return newSession(id, k.NodeToCloud, k.CloudToNode)
}

// NewCloudSession is the cloud's end of the same session.
func NewCloudSession(id uint32, k Keys) (*Session, error) {
	return newSession(id, k.CloudToNode, k.NodeToCloud)
}

func newSession(id uint32, sealKey, openKey [32]byte) (*Session, error) {
	if id == 0 {
		return nil, fmt.Errorf("signaling: session ID 0 is reserved")
	}
	s, err := chacha20poly1305.NewX(sealKey[:])
	if err != nil {
		return nil, fmt.Errorf("signaling: session %d: %w", id, err)
	}
	o, err := chacha20poly1305.NewX(openKey[:])
	if err != nil {
		return nil, fmt.Errorf("signaling: session %d: %w", id, err)
	}
	return &Session{id: id, seal: s, open: o}, nil
}

// ID is the session ID carried in every packet's header.
func (s *Session) ID() uint32 { return s.id }

// Seal appends to dst the sealed packet carrying envelope (an encoded
// messages.Envelope) and returns the extended slice. With enough capacity
// in dst it does not allocate.
func (s *Session) Seal(dst, envelope []byte) []byte {
	off := len(dst)
	// Room for the whole packet at once: grown by the header and then by
	// the AEAD, a nil dst took two allocations (a cloud reply, a
	// Direction: every packet NMS keeps for retransmission).
	dst = slices.Grow(dst, messages.SignalingHeaderLen+len(envelope)+s.seal.Overhead())
	dst = append(dst, make([]byte, messages.SignalingHeaderLen)...)
	messages.SignalingHeader{SessionID: s.id}.Put(dst[off:])
	// The nonce is drawn straight into the packet (a local array passed to
	// the AEAD interface would escape and allocate).
	nonce := dst[off+messages.SignalingAADLen : off+messages.SignalingHeaderLen]
	rand.Read(nonce) // never fails (Go 1.24+)
	return s.seal.Seal(dst, nonce, envelope, dst[off:off+messages.SignalingAADLen])
}

// Open authenticates packet and appends its plaintext envelope to dst. The
// envelope is not decoded: see OpenEnvelope.
func (s *Session) Open(dst, packet []byte) ([]byte, error) {
	h, ct, err := messages.ParseSignaling(packet)
	if err != nil {
		return dst, fmt.Errorf("signaling: %w", err)
	}
	if h.SessionID != s.id {
		return dst, ErrWrongSession
	}
	nonce := packet[messages.SignalingAADLen:messages.SignalingHeaderLen]
	out, err := s.open.Open(dst, nonce, ct, packet[:messages.SignalingAADLen])
	if err != nil {
		return dst, ErrOpen
	}
	return out, nil
}

// SealMessage encodes an envelope carrying body with enc and appends the
// sealed packet to dst. enc is the caller's (one per goroutine).
func (s *Session) SealMessage(dst []byte, enc *messages.Encoder, id messages.MsgID, sender string, now time.Time, body messages.Body) ([]byte, error) {
	plain, err := enc.EncodeMessage(id, sender, now.UnixNano(), body)
	if err != nil {
		return dst, fmt.Errorf("signaling: encode %s: %w", body.MsgType(), err)
	}
	return s.Seal(dst, plain), nil
}

// OpenEnvelope opens packet, decodes the envelope and checks its timestamp
// against now (CheckFresh). scratch is reused for the plaintext if it is
// large enough; the envelope does not alias it.
func (s *Session) OpenEnvelope(scratch, packet []byte, now time.Time) (messages.Envelope, error) {
	plain, err := s.Open(scratch[:0], packet)
	if err != nil {
		return messages.Envelope{}, err
	}
	env, err := messages.Unmarshal(plain)
	if err != nil {
		return messages.Envelope{}, fmt.Errorf("signaling: session %d: %w", s.id, err)
	}
	if err := CheckFresh(env, now); err != nil {
		return env, err
	}
	return env, nil
}

// PeekSession returns the session ID of a sealed signaling packet, so a
// receiver can find the Session before opening it.
func PeekSession(packet []byte) (uint32, error) {
	h, _, err := messages.ParseSignaling(packet)
	if err != nil {
		return 0, fmt.Errorf("signaling: %w", err)
	}
	return h.SessionID, nil
}

// CheckFresh returns an error wrapping ErrStale if env's timestamp is more
// than MaxClockSkew away from now.
func CheckFresh(env messages.Envelope, now time.Time) error {
	d := now.Sub(env.Time())
	if d > MaxClockSkew || d < -MaxClockSkew {
		return fmt.Errorf("signaling: %s %s from %q is %v off: %w", env.Type, env.ID, env.Sender, d.Round(time.Second), ErrStale)
	}
	return nil
}
