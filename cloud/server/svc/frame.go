package svc

import (
	"errors"
	"fmt"
	"time"

	"github.com/cyphonic/cyphonic-go/messages"
)

// ErrFrame: a service message that is not a valid frame.
var ErrFrame = errors.New("svc: malformed service frame")

// Frame is one service-to-service message: a signaling envelope and, for
// messages an NMS delivers to one of its nodes on another NMS's behalf, the
// node it is for.
//
// Wire: len(To) (1 byte) | To | encoded envelope.
type Frame struct {
	To       string // node FQDN, or "" for messages to the service itself
	Envelope messages.Envelope
	// ReplyTo is where an answer goes (Link.Reply). It is not part of the
	// encoding: the Link that carried the frame fills it in on receipt.
	ReplyTo Ref
}

// Encode returns the frame's bytes, for Link.Send and Link.Request.
func (f Frame) Encode() ([]byte, error) {
	if len(f.To) > messages.MaxNameLen {
		return nil, fmt.Errorf("svc: frame to %q: %w", f.To, ErrFrame)
	}
	env, err := messages.Marshal(f.Envelope)
	if err != nil {
		return nil, fmt.Errorf("svc: frame %s: %w", f.Envelope.Type, err)
	}
	b := make([]byte, 0, 1+len(f.To)+len(env))
	b = append(append(append(b, byte(len(f.To))), f.To...), env...)
	return b, nil
}

// NewFrame encodes the frame of an envelope carrying body.
func NewFrame(to string, id messages.MsgID, sender string, now time.Time, body messages.Body) ([]byte, error) {
	env, err := messages.NewEnvelope(id, sender, now, body)
	if err != nil {
		return nil, fmt.Errorf("svc: frame %s: %w", body.MsgType(), err)
	}
	return Frame{To: to, Envelope: env}.Encode()
}

// DecodeFrame reads a frame from an actor message; ok is false if msg is
// not a service message (*Message) at all (a system message, say).
func DecodeFrame(msg any) (f Frame, ok bool, err error) {
	m, ok := msg.(*Message)
	if !ok || m == nil {
		return Frame{}, false, nil
	}
	f, err = ParseFrame(m.Frame)
	f.ReplyTo = m.ReplyTo
	return f, true, err
}

// ParseFrame decodes a frame's bytes.
func ParseFrame(b []byte) (Frame, error) {
	if len(b) < 1 || len(b) < 1+int(b[0]) {
		return Frame{}, ErrFrame
	}
	n := int(b[0])
	env, err := messages.Unmarshal(b[1+n:])
	if err != nil {
		return Frame{}, fmt.Errorf("svc: frame: %w", err)
	}
	return Frame{To: string(b[1 : 1+n]), Envelope: env}, nil
}
