package tun

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
// grouping (same addresses, protocol and ports; the head's capacity; TCP
// segments with data and no flag but ACK and PSH, and none after a PSH)
// but not its finer conditions (sequence numbers, UDP segment sizes):
// where it guesses wrong, a head without room just coalesces less, never
// incorrectly (wireguard-go checks the capacity itself).

// groKey is a packet's flow as GRO groups it: version, protocol, the
// addresses and ports, compared as bytes.
type groKey struct {
	n int
	b [1 + 1 + 32 + 4]byte
}

// groFlow extracts pkt's flow and the bytes it would add to its head (the
// payload after the IP and TCP or UDP headers); psh: a TCP segment with
// PSH, after which GRO appends nothing to its item. ok is false for what
// GRO never coalesces (not TCP or UDP, fragments, too short, a TCP
// segment without data or with a flag but ACK and PSH).
func groFlow(pkt []byte) (k groKey, payload int, psh, ok bool) {
	if len(pkt) < 20 {
		return k, 0, false, false
	}
	var proto byte
	var iphLen int
	var addrs []byte
	switch pkt[0] >> 4 {
	case 4:
		iphLen = int(pkt[0]&0x0f) * 4
		if iphLen < 20 || len(pkt) < iphLen || pkt[6]&0x20 != 0 || pkt[6]&0x1f != 0 || pkt[7] != 0 {
			return k, 0, false, false // options aside, fragments are never coalesced
		}
		proto, addrs = pkt[9], pkt[12:20]
	case 6:
		iphLen = 40
		if len(pkt) < iphLen {
			return k, 0, false, false
		}
		proto, addrs = pkt[6], pkt[8:40]
	default:
		return k, 0, false, false
	}
	var l4 int
	switch proto {
	case 6: // TCP
		if len(pkt) < iphLen+20 {
			return k, 0, false, false
		}
		const ack, pshFlag = 0x10, 0x08
		switch pkt[iphLen+13] {
		case ack:
		case ack | pshFlag:
			psh = true
		default:
			return k, 0, false, false
		}
		l4 = int(pkt[iphLen+12]>>4) * 4
	case 17: // UDP
		l4 = 8
	default:
		return k, 0, false, false
	}
	if l4 < 8 || len(pkt) <= iphLen+l4 {
		return k, 0, false, false // no payload: nothing to coalesce
	}
	k.b[0], k.b[1] = pkt[0]>>4, proto
	k.n = 2 + copy(k.b[2:], addrs)
	k.n += copy(k.b[k.n:], pkt[iphLen:iphLen+4])
	return k, len(pkt) - iphLen - l4, psh, true
}

// groHeadRoom is how many bytes a head may grow to in a full-capacity
// stage: wireguard-go coalesces while cap(buf) - 2*offset holds the
// result, with the packet at offset virtioNetHdrLen.
const groHeadRoom = stageSize - 2*virtioNetHdrLen

// planHeads returns, as a bit per packet of pkts (at most 64), the packets
// predicted to be GRO heads with followers: the ones to stage with full
// capacity.
func planHeads(pkts [][]byte) uint64 {
	type flow struct {
		key     groKey
		head    int  // index of the flow's current head
		headLen int  // the head's length once its followers are appended
		ended   bool // a PSH was coalesced: the next packet heads a new run
	}
	var flows [maxStages]flow
	nf := 0
	var heads uint64
	for i, pkt := range pkts[:min(len(pkts), maxStages)] {
		k, payload, psh, ok := groFlow(pkt)
		if !ok {
			continue
		}
		f := -1
		for j := nf - 1; j >= 0; j-- { // the latest flows first: runs of one flow are the common case
			if flows[j].key == k {
				f = j
				break
			}
		}
		switch {
		case f < 0:
			flows[nf] = flow{key: k, head: i, headLen: len(pkt), ended: psh}
			nf++
		case !flows[f].ended && flows[f].headLen+payload <= groHeadRoom:
			heads |= 1 << flows[f].head
			flows[f].headLen += payload
			flows[f].ended = psh
		default: // the head is full or ended: this packet heads the flow's next run
			flows[f] = flow{key: k, head: i, headLen: len(pkt), ended: psh}
		}
	}
	return heads
}
