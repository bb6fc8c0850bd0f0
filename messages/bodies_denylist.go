package messages

import "github.com/vmihailenco/msgpack/v5"

// MaxDenyListLen bounds a deny list's DER (pki.MaxCRLLen): it must fit one
// sealed envelope with room to spare.
const MaxDenyListLen = 12 << 10

// DenyList (NMS -> node) carries the overlay's deny list, a CRL signed by
// the root CA, so the node can refuse revoked peers at every handshake and
// end its tunnels to them. NMS sends it when it loads a newer list and to a
// node whose ack says it holds an older one; it cannot forge one, and the
// node keeps the highest-numbered valid list it has seen, so NMS cannot
// withdraw an entry either. Answered with DenyListAck.
//
//	[number (uint), crl (bin, 1..MaxDenyListLen)]
type DenyList struct {
	Number uint64 // the CRL's number, as NMS read it (the node checks the CRL itself)
	CRL    []byte // DER
}

func (DenyList) MsgType() MsgType { return MsgDenyList }

func (m DenyList) EncodeMsgpack(e *msgpack.Encoder) error {
	w := wr{e: e}
	w.arrayLen(2)
	w.uint(m.Number)
	w.bin(m.CRL)
	return w.err
}

func (m *DenyList) DecodeMsgpack(d *msgpack.Decoder) error {
	r := rd{d: d, msg: "DenyList"}
	r.arrayLen(2)
	m.Number = r.uint("number", ^uint64(0))
	m.CRL = r.bytes("crl", MaxDenyListLen)
	if r.err == nil && len(m.CRL) == 0 {
		r.fail("crl", ErrInvalid)
	}
	return r.err
}

// DenyListAck (node -> NMS) says which deny list the node now holds (0:
// none), whether or not it took the one offered.
//
//	[number (uint)]
type DenyListAck struct {
	Number uint64
}

func (DenyListAck) MsgType() MsgType { return MsgDenyListAck }

func (m DenyListAck) EncodeMsgpack(e *msgpack.Encoder) error {
	w := wr{e: e}
	w.arrayLen(1)
	w.uint(m.Number)
	return w.err
}

func (m *DenyListAck) DecodeMsgpack(d *msgpack.Decoder) error {
	r := rd{d: d, msg: "DenyListAck"}
	r.arrayLen(1)
	m.Number = r.uint("number", ^uint64(0))
	return r.err
}
