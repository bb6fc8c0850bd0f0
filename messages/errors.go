package messages

import (
	"errors"
	"fmt"
	"io"
	"strings"
)

// Sentinel errors. The fixed-header parsers return them bare (no allocation
// on the per-packet path, even for garbage); the msgpack decoders wrap them in
// a *FieldError. Every error returned by this package wraps exactly one of
// them, so callers can classify failures with errors.Is (for counters, or to
// decide between dropping a packet and answering with an [Error] body).
var (
	// ErrTruncated: the input ends before the structure it should hold.
	ErrTruncated = errors.New("messages: truncated")
	// ErrBadType: the packet type byte is not the one the parser expects.
	ErrBadType = errors.New("messages: unexpected packet type")
	// ErrReserved: a reserved header field is not zero.
	ErrReserved = errors.New("messages: reserved field not zero")
	// ErrTooLarge: a packet, envelope, string, byte string or list exceeds its limit.
	ErrTooLarge = errors.New("messages: exceeds size limit")
	// ErrMalformed: the msgpack structure is wrong (wrong kind, wrong field
	// count, trailing bytes).
	ErrMalformed = errors.New("messages: malformed encoding")
	// ErrInvalid: the encoding is well formed but a value is not acceptable
	// (unknown enum, bad name, zero message ID, invalid UTF-8, bad address).
	ErrInvalid = errors.New("messages: invalid value")
	// ErrVersion: the envelope version is not one this package speaks.
	ErrVersion = errors.New("messages: unsupported envelope version")
	// ErrUnknownMsgType: the envelope names a message type this package does not know.
	ErrUnknownMsgType = errors.New("messages: unknown message type")
	// ErrWrongBody: DecodeBody was asked for a body type that the envelope does not carry.
	ErrWrongBody = errors.New("messages: body type does not match envelope type")
)

// FieldError locates a decoding failure: which message and which field.
// It unwraps to one of the sentinel errors above.
type FieldError struct {
	Msg   string // message or header name, e.g. "Register"
	Field string // wire field name, e.g. "locals"; empty for the whole message
	Err   error
}

func (e *FieldError) Error() string {
	msg := strings.TrimPrefix(e.Err.Error(), "messages: ")
	if e.Field == "" {
		return "messages: " + e.Msg + ": " + msg
	}
	return "messages: " + e.Msg + "." + e.Field + ": " + msg
}

func (e *FieldError) Unwrap() error { return e.Err }

// classify maps an error from the msgpack library onto our sentinels: running
// out of input is truncation, anything else it reports is a malformed encoding.
// Errors that already carry one of our sentinels pass through.
func classify(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return ErrTruncated
	case isOurs(err):
		return err
	default:
		return fmt.Errorf("%w: %v", ErrMalformed, err)
	}
}

var sentinels = [...]error{ErrTruncated, ErrBadType, ErrReserved, ErrTooLarge,
	ErrMalformed, ErrInvalid, ErrVersion, ErrUnknownMsgType, ErrWrongBody}

func isOurs(err error) bool {
	for _, s := range sentinels {
		if errors.Is(err, s) {
			return true
		}
	}
	return false
}
