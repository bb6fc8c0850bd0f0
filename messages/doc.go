// Package messages is the CYPHONIC wire contract: every byte layout that
// crosses a socket is defined here and nowhere else.
//
// One UDP socket per address family carries everything, so the first byte of
// every UDP payload is a [PacketType]:
//
//	Signaling      TypeSignaling | session ID (4) | nonce (24) | XChaCha20-Poly1305(envelope)
//	Login          TypeLogin | Noise handshake message 1       (node -> AS)
//	LoginReply     TypeLoginReply | Noise handshake message 2  (AS -> node)
//	HandshakeInit  TypeHandshakeInit | reserved (3) | sender index (4) | Noise message
//	HandshakeResp  TypeHandshakeResp | reserved (3) | sender index (4) | receiver index (4) | Noise message
//	Data           TypeData | flags | reserved (2) | receiver index (4) | counter (8) | AEAD(inner packet)
//	Keepalive      same 16-byte header as Data with TypeKeepalive and an empty sealed payload
//	Relay          TypeRelay | token (16) | inner node<->node packet
//	RelayBind      TypeRelayBind | token (16) | counter (8) | MAC (16)   (node -> TRS)
//	Probe          TypeProbe | probe id (8) | sender index (4) | zero padding to ProbeLen
//	ProbeReply     TypeProbeReply | probe id (8) | observed address (16) | observed port (2)
//
// All integers are big endian. The fixed headers are parsed and written
// without allocating; parsers return sub-slices of their input.
//
// Signaling messages (node <-> cloud, cloud <-> cloud) are an [Envelope]
// encoded with msgpack as a positional array, whose Body is one of the body
// types in this package (see [MsgType]). Every codec is hand-written: the
// decoders enforce the limits in limits.go before they allocate, never panic
// on any input, and reject trailing bytes, unknown enum values and malformed
// addresses. Errors wrap the sentinel errors in errors.go so callers can
// errors.Is them, and carry the failing message and field as a *[FieldError].
package messages
