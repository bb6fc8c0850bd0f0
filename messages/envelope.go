package messages

import (
	"bytes"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/vmihailenco/msgpack/v5"
	"github.com/vmihailenco/msgpack/v5/msgpcode"
)

// Version is the envelope version this package writes and accepts. The
// positional layout of every body is fixed per version.
const Version = 1

// Envelope is a signaling message. On the wire it is the msgpack array
//
//	[version, type, id (bin 16), sender (str), timestamp (int), body]
//
// Body is the msgpack encoding of the body type named by Type (see
// EncodeBody, DecodeBody, DecodeAny); an empty Body is written as nil.
type Envelope struct {
	Version   uint8
	Type      MsgType
	ID        MsgID  // request: fresh NewMsgID(); response: the request's ID
	Sender    string // sender's FQDN or service name ("nms", "as-1"); may be empty
	Timestamp int64  // unix nanoseconds at the sender
	Body      msgpack.RawMessage
}

// Body is implemented by every signaling body type (T and *T; decoding
// needs *T). MsgType names the envelope type that carries it.
type Body interface {
	MsgType() MsgType
	msgpack.CustomEncoder
}

// NewEnvelope encodes b into a new envelope of type b.MsgType().
func NewEnvelope(id MsgID, sender string, now time.Time, b Body) (Envelope, error) {
	raw, err := EncodeBody(b)
	if err != nil {
		return Envelope{}, err
	}
	return Envelope{
		Version:   Version,
		Type:      b.MsgType(),
		ID:        id,
		Sender:    sender,
		Timestamp: now.UnixNano(),
		Body:      raw,
	}, nil
}

// Reply builds the response to env: same ID, so the requester finds its
// transaction.
func (env Envelope) Reply(sender string, now time.Time, b Body) (Envelope, error) {
	return NewEnvelope(env.ID, sender, now, b)
}

// Time returns Timestamp as a time.Time.
func (env Envelope) Time() time.Time { return time.Unix(0, env.Timestamp) }

// EncodeMsgpack implements msgpack.CustomEncoder.
func (env Envelope) EncodeMsgpack(e *msgpack.Encoder) error {
	w := wr{e: e}
	env.encodeHeader(&w)
	if len(env.Body) == 0 {
		w.nil()
	} else if w.err == nil {
		w.err = writeRaw(e.Writer(), env.Body)
	}
	return w.err
}

func (env *Envelope) encodeHeader(w *wr) {
	w.arrayLen(6)
	w.uint(uint64(env.Version))
	w.uint(uint64(env.Type))
	w.bin(env.ID[:])
	w.str(env.Sender)
	w.int(env.Timestamp)
}

// DecodeMsgpack implements msgpack.CustomDecoder. Body is copied out of the input.
func (env *Envelope) DecodeMsgpack(d *msgpack.Decoder) error {
	return env.decode(d, nil, nil)
}

// decode reads an envelope. When the decoder reads src through in, the body
// is sliced out of src (one copy) instead of being recorded by DecodeRaw.
func (env *Envelope) decode(d *msgpack.Decoder, in *bytes.Reader, src []byte) error {
	r := rd{d: d, msg: "Envelope"}
	r.arrayLen(6)
	env.Version = r.u8("version")
	if r.err == nil && env.Version != Version {
		r.fail("version", ErrVersion)
	}
	env.Type = MsgType(r.u8("type"))
	if r.err == nil && !env.Type.Valid() {
		r.fail("type", ErrUnknownMsgType)
	}
	r.fixed("id", env.ID[:])
	if r.err == nil && env.ID.IsZero() {
		r.fail("id", ErrInvalid)
	}
	env.Sender = r.name("sender")
	env.Timestamp = r.int("timestamp")
	if r.err != nil {
		return r.err
	}
	var body []byte
	if in != nil {
		start := len(src) - in.Len()
		n, err := skipValue(src[start:], 0)
		if err != nil {
			r.fail("body", err)
			return r.err
		}
		body = bytes.Clone(src[start : start+n])
		in.Seek(int64(start+n), io.SeekStart)
	} else {
		raw, err := d.DecodeRaw()
		if err != nil {
			r.fail("body", err)
			return r.err
		}
		body = raw
	}
	if len(body) == 1 && body[0] == msgpcode.Nil {
		body = nil
	}
	env.Body = body
	return nil
}

// Marshal encodes env into a new slice. Use an Encoder to avoid the allocation.
func Marshal(env Envelope) ([]byte, error) {
	e := getEncoder()
	defer putEncoder(e)
	b, err := e.Encode(env)
	return bytes.Clone(b), err
}

// encoders holds Encoders for Marshal and EncodeBody, whose results are
// copies: a fresh msgpack encoder and a buffer grown from nothing on every
// call were a tenth of the bytes a cloud tunnel setup allocates (issue 14).
var encoders = sync.Pool{New: func() any { return NewEncoder() }}

func getEncoder() *Encoder { return encoders.Get().(*Encoder) }

func putEncoder(e *Encoder) {
	if e.buf.Cap() <= 2*MaxEnvelopeLen { // keep no outsized buffer
		encoders.Put(e)
	}
}

// Unmarshal decodes an envelope, enforcing MaxEnvelopeLen and every field
// limit, and rejecting trailing bytes. It does not decode the body: use
// DecodeBody or DecodeAny, which check that the body fits the type.
func Unmarshal(b []byte) (Envelope, error) {
	var env Envelope
	if len(b) > MaxEnvelopeLen {
		return env, &FieldError{Msg: "Envelope", Err: ErrTooLarge}
	}
	in := bytes.NewReader(b)
	err := decodeAll(in, "Envelope", func(d *msgpack.Decoder) error { return env.decode(d, in, b) })
	return env, err
}

// decodeAll runs decode over r and requires it to consume all of r.
func decodeAll(r interface {
	io.Reader
	io.ByteScanner
	Len() int
}, msg string, decode func(*msgpack.Decoder) error) error {
	d := msgpack.GetDecoder()
	defer msgpack.PutDecoder(d)
	d.Reset(r)
	if err := decode(d); err != nil {
		return wrapField(msg, err)
	}
	if r.Len() != 0 {
		return &FieldError{Msg: msg, Err: ErrMalformed}
	}
	return nil
}

func wrapField(msg string, err error) error {
	if _, ok := err.(*FieldError); ok {
		return err
	}
	return &FieldError{Msg: msg, Err: classify(err)}
}

// EncodeBody encodes a body into a new slice, for Envelope.Body.
func EncodeBody(b Body) (msgpack.RawMessage, error) {
	e := getEncoder()
	defer putEncoder(e)
	e.init()
	if err := b.EncodeMsgpack(e.enc); err != nil {
		return nil, err
	}
	return bytes.Clone(e.buf.Bytes()), nil
}

// bodyPtr is *T for a body type T.
type bodyPtr[T any] interface {
	*T
	Body
	msgpack.CustomDecoder
}

// DecodeBody decodes env.Body as a T, which must be the body type for
// env.Type (else ErrWrongBody):
//
//	reg, err := messages.DecodeBody[messages.Register](env)
func DecodeBody[T any, PT bodyPtr[T]](env Envelope) (T, error) {
	var v T
	p := PT(&v)
	if p.MsgType() != env.Type {
		return v, &FieldError{Msg: env.Type.String(), Err: ErrWrongBody}
	}
	if len(env.Body) > MaxEnvelopeLen {
		return v, &FieldError{Msg: env.Type.String(), Err: ErrTooLarge}
	}
	var err error
	if len(env.Body) == 0 {
		err = decodeAll(strings.NewReader("\xc0"), env.Type.String(), p.DecodeMsgpack)
	} else {
		err = decodeAll(bytes.NewReader(env.Body), env.Type.String(), p.DecodeMsgpack)
	}
	return v, err
}

// DecodeAny decodes env.Body into the body type env.Type names and returns a
// pointer to it (*Register for MsgRegister, ...), for a type switch.
func DecodeAny(env Envelope) (Body, error) {
	switch env.Type {
	case MsgLoginRequest:
		return decodePtr[LoginRequest](env)
	case MsgLoginReply:
		return decodePtr[LoginReply](env)
	case MsgLoginChallenge:
		return decodePtr[LoginChallenge](env)
	case MsgLoginConfirm:
		return decodePtr[LoginConfirm](env)
	case MsgKeyHandover:
		return decodePtr[KeyHandover](env)
	case MsgKeyHandoverAck:
		return decodePtr[KeyHandoverAck](env)
	case MsgRegister:
		return decodePtr[Register](env)
	case MsgRegisterReply:
		return decodePtr[RegisterReply](env)
	case MsgTunnelRequest:
		return decodePtr[TunnelRequest](env)
	case MsgTunnelByVIP:
		return decodePtr[TunnelByVIP](env)
	case MsgVIPLookup:
		return decodePtr[VIPLookup](env)
	case MsgVIPHolder:
		return decodePtr[VIPHolder](env)
	case MsgDirection:
		return decodePtr[Direction](env)
	case MsgDirectionAck:
		return decodePtr[DirectionAck](env)
	case MsgPath:
		return decodePtr[Path](env)
	case MsgRelayAlloc:
		return decodePtr[RelayAlloc](env)
	case MsgRelayAllocReply:
		return decodePtr[RelayAllocReply](env)
	case MsgRelayKey:
		return decodePtr[RelayKey](env)
	case MsgRelayKeyReply:
		return decodePtr[RelayKeyReply](env)
	case MsgKeepalive:
		return decodePtr[Keepalive](env)
	case MsgKeepaliveAck:
		return decodePtr[KeepaliveAck](env)
	case MsgLogout:
		return decodePtr[Logout](env)
	case MsgLogoutAck:
		return decodePtr[LogoutAck](env)
	case MsgPeerUpdate:
		return decodePtr[PeerUpdate](env)
	case MsgPeerUpdateAck:
		return decodePtr[PeerUpdateAck](env)
	case MsgError:
		return decodePtr[Error](env)
	case MsgDenyList:
		return decodePtr[DenyList](env)
	case MsgDenyListAck:
		return decodePtr[DenyListAck](env)
	}
	return nil, &FieldError{Msg: "Envelope", Field: "type", Err: ErrUnknownMsgType}
}

func decodePtr[T any, PT bodyPtr[T]](env Envelope) (Body, error) {
	v, err := DecodeBody[T, PT](env)
	if err != nil {
		return nil, err
	}
	return PT(&v), nil
}

// Encoder encodes envelopes into a reused buffer without allocating. It is
// not safe for concurrent use; give each actor its own. The zero value is
// ready to use.
type Encoder struct {
	buf bytes.Buffer
	enc *msgpack.Encoder
}

// NewEncoder returns an Encoder.
func NewEncoder() *Encoder {
	e := new(Encoder)
	e.init()
	return e
}

func (e *Encoder) init() {
	if e.enc == nil {
		e.enc = msgpack.NewEncoder(&e.buf)
	}
	e.buf.Reset()
}

// Encode encodes env. The result aliases the Encoder's buffer: it is valid
// until the next call (copy it, or seal it into a packet, before then).
func (e *Encoder) Encode(env Envelope) ([]byte, error) {
	e.init()
	if err := env.EncodeMsgpack(e.enc); err != nil {
		return nil, err
	}
	return e.buf.Bytes(), nil
}

// EncodeMessage encodes an envelope carrying b, writing the body in place
// (no intermediate Body slice). The result is valid until the next call.
func (e *Encoder) EncodeMessage(id MsgID, sender string, timestamp int64, b Body) ([]byte, error) {
	e.init()
	env := Envelope{Version: Version, Type: b.MsgType(), ID: id, Sender: sender, Timestamp: timestamp}
	w := wr{e: e.enc}
	env.encodeHeader(&w)
	if w.err != nil {
		return nil, w.err
	}
	if err := b.EncodeMsgpack(e.enc); err != nil {
		return nil, err
	}
	return e.buf.Bytes(), nil
}
