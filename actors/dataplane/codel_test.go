package dataplane

import (
	"testing"
	"time"
)

// TestCoDelDrop walks the RFC 8289 state machine through a sequence of
// dequeues: (offset from t0, sojourn, backlog) -> dropped?
func TestCoDelDrop(t *testing.T) {
	const target, interval = 2 * time.Millisecond, 50 * time.Millisecond
	type step struct {
		at      time.Duration
		sojourn time.Duration
		backlog bool
		want    bool
	}
	tests := []struct {
		name  string
		steps []step
	}{
		{"below target never drops", []step{
			{0, time.Millisecond, true, false},
			{100 * time.Millisecond, time.Millisecond, true, false},
			{time.Second, time.Millisecond, true, false},
		}},
		{"above target drops only after a whole interval", []step{
			{0, 10 * time.Millisecond, true, false},
			{49 * time.Millisecond, 10 * time.Millisecond, true, false},
			{50 * time.Millisecond, 10 * time.Millisecond, true, true},
			// The first drop sets the next one interval/sqrt(1) later...
			{60 * time.Millisecond, 10 * time.Millisecond, true, false},
			{99 * time.Millisecond, 10 * time.Millisecond, true, false},
			{100 * time.Millisecond, 10 * time.Millisecond, true, true},
			// ... then interval/sqrt(2) ≈ 35.4ms after that.
			{135 * time.Millisecond, 10 * time.Millisecond, true, false},
			{136 * time.Millisecond, 10 * time.Millisecond, true, true},
		}},
		{"dipping below target resets the clock", []step{
			{0, 10 * time.Millisecond, true, false},
			{40 * time.Millisecond, time.Millisecond, true, false},
			{60 * time.Millisecond, 10 * time.Millisecond, true, false},
			{100 * time.Millisecond, 10 * time.Millisecond, true, false},
			{110 * time.Millisecond, 10 * time.Millisecond, true, true},
		}},
		{"a sparse flow is never dropped", []step{
			{0, 30 * time.Millisecond, false, false},
			{50 * time.Millisecond, 30 * time.Millisecond, false, false},
			{100 * time.Millisecond, 30 * time.Millisecond, false, false},
			{time.Second, 30 * time.Millisecond, false, false},
		}},
		{"leaving the dropping state on an emptied queue", []step{
			{0, 10 * time.Millisecond, true, false},
			{50 * time.Millisecond, 10 * time.Millisecond, true, true},
			{90 * time.Millisecond, 10 * time.Millisecond, false, false},
			{95 * time.Millisecond, 10 * time.Millisecond, true, false},
		}},
	}
	t0 := time.Unix(1000, 0)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := CoDel{Target: target, Interval: interval}
			for i, s := range tt.steps {
				if got := c.Drop(s.sojourn, t0.Add(s.at), s.backlog); got != s.want {
					t.Fatalf("step %d (at %v, sojourn %v, backlog %v): drop = %v, want %v", i, s.at, s.sojourn, s.backlog, got, s.want)
				}
			}
		})
	}
}

// TestCoDelZeroValueDefaults: the zero value behaves as the defaults.
func TestCoDelZeroValueDefaults(t *testing.T) {
	var c CoDel
	t0 := time.Unix(1000, 0)
	late := 10 * DefaultCoDelTarget
	if c.Drop(late, t0, true) {
		t.Fatal("dropped at the first late packet")
	}
	if c.Drop(late, t0.Add(DefaultCoDelInterval-time.Nanosecond), true) {
		t.Fatal("dropped before a whole interval")
	}
	if !c.Drop(late, t0.Add(DefaultCoDelInterval), true) || !c.Dropping() {
		t.Fatal("did not drop after a whole interval above target")
	}
}

// TestDropLate: a standing batch loses packets to CoDel (counted in its
// peer's stats); a sparse batch with nothing behind it keeps them all.
func TestDropLate(t *testing.T) {
	pool := newBatchPool(64)
	t0 := time.Unix(1000, 0)
	mk := func(n int, born time.Time, st *Stats) *Batch {
		b := pool.Get()
		b.N, b.born, b.stats = n, born, st
		return b
	}
	var st Stats
	c := CoDel{Target: time.Millisecond, Interval: 10 * time.Millisecond}
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
	var global Counters
	b = mk(8, t0, nil)
	if n := b.DropLate(&c, t0.Add(55*time.Millisecond), true, &global); n == 0 || global.Get(QueueDelay) != uint64(n) {
		t.Fatalf("global drops: %d dropped, counted %d", n, global.Get(QueueDelay))
	}
	b.Release()
}

// TestFairQueueBacklog: Next says whether the flow still has batches.
func TestFairQueueBacklog(t *testing.T) {
	q := NewFairQueue(1)
	f := NewFlow(4)
	q.Push(f, &Batch{seq: 1})
	q.Push(f, &Batch{seq: 2})
	for _, want := range []bool{true, false} {
		it, ok := q.Next()
		if !ok || it.Backlog != want {
			t.Fatalf("Next: ok %v backlog %v, want backlog %v", ok, it.Backlog, want)
		}
	}
}

func BenchmarkDropLate(b *testing.B) {
	pool := newBatchPool(64)
	bt := pool.Get()
	bt.N = MaxBatch
	var c CoDel
	now := time.Now()
	bt.born = now.Add(-time.Millisecond)
	b.ReportAllocs()
	for b.Loop() {
		bt.DropLate(&c, now, true, nil)
	}
}
