package dataplane

import (
	"encoding/binary"
	"sync/atomic"
	"time"
)

// Echo turnarounds: the two spans of an idle peer's ping that no stage of
// the sojourn histograms covers, found by matching an ICMP echo request
// with its reply (by identifier, sequence number and address pair) as they
// pass the node's TUN device:
//
//   - here: the request's TUN write -> its reply's TUN read. On the pinged
//     node (the responder) this is the host's own answer, the reply's wait
//     in the TUN device's queue and the TUN reader's lateness in reading it:
//     the reader has no kernel stamp, so nothing else times it.
//     Split in two at the return of the request's TUN write (read: the
//     reply's wait once the write is done).
//   - trip: the request's TUN read -> its reply taken by the TUN writer. On
//     the pinging node (the idle peer) this is the round trip as its daemon
//     sees it; the ping's RTT minus it is the pinging host's own TUN queue
//     and reader, and trip minus both nodes' stages is the wire.
//
// Recorded only while the histograms record, and only for batches of
// class ping (classOf already read them), so a bulk batch costs nothing;
// a ping batch costs a few atomic operations per echo. The tables are
// fixed: a slot taken by a newer echo loses the older one (not recorded).

// echoSlots is each table's size: more than the echoes in flight at once
// (a few pings, each in flight for milliseconds).
const echoSlots = 128

type echoSlot struct {
	key  atomic.Uint64 // echoKey; 0: empty
	at   atomic.Int64  // Unix ns the request passed
	done atomic.Int64  // Unix ns its TUN write returned (hereIn only; 0: not yet)
}

// echoTable holds requests that passed the TUN device one way, until their
// replies pass it the other way.
type echoTable [echoSlots]echoSlot

// slot spreads keys over the table: the low bits alone are the address
// pair, the same for every echo of one peer.
func (t *echoTable) slot(key uint64) *echoSlot {
	return &t[(key*0x9e3779b97f4a7c15)>>57] // the top 7 bits: echoSlots is 128
}

func (t *echoTable) put(key uint64, at time.Time) {
	s := t.slot(key)
	s.key.Store(0) // a concurrent take misses rather than pairs key and a stale time
	s.at.Store(at.UnixNano())
	s.done.Store(0)
	s.key.Store(key)
}

// written notes when the write of key's request returned.
func (t *echoTable) written(key uint64, done time.Time) {
	if s := t.slot(key); s.key.Load() == key {
		s.done.Store(done.UnixNano())
	}
}

// take returns when the request of key passed and when its write returned
// (zero if not yet), once.
func (t *echoTable) take(key uint64) (at, done time.Time, ok bool) {
	s := t.slot(key)
	if !s.key.CompareAndSwap(key, 0) {
		return time.Time{}, time.Time{}, false
	}
	at = time.Unix(0, s.at.Load())
	if d := s.done.Load(); d != 0 {
		done = time.Unix(0, d)
	}
	return at, done, true
}

func (t *echoTable) reset() {
	for i := range t {
		t[i].key.Store(0)
	}
}

// echoKey identifies an ICMP or ICMPv6 echo request or reply pkt by its
// identifier, sequence number and the XOR of its two addresses (the same
// for a request and its reply); ok is false for anything else.
func echoKey(pkt []byte) (key uint64, request, ok bool) {
	var body []byte
	var pair uint32
	switch {
	case len(pkt) >= 20 && pkt[0]>>4 == 4 && pkt[9] == 1:
		ihl := int(pkt[0]&0x0f) * 4
		if ihl < 20 || len(pkt) < ihl+8 {
			return 0, false, false
		}
		body = pkt[ihl:]
		pair = binary.BigEndian.Uint32(pkt[12:16]) ^ binary.BigEndian.Uint32(pkt[16:20])
		switch body[0] {
		case 8:
			request = true
		case 0:
		default:
			return 0, false, false
		}
	case len(pkt) >= 48 && pkt[0]>>4 == 6 && pkt[6] == 58:
		body = pkt[40:]
		for i := 8; i < 40; i += 4 {
			pair ^= binary.BigEndian.Uint32(pkt[i : i+4])
		}
		switch body[0] {
		case 128:
			request = true
		case 129:
		default:
			return 0, false, false
		}
	default:
		return 0, false, false
	}
	key = uint64(binary.BigEndian.Uint16(body[4:6]))<<48 | uint64(binary.BigEndian.Uint16(body[6:8]))<<32 | uint64(pair)
	if pkt[0]>>4 == 6 {
		key |= 1 << 62
	}
	return key | 1<<63, request, true // never 0, the empty slot
}

// echoTUNRead notes the echoes of a ping batch the TUN reader read at now:
// a request starts a trip, a reply ends a turnaround here.
func (s *sojourns) echoTUNRead(b *batch, now time.Time) {
	for i := range b.N {
		p := &b.Pkts[i]
		if p.Drop != OK {
			continue
		}
		key, req, ok := echoKey(p.Bytes())
		switch {
		case !ok:
		case req:
			s.tripOut.put(key, now)
		default:
			if at, done, ok := s.hereIn.take(key); ok {
				s.record(stEchoHere, classPing, at, now)
				if done.IsZero() || done.After(now) {
					done = now // read before the write returned: no wait for the reader
				}
				s.record(stEchoRead, classPing, done, now)
			}
		}
	}
}

// echoTUNWrite notes the echoes of a ping batch the TUN writer took at now:
// a request starts a turnaround here, a reply ends a trip.
func (s *sojourns) echoTUNWrite(b *batch, now time.Time) {
	for i := range b.N {
		p := &b.Pkts[i]
		if p.Drop != OK {
			continue
		}
		key, req, ok := echoKey(p.Bytes())
		switch {
		case !ok:
		case req:
			s.hereIn.put(key, now)
		default:
			if at, _, ok := s.tripOut.take(key); ok {
				s.record(stEchoTrip, classPing, at, now)
			}
		}
	}
}

// echoTUNWritten notes when the TUN write holding a ping batch's echo
// requests returned, splitting the turnaround here into the write call and
// the reply's wait for the TUN reader.
func (s *sojourns) echoTUNWritten(b *batch, done time.Time) {
	for i := range b.N {
		p := &b.Pkts[i]
		if p.Drop != OK {
			continue
		}
		if key, req, ok := echoKey(p.Bytes()); ok && req {
			s.hereIn.written(key, done)
		}
	}
}
