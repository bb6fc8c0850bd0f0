package dataplane

import (
	"testing"
	"time"
)

// TestDropLate: a standing batch loses packets to CoDel (counted in its
// peer's stats); a sparse batch with nothing behind it keeps them all.
func TestDropLate(t *testing.T) {
	pool := newBatchPool(64)
	t0 := time.Unix(1000, 0)
	mk := func(n int, born time.Time, st *peerStats) *batch {
		b := pool.Get()
		b.N, b.born, b.stats = n, born, st
		return b
	}
	var st peerStats
	c := codel{Target: time.Millisecond, Interval: 10 * time.Millisecond}
	// Arm: the first late batch starts the interval, drops nothing.
	b := mk(10, t0.Add(-5*time.Millisecond), &st)
	if n := b.DropLate(&c, t0, false, nil); n != 0 {
		t.Fatalf("first late batch: %d dropped, want 0", n)
	}
	b.Release()
	// A sparse batch (a ping) a whole interval later: not dropped, and
	// the state resets.
	b = mk(1, t0.Add(15*time.Millisecond), &st)
	if n := b.DropLate(&c, t0.Add(20*time.Millisecond), false, nil); n != 0 || b.Live() != 1 {
		t.Fatalf("sparse batch: %d dropped, want 0", n)
	}
	b.Release()
	// A standing queue above target for a whole interval: one drop.
	for _, at := range []time.Duration{30 * time.Millisecond, 40 * time.Millisecond} {
		b = mk(8, t0.Add(at-5*time.Millisecond), &st)
		n := b.DropLate(&c, t0.Add(at), true, nil)
		want := 0
		if at == 40*time.Millisecond {
			want = 1
		}
		if n != want || b.Live() != 8-want {
			t.Fatalf("standing batch at %v: %d dropped (%d live), want %d", at, n, b.Live(), want)
		}
		if want == 1 && b.Pkts[0].Drop != QueueDelay {
			t.Fatalf("dropped packet's reason %v, want %v", b.Pkts[0].Drop, QueueDelay)
		}
		b.Release()
	}
	if got := st.Drops.Get(QueueDelay); got != 1 {
		t.Fatalf("QueueDelay drops counted %d, want 1", got)
	}
	// Without stats, drops go to the global counters.
	var global dropCounters
	b = mk(8, t0, nil)
	if n := b.DropLate(&c, t0.Add(55*time.Millisecond), true, &global); n == 0 || global.Get(QueueDelay) != uint64(n) {
		t.Fatalf("global drops: %d dropped, counted %d", n, global.Get(QueueDelay))
	}
	b.Release()
}

func BenchmarkDropLate(b *testing.B) {
	pool := newBatchPool(64)
	bt := pool.Get()
	bt.N = maxBatch
	var c codel
	now := time.Now()
	bt.born = now.Add(-time.Millisecond)
	b.ReportAllocs()
	for b.Loop() {
		bt.DropLate(&c, now, true, nil)
	}
}
