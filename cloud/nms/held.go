package nms

import (
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/cyphonic/cyphonic-go/messages"
	"github.com/cyphonic/cyphonic-go/transport/signaling"
)

// Sealed packets naming a session this process does not hold are refused
// in the socket readers, beyond a rate, before they take a worker's queue
// slot. The workers' lookup gate (lookup.go) already bounds the store
// lookups such packets cause, but each still waited its turn in a worker's
// queue: a flood faster than the workers can refuse it kept their queues
// standing near their bound, and every step of a real transaction (the
// request, the store's results coming back, the peer's ack) waited behind
// it, long enough for a node to give up (TestUnknownSessionFlood under
// -race). Now the flood beyond readerUnknownRate costs a read, a header
// peek and a set lookup.

// heldSet is the IDs of the sessions the workers hold, for the readers:
// written by the worker that adds or removes a session, read per sealed
// packet. Sharded so that readers rarely meet a writer.
type heldSet struct {
	shards [64]struct {
		mu sync.RWMutex
		m  map[uint32]struct{}
	}
}

func newHeldSet() *heldSet {
	h := &heldSet{}
	for i := range h.shards {
		h.shards[i].m = map[uint32]struct{}{}
	}
	return h
}

// add, remove and has do nothing on a nil set (a Service built by hand
// in a test).
func (h *heldSet) add(id uint32) {
	if h == nil {
		return
	}
	s := &h.shards[id%uint32(len(h.shards))]
	s.mu.Lock()
	s.m[id] = struct{}{}
	s.mu.Unlock()
}

func (h *heldSet) remove(id uint32) {
	if h == nil {
		return
	}
	s := &h.shards[id%uint32(len(h.shards))]
	s.mu.Lock()
	delete(s.m, id)
	s.mu.Unlock()
}

func (h *heldSet) has(id uint32) bool {
	if h == nil {
		return false
	}
	s := &h.shards[id%uint32(len(h.shards))]
	s.mu.RLock()
	_, ok := s.m[id]
	s.mu.RUnlock()
	return ok
}

// readerBucket is a token bucket shared by the socket readers.
type readerBucket struct {
	mu          sync.Mutex
	rate, burst float64
	tokens      float64
	last        time.Time
}

func newReaderBucket(rate float64) *readerBucket {
	b := max(1, rate/4)
	return &readerBucket{rate: rate, burst: b, tokens: b}
}

func (b *readerBucket) allow(now time.Time) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch d := now.Sub(b.last); {
	case b.last.IsZero():
		b.last = now
	case d > 0: // a clock stepped back refills nothing until it passes last again
		b.tokens = min(b.burst, b.tokens+d.Seconds()*b.rate)
		b.last = now
	}
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// readerUnknownFactor: the readers pass unknown-session packets at this
// multiple of the lookup rate, so that the workers' gate, which knows
// about lookups in flight and IDs just found unknown, still decides the
// ordinary case; the readers only cut a flood off before the queues.
const readerUnknownFactor = 2

// admitSealed is the NMS listeners' Admit: anything but a sealed packet
// naming a session not held here passes; those pass within the rate.
func (s *Service) admitSealed(_ *net.UDPConn, data []byte, _ netip.AddrPort) bool {
	if t, _ := messages.PeekType(data); t != messages.TypeSignaling {
		return true
	}
	id, err := signaling.PeekSession(data)
	if err != nil || s.held.has(id) {
		return true
	}
	if s.unknownReads.allow(time.Now()) {
		return true
	}
	s.Counters.LookupRate.Add(1)
	return false
}
