package tun

import (
	"bytes"
	"encoding/binary"
)

// Which staged packets need the 64 KB a GRO super-packet may grow to.
//
// wireguard-go's GRO (in Write) appends a flow's later segments into the
// buffer of the flow's first packet, the head, as long as the head's
// capacity holds them; a packet whose flow has no head yet, or whose head
// is full, becomes a head itself. Only heads that get followers ever use
// more room than their own packet. So a write stages every packet in a
// buffer of its own size except the heads the plan below predicts, which
// get full-capacity stages from a small list: under bulk load a 64-packet
// write of one flow needs two, not 64 (4 MiB). The plan mirrors GRO's
// conditions for appending to a flow's latest item (planHeads); where it
// guesses wrong, a head without room coalesces less, never incorrectly
// (wireguard-go checks the capacity itself), but see planHeads for how
// much less.

// groKey is a packet's flow as GRO groups it: version, protocol, the
// addresses and ports, compared as bytes.
type groKey struct {
	n int
	b [1 + 1 + 32 + 4]byte
}

// groSeg is what the plan needs of a packet GRO may coalesce: its flow, the
// payload it would add to its head, its TCP sequence number and header
// lengths (tcph 0: UDP), and whether it carries PSH (after which GRO
// appends nothing to its item).
type groSeg struct {
	key     groKey
	payload int
	seq     uint32
	iph     int
	tcph    int
	psh     bool
}

// groFlow extracts pkt's groSeg. ok is false for what GRO never coalesces
// (not TCP or UDP, fragments, too short, a TCP segment without data or with
// a flag but ACK and PSH).
func groFlow(pkt []byte) (g groSeg, ok bool) {
	if len(pkt) < 20 {
		return g, false
	}
	var proto byte
	var addrs []byte
	switch pkt[0] >> 4 {
	case 4:
		g.iph = int(pkt[0]&0x0f) * 4
		if g.iph < 20 || len(pkt) < g.iph || pkt[6]&0x20 != 0 || pkt[6]&0x1f != 0 || pkt[7] != 0 {
			return g, false // options aside, fragments are never coalesced
		}
		proto, addrs = pkt[9], pkt[12:20]
	case 6:
		g.iph = 40
		if len(pkt) < g.iph {
			return g, false
		}
		proto, addrs = pkt[6], pkt[8:40]
	default:
		return g, false
	}
	var l4 int
	switch proto {
	case 6: // TCP
		if len(pkt) < g.iph+20 {
			return g, false
		}
		const ack, pshFlag = 0x10, 0x08
		switch pkt[g.iph+13] {
		case ack:
		case ack | pshFlag:
			g.psh = true
		default:
			return g, false
		}
		l4 = int(pkt[g.iph+12]>>4) * 4
		if l4 < 20 {
			return g, false
		}
		g.tcph = l4
		g.seq = binary.BigEndian.Uint32(pkt[g.iph+4:])
	case 17: // UDP
		l4 = 8
	default:
		return g, false
	}
	if len(pkt) <= g.iph+l4 {
		return g, false // no payload: nothing to coalesce
	}
	g.key.b[0], g.key.b[1] = pkt[0]>>4, proto
	g.key.n = 2 + copy(g.key.b[2:], addrs)
	g.key.n += copy(g.key.b[g.key.n:], pkt[g.iph:g.iph+4])
	g.payload = len(pkt) - g.iph - l4
	return g, true
}

// groHeadRoom is how many bytes a head may grow to in a full-capacity
// stage: wireguard-go coalesces while cap(buf) - 2*offset holds the
// result, with the packet at offset virtioNetHdrLen.
const groHeadRoom = stageSize - 2*virtioNetHdrLen

// groHeadersMatch mirrors wireguard-go's conditions on the headers of a
// packet appended to a head: the IP fields it compares (ToS or traffic
// class, DF, TTL or hop limit) and, for TCP, the options, byte for byte
// (the timestamp option changes every millisecond or so, so one TSO
// burst's segments match each other and not the next burst's).
func groHeadersMatch(pkt, head []byte, g groSeg, hg *groSeg) bool {
	if pkt[0]>>4 == 6 {
		if pkt[0] != head[0] || pkt[1]>>4 != head[1]>>4 || pkt[7] != head[7] {
			return false
		}
	} else if pkt[1] != head[1] || pkt[6]>>5 != head[6]>>5 || pkt[8] != head[8] {
		return false
	}
	if g.tcph != hg.tcph || g.iph != hg.iph {
		return false
	}
	return g.tcph <= 20 || bytes.Equal(pkt[g.iph+20:g.iph+g.tcph], head[hg.iph+20:hg.iph+hg.tcph])
}

// planHeads returns, as a bit per packet of pkts (at most 64), the packets
// predicted to be GRO heads with followers: the ones to stage with full
// capacity.
//
// It follows each flow's latest GRO item, as wireguard-go appends to it:
// a packet joins the item if its headers match the head's, its sequence
// number follows the item's last byte, it is no larger than the head's
// payload and the item has room and has not ended (PSH, or a smaller
// packet appended); otherwise it heads the flow's next item. Predicting a
// follower where GRO starts an item is the costly mistake: the new item
// sits in a small stage, every later packet of the run finds no room in
// it and goes to the kernel alone (with 10 pushers, TSO bursts of
// different timestamps meeting in one write made 71 % of the responder's
// TCP writes single segments). Predicting a head where GRO appends only
// costs a full stage.
func planHeads(pkts [][]byte) uint64 {
	type flow struct {
		seg     groSeg // the head's
		head    int    // index of the flow's current head
		headLen int    // the head's length once its followers are appended
		next    uint32 // TCP: the sequence number that follows the item
		ended   bool   // nothing more is appended to the item
	}
	var flows [maxStages]flow
	nf := 0
	var heads uint64
	for i, pkt := range pkts[:min(len(pkts), maxStages)] {
		g, ok := groFlow(pkt)
		if !ok {
			continue
		}
		f := -1
		for j := nf - 1; j >= 0; j-- { // the latest flows first: runs of one flow are the common case
			if flows[j].seg.key == g.key {
				f = j
				break
			}
		}
		if f < 0 {
			f = nf
			nf++
		} else if fl := &flows[f]; !fl.ended && fl.headLen+g.payload <= groHeadRoom &&
			g.payload <= fl.seg.payload && (g.tcph == 0 || g.seq == fl.next) &&
			groHeadersMatch(pkt, pkts[fl.head], g, &fl.seg) {
			heads |= 1 << fl.head
			fl.headLen += g.payload
			fl.next += uint32(g.payload)
			fl.ended = g.psh || g.payload < fl.seg.payload
			continue
		}
		// The flow's first packet, or one GRO cannot append: it heads the
		// flow's next item.
		flows[f] = flow{seg: g, head: i, headLen: len(pkt), next: g.seq + uint32(g.payload), ended: g.psh}
	}
	return heads
}
