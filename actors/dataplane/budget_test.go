package dataplane

import (
	"testing"
	"time"

	"github.com/cyphonic/cyphonic-go/actors/supervise"
)

func TestBudgetShares(t *testing.T) {
	type step struct {
		peer, n int  // take n packets for peer (n < 0: give -n back)
		ok      bool // take's answer
	}
	tests := []struct {
		name  string
		max   int
		steps []step
	}{
		{"under the budget anyone takes", 256, []step{{0, 64, true}, {1, 64, true}, {0, 128, true}}},
		{"a full budget refuses the peer over its share", 256, []step{{0, 128, true}, {0, 128, true}, {0, 1, false}}},
		{"a full budget still takes an idle peer", 256, []step{{0, 256, true}, {1, 2, true}, {0, 64, false}}},
		{"the share is the budget over the active peers", 256, []step{
			{0, 200, true}, {1, 64, true}, // 264 > 256: peer 1 holds 64 <= 256/2
			{1, 64, true}, // 328 > 256, peer 1 at 128 <= 128
			{1, 1, false}, // 129 > 128
		}},
		{"giving back makes room", 128, []step{{0, 128, true}, {0, 64, false}, {0, -64, true}, {0, 64, true}}},
		{"a peer that gave all back is no longer active", 128, []step{
			{0, 64, true}, {1, 64, true}, {1, -64, true},
			{0, 64, true}, {0, 1, false}, // share 128/1: peer 0 at 129 would exceed it
		}},
	}
	for _, tt := range tests {
		g := newBudget(tt.max)
		shares := []*share{g.share(), g.share()}
		for i, st := range tt.steps {
			s := shares[st.peer]
			if st.n < 0 {
				s.give(-st.n)
				continue
			}
			if got := s.take(st.n); got != st.ok {
				t.Errorf("%s: step %d: take(%d) for peer %d = %v, want %v (budget %d/%d, %d active)",
					tt.name, i, st.n, st.peer, got, st.ok, g.Len(), g.max, g.active.Load())
			}
		}
		for _, s := range shares {
			s.give(int(s.n.Load()))
		}
		if g.Len() != 0 || g.active.Load() != 0 {
			t.Errorf("%s: after giving all back: %d packets, %d active", tt.name, g.Len(), g.active.Load())
		}
	}
}

// A burst of full batches from many peers, none released (the writer
// stalled): what is admitted stays within the budget plus a batch per
// peer, however long the burst; the per-peer batch bounds alone let
// peers times their slots times maxBatch in (the 10-pusher responder's
// 6,700 buffers).
func TestBudgetHoldsUnderBurst(t *testing.T) {
	const peers, slots, packets = 10, 32, 1024
	pool := newBatchPool(64)
	g := newBudget(packets)
	var held []*batch
	limits := make([]*supervise.Limiter, peers)
	shares := make([]*share, peers)
	for p := range peers {
		limits[p], shares[p] = supervise.NewLimiter(slots), g.share()
	}
	for range slots {
		for p := range peers {
			b := fullBatch(pool, maxBatch, 1400)
			nb := b.admit(limits[p], shares[p])
			if nb != b {
				b.Release()
			}
			if nb != nil {
				held = append(held, nb)
			}
		}
	}
	in := 0
	for _, b := range held {
		in += b.N
	}
	if limit := packets + peers*maxBatch; in > limit || g.Len() != in {
		t.Errorf("%d packets admitted (budget counts %d), want <= %d", in, g.Len(), limit)
	}
	if in < packets {
		t.Errorf("only %d packets admitted, want the budget's %d", in, packets)
	}
	for _, b := range held {
		b.Release()
	}
	if g.Len() != 0 || g.active.Load() != 0 {
		t.Errorf("after release: %d packets, %d active", g.Len(), g.active.Load())
	}
	for p, l := range limits {
		if l.Len() != 0 {
			t.Errorf("peer %d: %d slots still taken", p, l.Len())
		}
	}
}

// A batch the budget refuses still lets its first small packets through
// (a pushing peer's pings and ACKs), in a batch of their own holding only
// their buffers.
func TestAdmitKeepsSmallPackets(t *testing.T) {
	pool := newBatchPool(2048)
	g := newBudget(maxBatch)
	hog, s := g.share(), g.share()
	if !hog.take(maxBatch) {
		t.Fatal("the first take was refused")
	}
	s.take(maxBatch / 2) // s is now over its share of a full budget
	lens := []int{1400, 100, 1400, 84, 60, 1400}
	b := fullBatch(pool, len(lens), 1400)
	for i, l := range lens {
		b.Pkts[i].Len = l
	}
	var st peerStats
	b.stats = &st
	l := supervise.NewLimiter(4)
	nb := b.admit(l, s)
	if nb == b || nb == nil {
		t.Fatalf("admit = %p (b %p), want a batch of the small packets", nb, b)
	}
	if nb.N != sparseLen || nb.Pkts[0].Len != 100 || nb.Pkts[1].Len != 84 || nb.held != sparseLen {
		t.Errorf("kept %d packets (%d, %d), %d buffers; want the first %d small ones", nb.N, nb.Pkts[0].Len, nb.Pkts[1].Len, nb.held, sparseLen)
	}
	if b.N != len(lens)-sparseLen || nb.stats != &st {
		t.Errorf("refused batch left with %d packets, kept batch's stats %p", b.N, nb.stats)
	}
	if l.Len() != 1 {
		t.Errorf("%d slots taken, want the kept batch's 1", l.Len())
	}
	b.DropAll(QueueFull, nil)
	b.Release()
	nb.Release()
	if l.Len() != 0 || s.n.Load() != maxBatch/2 {
		t.Errorf("after release: %d slots, share %d", l.Len(), s.n.Load())
	}
	// Nothing small: nothing taken.
	b = fullBatch(pool, 3, 1400)
	if nb := b.admit(l, s); nb != nil || l.Len() != 0 {
		t.Errorf("a refused bulk batch was admitted as %p, %d slots", nb, l.Len())
	}
	b.Release()
}

// fullBatch reads n packets of size bytes into a batch of pool.
func fullBatch(pool *batchPool, n, size int) *batch {
	b := pool.Get()
	_, sizes, _ := b.ReadSlices(0)
	for i := range n {
		sizes[i] = size
	}
	b.Filled(n, 0)
	return b
}

// Packets the socket reader sheds before opening them count as the
// peer's Unopened as well as queue-full drops: their counters never reach
// the replay window, which counts them as Lost too, and the two must not
// read as two losses (the sojourn report and status show both).
func TestShedUnopenedCounted(t *testing.T) {
	pool := newBatchPool(2048)
	g := newBudget(maxBatch)
	if !g.share().take(maxBatch) { // another peer holds the whole budget
		t.Fatal("the first take was refused")
	}
	h := &peerHandle{}
	pipe := &peerPipe{InInflight: supervise.NewLimiter(4), OutInflight: supervise.NewLimiter(4), InShare: g.share()}
	h.pipe.Store(pipe)
	pipe.InShare.take(maxBatch / 2) // over its share of a full budget
	s := &peerSession{Peer: h, Pipe: pipe}
	d := &Dataplane{set: newSet()}
	d.toCrypto(s, fullBatch(pool, 3, 1400), time.Now()) // bulk only: nothing kept
	if got := h.Stats.Unopened.Load(); got != 3 {
		t.Errorf("Unopened = %d, want the 3 packets refused", got)
	}
	if got := h.Stats.Drops.Get(QueueFull); got != 3 {
		t.Errorf("queue-full drops = %d, want 3", got)
	}
	if got := h.Status().Unopened; got != 3 {
		t.Errorf("status unopened = %d, want 3", got)
	}
	if pipe.InInflight.Len() != 0 {
		t.Errorf("%d in-flight slots still taken", pipe.InInflight.Len())
	}
}
