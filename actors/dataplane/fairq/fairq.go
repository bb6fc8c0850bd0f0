// Package fairq is the data path's queue in front of a device writer: one
// bounded FIFO per flow (a peer), served round-robin with FQ-CoDel's
// new-flow priority, plus a queue of control packets that go first, and
// CoDel, the delay-based drop law each flow's single consumer runs. It is
// plain data structures: the data plane (package dataplane) instantiates
// it with its batches and applies the drops.
package fairq

import (
	"net/netip"
	"sync"
	"time"
)

// Flow is one peer's bounded FIFO of batches waiting for a device (sealed
// ones for the socket writer, opened ones for the TUN writer). B is the
// batch type, a pointer.
type Flow[B comparable] struct {
	// CoDel is the flow's delay-based drop law, run by the queue's single
	// consumer as it dequeues; the queue never touches it.
	CoDel CoDel

	ring    []B
	head    int
	n       int
	deficit int      // what the flow may still take this turn (deficit round robin)
	queued  bool     // linked into the active list
	next    *Flow[B] // active list link
	// emptied is when the flow's last queued batch was taken (the
	// queue's clock, ns; 0: never): how long it has been idle decides
	// whether its next batch is a new flow's.
	emptied int64
}

// NewFlow makes a flow holding at most depth batches.
func NewFlow[B comparable](depth int) *Flow[B] { return &Flow[B]{ring: make([]B, max(depth, 1))} }

// Control is a single packet for the socket that goes ahead of data
// (signaling, handshakes, keepalives, probe replies).
type Control struct {
	Pkt []byte
	To  netip.AddrPort
	// HopLimit, if not zero, is the packet's IP TTL or hop limit instead
	// of the socket's default: a hole-punch primer that must die before
	// the peer's NAT (see the data plane's punch.go).
	HopLimit uint8
}

// Item is what Queue.Next hands the writer: a batch, or (Batch is the zero
// value) a control packet.
type Item[B comparable] struct {
	Batch   B
	Control Control
	// Backlog: more batches of the same flow are queued behind Batch.
	Backlog bool
}

// Queue is the queue between a peer stage's sequencers (many producers)
// and one device writer goroutine (the socket writer outbound, the TUN
// writer inbound; the latter has no control packets). Control packets go first;
// data batches are served round-robin, a turn per peer (Quantum of Cost:
// one batch unless set), flows that just became active first, so a bulk
// flow cannot starve another peer's pings. Every queue is bounded and a
// full queue refuses (the caller drops and counts): producers never block.
type Queue[B comparable] struct {
	mu       sync.Mutex
	ctrl     []Control
	ctrlHead int
	ctrlN    int
	// Flows with work wait on one of two lists, as in FQ-CoDel (RFC 8290
	// §4.1): a new flow joins fresh and is served before the flows with
	// a standing backlog (stale), so a sparse flow such as a ping waits
	// for at most the few small batches of other new flows, not a turn
	// of every bulk peer. A flow leaves the lists as soon as its last
	// batch is taken, and its next batch is a new flow's only if
	//   - the flow has been empty for at least IdleAfter: a bulk flow
	//     that the writer drained and that refills a moment later is
	//     not new (it rejoins at the back of stale, keeping any
	//     overdraft), and
	//   - the batch costs at most FreshQuantum, which is also all a
	//     fresh turn allows before the flow moves to stale: a bulk
	//     flow back from a pause does not jump the queue with a full
	//     batch, and however often a flow comes back new it takes at
	//     most FreshQuantum per IdleAfter ahead of the others.
	// RFC 8290 instead keeps an emptied flow in the round until its next
	// turn finds it still empty; a ping arriving in the meantime waited
	// for that turn, up to a round of every backlogged flow, even when
	// its flow had been idle far longer than the round.
	fresh, stale flowList[B]
	ready        chan struct{}
	closed       bool
	// Cost is what a batch costs its flow's turn, and Quantum what a
	// turn allows (deficit round robin, RFC 8290 §4.2): a flow is served
	// batch after batch until it has taken Quantum. Set both before
	// use; with Cost nil every batch costs a whole Quantum, so a turn is
	// one batch. The data plane counts packets: with one batch per turn,
	// a peer whose socket reads or TUN reads come in bigger batches got
	// more of a saturated writer than the others.
	Cost    func(B) int
	Quantum int
	// IdleAfter is how long a flow must have been empty for its next
	// batch to be a new flow's (zero: DefaultIdleAfter).
	IdleAfter time.Duration
	// FreshQuantum is the most a new flow's batch may cost to go
	// fresh, and the allowance of its fresh turn (zero: Quantum, so
	// any batch of an idle flow is new).
	FreshQuantum int
	// Now is the queue's clock in ns (nil: a monotonic clock); tests set
	// it. It is read once per Push of an idle flow and once when a flow
	// empties, never per packet.
	Now func() int64

	epoch time.Time // the monotonic clock's zero
}

// DefaultIdleAfter is the default Queue.IdleAfter: longer than the gap
// between a bulk flow's batches while the writer keeps up (a socket read
// or two), far shorter than a ping's interval.
const DefaultIdleAfter = time.Millisecond

func (q *Queue[B]) now() int64 {
	if q.Now != nil {
		return q.Now()
	}
	return int64(time.Since(q.epoch)) + 1 // never 0, which means "never emptied"
}

func (q *Queue[B]) idleAfter() int64 {
	if q.IdleAfter <= 0 {
		return int64(DefaultIdleAfter)
	}
	return int64(q.IdleAfter)
}

func (q *Queue[B]) freshQuantum() int {
	if q.FreshQuantum <= 0 {
		return q.quantum()
	}
	return q.FreshQuantum
}

// cost is b's cost, at least 1.
func (q *Queue[B]) cost(b B) int {
	if q.Cost == nil {
		return q.quantum()
	}
	return max(q.Cost(b), 1)
}

func (q *Queue[B]) quantum() int { return max(q.Quantum, 1) }

// New makes a queue holding up to controlDepth control packets.
func New[B comparable](controlDepth int) *Queue[B] {
	return &Queue[B]{ctrl: make([]Control, max(controlDepth, 1)), ready: make(chan struct{}, 1), epoch: time.Now()}
}

// Ready is signalled when the queue may have work (level-triggered by Next:
// drain until Next reports false, then wait again).
func (q *Queue[B]) Ready() <-chan struct{} { return q.ready }

func (q *Queue[B]) wake() {
	select {
	case q.ready <- struct{}{}:
	default:
	}
}

// Push queues b on f. It reports false (b not taken) if f is full or the
// queue is closed.
func (q *Queue[B]) Push(f *Flow[B], b B) bool {
	q.mu.Lock()
	if q.closed || f.n == len(f.ring) {
		q.mu.Unlock()
		return false
	}
	f.ring[(f.head+f.n)%len(f.ring)] = b
	f.n++
	if !f.queued {
		q.activate(f, b)
	}
	q.mu.Unlock()
	q.wake()
	return true
}

// activate links the idle flow f, whose first batch is b, into fresh if it
// is a new flow (see Queue), else at the back of stale.
func (q *Queue[B]) activate(f *Flow[B], b B) {
	if (f.emptied == 0 || q.now()-f.emptied >= q.idleAfter()) && q.cost(b) <= q.freshQuantum() {
		f.deficit = q.freshQuantum()
		q.fresh.push(f)
		return
	}
	// Back soon after it emptied (or with a big batch): its place is
	// behind the flows already waiting, with any overdraft of its last
	// turn still to pay (a leftover allowance is not kept, as in DRR).
	f.deficit = min(f.deficit, 0) + q.quantum()
	q.stale.push(f)
}

// flowList is a FIFO of flows linked through Flow.next.
type flowList[B comparable] struct{ head, tail *Flow[B] }

func (l *flowList[B]) push(f *Flow[B]) {
	f.queued, f.next = true, nil
	if l.tail == nil {
		l.head, l.tail = f, f
	} else {
		l.tail.next, l.tail = f, f
	}
}

func (l *flowList[B]) pop() *Flow[B] {
	f := l.head
	if f == nil {
		return nil
	}
	l.head = f.next
	if l.head == nil {
		l.tail = nil
	}
	f.queued, f.next = false, nil
	return f
}

// PushControl queues a control packet. It reports false if the control
// queue is full or closed.
func (q *Queue[B]) PushControl(c Control) bool {
	q.mu.Lock()
	if q.closed || q.ctrlN == len(q.ctrl) {
		q.mu.Unlock()
		return false
	}
	q.ctrl[(q.ctrlHead+q.ctrlN)%len(q.ctrl)] = c
	q.ctrlN++
	q.mu.Unlock()
	q.wake()
	return true
}

// Next takes the next item: a control packet if any, else the head batch of
// the next flow in round-robin order.
func (q *Queue[B]) Next() (Item[B], bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.ctrlN > 0 {
		c := q.ctrl[q.ctrlHead]
		q.ctrl[q.ctrlHead] = Control{}
		q.ctrlHead = (q.ctrlHead + 1) % len(q.ctrl)
		q.ctrlN--
		return Item[B]{Control: c}, true
	}
	for {
		l := &q.fresh
		if l.head == nil {
			l = &q.stale
		}
		f := l.head
		switch {
		case f == nil:
			return Item[B]{}, false
		case f.n == 0:
			// Its last batch was taken (emptied is stamped) and
			// nothing came since: it leaves the lists at once, also
			// with its turn used up, so that it is never found
			// queued, and not new, by a batch after a long idle.
			l.pop()
			continue
		case f.deficit <= 0:
			// Its turn is used up: to the back of stale with the next
			// turn's allowance.
			f.deficit += q.quantum()
			l.pop()
			q.stale.push(f)
			continue
		}
		var zero B
		b := f.ring[f.head]
		f.ring[f.head] = zero
		f.head = (f.head + 1) % len(f.ring)
		f.n--
		f.deficit -= q.cost(b)
		if f.n == 0 {
			f.emptied = q.now()
		}
		// f stays at the head of its list: its turn goes on while it
		// has allowance left.
		return Item[B]{Batch: b, Backlog: f.n > 0}, true
	}
}

// Close refuses further pushes and returns everything still queued, so the
// caller can release it.
func (q *Queue[B]) Close() []B {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.closed = true
	var left []B
	var zero B
	for _, l := range []*flowList[B]{&q.fresh, &q.stale} {
		for f := l.pop(); f != nil; f = l.pop() {
			for f.n > 0 {
				left = append(left, f.ring[f.head])
				f.ring[f.head] = zero
				f.head = (f.head + 1) % len(f.ring)
				f.n--
			}
		}
	}
	clear(q.ctrl)
	q.ctrlN = 0
	return left
}
