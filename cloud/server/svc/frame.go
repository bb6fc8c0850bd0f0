package svc

import (
	"errors"
	"fmt"
	"time"

	"google.golang.org/protobuf/types/known/wrapperspb"

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
}

// Encode wraps f for protoactor (in-process or remote).
func (f Frame) Encode() (*wrapperspb.BytesValue, error) {
	if len(f.To) > messages.MaxNameLen {
		return nil, fmt.Errorf("svc: frame to %q: %w", f.To, ErrFrame)
	}
	env, err := messages.Marshal(f.Envelope)
	if err != nil {
		return nil, fmt.Errorf("svc: frame %s: %w", f.Envelope.Type, err)
	}
	b := make([]byte, 0, 1+len(f.To)+len(env))
	b = append(append(append(b, byte(len(f.To))), f.To...), env...)
	return wrapperspb.Bytes(b), nil
}

// NewFrame builds the frame of an envelope carrying body.
func NewFrame(to string, id messages.MsgID, sender string, now time.Time, body messages.Body) (*wrapperspb.BytesValue, error) {
	env, err := messages.NewEnvelope(id, sender, now, body)
	if err != nil {
		return nil, fmt.Errorf("svc: frame %s: %w", body.MsgType(), err)
	}
	return Frame{To: to, Envelope: env}.Encode()
}

// DecodeFrame reads a frame from an actor message; ok is false if msg is
// not a service message at all (a system message, say).
func DecodeFrame(msg any) (f Frame, ok bool, err error) {
	bv, ok := msg.(*wrapperspb.BytesValue)
	if !ok {
		return Frame{}, false, nil
	}
	b := bv.GetValue()
	if len(b) < 1 || len(b) < 1+int(b[0]) {
		return Frame{}, true, ErrFrame
	}
	n := int(b[0])
	env, err := messages.Unmarshal(b[1+n:])
	if err != nil {
		return Frame{}, true, fmt.Errorf("svc: frame: %w", err)
	}
	return Frame{To: string(b[1 : 1+n]), Envelope: env}, true, nil
}
