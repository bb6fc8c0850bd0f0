package messages

import "github.com/vmihailenco/msgpack/v5"

// Deny list sizes. A deny list larger than one chunk travels in several
// DenyList messages, each its own transaction, so that no sealed packet
// needs IP fragmentation (which NATs and firewalls drop).
const (
	// MaxDenyListLen bounds a whole deny list's DER (pki.MaxCRLLen): some
	// 25,000 revocations at ~40 bytes an entry.
	MaxDenyListLen = 1 << 20
	// DenyListChunk is the size of every chunk but the last, which holds
	// the rest. Sealed, a chunk is under 1,200 bytes (a test in
	// transport/signaling checks it): no IP fragmentation on any path that
	// carries IPv6's 1,280, and it fits the smallest buffer a node reads
	// datagrams into (one packet of its tunnel MTU).
	DenyListChunk = 1 << 10
)

// DenyList (NMS -> node) carries the overlay's deny list, a CRL signed by
// the root CA, so the node can refuse revoked peers at every handshake and
// end its tunnels to them - or one chunk of it: Chunk is the DER's bytes
// from Offset, DenyListChunk of them (fewer only in the last chunk), of a
// DER Total bytes long. NMS sends it when it loads a newer list and to a
// node whose ack says it holds an older one; it cannot forge one (the node
// checks the CA's signature on the whole list once every chunk is in), and
// the node keeps the highest-numbered valid list it has seen, so NMS cannot
// withdraw an entry either. Each message is answered with DenyListAck.
//
//	[number (uint), offset (uint), total (uint, 1..MaxDenyListLen), chunk (bin)]
type DenyList struct {
	Number uint64 // the CRL's number, as NMS read it (the node checks the CRL itself)
	Offset uint32 // of Chunk in the DER: a multiple of DenyListChunk
	Total  uint32 // the DER's length
	Chunk  []byte
}

func (DenyList) MsgType() MsgType { return MsgDenyList }

// DenyListChunks splits a deny list's DER into the messages that carry it.
func DenyListChunks(number uint64, der []byte) []DenyList {
	out := make([]DenyList, 0, (len(der)+DenyListChunk-1)/DenyListChunk)
	for off := 0; off < len(der); off += DenyListChunk {
		end := min(off+DenyListChunk, len(der))
		out = append(out, DenyList{Number: number, Offset: uint32(off), Total: uint32(len(der)), Chunk: der[off:end]})
	}
	return out
}

func (m DenyList) EncodeMsgpack(e *msgpack.Encoder) error {
	w := wr{e: e}
	w.arrayLen(4)
	w.uint(m.Number)
	w.uint(uint64(m.Offset))
	w.uint(uint64(m.Total))
	w.bin(m.Chunk)
	return w.err
}

func (m *DenyList) DecodeMsgpack(d *msgpack.Decoder) error {
	r := rd{d: d, msg: "DenyList"}
	r.arrayLen(4)
	m.Number = r.uint("number", ^uint64(0))
	m.Offset = uint32(r.uint("offset", MaxDenyListLen-1))
	m.Total = uint32(r.uint("total", MaxDenyListLen))
	m.Chunk = r.bytes("chunk", DenyListChunk)
	if r.err != nil {
		return r.err
	}
	switch {
	case m.Total == 0:
		r.fail("total", ErrInvalid)
	case m.Offset%DenyListChunk != 0 || m.Offset >= m.Total:
		r.fail("offset", ErrInvalid)
	case len(m.Chunk) != int(min(DenyListChunk, m.Total-m.Offset)):
		// Every chunk is full but the last, which ends the list: the
		// receiver's reassembly never sees overlaps or holes.
		r.fail("chunk", ErrInvalid)
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
