package fairq

import (
	"net/netip"
	"slices"
	"testing"
	"time"
)

// batch stands in for the data plane's batches.
type batch struct {
	seq  uint64
	cost int // packets, for the deficit tests
}

// TestFairQueueRoundRobin: control first, then one batch per flow per turn,
// each flow in FIFO order; full flows refuse; Close returns what is left.
func TestFairQueueRoundRobin(t *testing.T) {
	q := New[*batch](2)
	bulk, ping := NewFlow[*batch](3), NewFlow[*batch](3)
	mk := func(seq uint64) *batch { return &batch{seq: seq} }
	for i := range uint64(3) {
		if !q.Push(bulk, mk(100+i)) {
			t.Fatalf("bulk push %d refused", i)
		}
	}
	if q.Push(bulk, mk(103)) {
		t.Fatal("push to a full flow accepted")
	}
	q.Push(ping, mk(1))
	q.Push(ping, mk(2))
	ctl := Control{Pkt: []byte("hs"), To: netip.MustParseAddrPort("192.0.2.1:1")}
	q.PushControl(ctl)
	q.PushControl(ctl)
	if q.PushControl(ctl) {
		t.Fatal("push to a full control queue accepted")
	}
	var got []uint64
	for {
		it, ok := q.Next()
		if !ok {
			break
		}
		if it.Batch == nil {
			for _, g := range got {
				if g != 0 {
					t.Fatal("control packet after data")
				}
			}
			got = append(got, 0)
			continue
		}
		got = append(got, it.Batch.seq)
	}
	want := []uint64{0, 0, 100, 1, 101, 2, 102}
	if len(got) != len(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("got %v, want %v", got, want)
		}
	}
	q.Push(bulk, mk(7))
	if left := q.Close(); len(left) != 1 || left[0].seq != 7 {
		t.Fatalf("Close returned %v", left)
	}
	if q.Push(ping, mk(8)) || q.PushControl(ctl) {
		t.Fatal("push after Close accepted")
	}
}

func BenchmarkFairQueue(b *testing.B) {
	q := New[*batch](16)
	flows := []*Flow[*batch]{NewFlow[*batch](64), NewFlow[*batch](64), NewFlow[*batch](64)}
	bt := &batch{}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		q.Push(flows[i%3], bt)
		q.Next()
	}
}

// TestFairQueueSparseFirst: a flow that was empty goes ahead of flows with
// a standing backlog, but only for one batch: with a backlog of its own it
// takes its turn behind them.
func TestFairQueueSparseFirst(t *testing.T) {
	q := New[*batch](1)
	bulk1, bulk2, ping := NewFlow[*batch](4), NewFlow[*batch](4), NewFlow[*batch](4)
	mk := func(seq uint64) *batch { return &batch{seq: seq} }
	for i := range uint64(3) {
		q.Push(bulk1, mk(10+i))
		q.Push(bulk2, mk(20+i))
	}
	next := func() uint64 {
		t.Helper()
		it, ok := q.Next()
		if !ok || it.Batch == nil {
			t.Fatal("queue empty")
		}
		return it.Batch.seq
	}
	var got []uint64
	got = append(got, next(), next()) // both bulk flows now stale
	q.Push(ping, mk(1))
	q.Push(ping, mk(2))
	for range 6 {
		got = append(got, next())
	}
	want := []uint64{10, 20, 1, 11, 21, 2, 12, 22}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("got %v, want %v", got, want)
		}
	}
	if _, ok := q.Next(); ok {
		t.Fatal("queue not empty")
	}
}

// TestFairQueueBacklog: Next says whether the flow still has batches.
func TestFairQueueBacklog(t *testing.T) {
	q := New[*batch](1)
	f := NewFlow[*batch](4)
	q.Push(f, &batch{seq: 1})
	q.Push(f, &batch{seq: 2})
	for _, want := range []bool{true, false} {
		it, ok := q.Next()
		if !ok || it.Backlog != want {
			t.Fatalf("Next: ok %v backlog %v, want backlog %v", ok, it.Backlog, want)
		}
	}
}

// TestFairQueueRefillNotFresh: a flow is fresh (served ahead of the others)
// only after a whole round with nothing queued. Bulk flows that the writer
// drains at every turn and that refill before their next one keep their
// place in the round, so a ping waits for none of them; a flow whose turn
// came and found it empty is fresh again at its next batch.
func TestFairQueueRefillNotFresh(t *testing.T) {
	type op struct {
		push string // push a batch with seq on this flow; "" means Next
		seq  uint64 // pushed, or wanted from Next (0: want the queue empty)
		cost int    // of a pushed batch, with quantum set
	}
	push := func(f string, seq uint64) op { return op{push: f, seq: seq, cost: 16} }
	next := func(seq uint64) op { return op{seq: seq} }
	for _, tc := range []struct {
		name    string
		quantum int // 0: one batch a turn; else batches cost 16
		ops     []op
	}{
		{"bulk flows drained and refilled within a round are not fresh", 0, []op{
			push("a", 10), push("b", 20), next(10), next(20),
			push("a", 11), push("b", 21), push("ping", 1),
			next(1), next(11), next(21), next(0),
		}},
		{"a flow idle for a whole round is fresh again", 0, []op{
			push("a", 10), push("b", 20), next(10), next(20), next(0),
			push("b", 21), push("a", 11), next(21), next(11), next(0),
		}},
		{"a served ping leaves the round once found empty", 0, []op{
			push("a", 10), push("a", 11), push("a", 12), next(10),
			push("ping", 1), next(1), next(11),
			next(12), // ping's turn came first and found it empty
			push("ping", 2), push("a", 13), next(2), next(13), next(0),
		}},
		{"a flow drained in the middle of its turn stays in the round", 64, []op{
			push("a", 10), push("c", 30), push("c", 31), push("c", 32), push("c", 33), push("c", 34), push("c", 35),
			next(10), next(30), next(31), // a emptied in its fresh turn: to stale
			push("a", 11), next(32), next(33), // c's turn (4 × 16) used up
			next(11),                              // a's stale turn: it drains with allowance left...
			next(34), push("a", 12), push("p", 1), // ...and refills before its next turn
			next(1), next(35), next(12), next(0),
		}},
		{"a refilled flow waits behind the flows ahead of it", 0, []op{
			push("a", 10), push("b", 20), push("c", 30), next(10),
			push("a", 11), next(20), next(30), next(11), next(0),
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			q := New[*batch](1)
			if tc.quantum > 0 {
				q.Cost = func(b *batch) int { return b.cost }
				q.Quantum = tc.quantum
			}
			flows := map[string]*Flow[*batch]{}
			for i, o := range tc.ops {
				if o.push != "" {
					f := flows[o.push]
					if f == nil {
						f = NewFlow[*batch](8)
						flows[o.push] = f
					}
					if !q.Push(f, &batch{seq: o.seq, cost: o.cost}) {
						t.Fatalf("op %d: push %s/%d refused", i, o.push, o.seq)
					}
					continue
				}
				it, ok := q.Next()
				switch {
				case o.seq == 0 && ok:
					t.Fatalf("op %d: Next gave %d, want the queue empty", i, it.Batch.seq)
				case o.seq != 0 && !ok:
					t.Fatalf("op %d: queue empty, want %d", i, o.seq)
				case ok && it.Batch.seq != o.seq:
					t.Fatalf("op %d: Next gave %d, want %d", i, it.Batch.seq, o.seq)
				}
			}
		})
	}
}

// TestFairQueueDeficit: with a cost per batch, backlogged flows get equal
// cost per round (deficit round robin), not equal batches: a flow of big
// batches and a flow of small ones share a writer by packets. A fresh
// flow still goes first.
func TestFairQueueDeficit(t *testing.T) {
	type flow struct {
		name string
		cost []int // its batches' costs, queued before the first Next
	}
	for _, tc := range []struct {
		name    string
		quantum int
		flows   []flow
		late    *flow  // pushed after the first Next
		want    string // flow names in service order
	}{
		{"big and small batches share by cost", 64, []flow{
			{"a", []int{64, 64, 64}}, {"b", []int{16, 16, 16, 16, 16, 16, 16, 16}},
		}, nil, "abbbbabbbba"},
		{"equal batches alternate", 64, []flow{
			{"a", []int{32, 32, 32, 32}}, {"b", []int{32, 32, 32, 32}},
		}, nil, "aabbaabb"},
		{"an overdraft is paid back next round", 64, []flow{
			{"a", []int{60, 60, 60}}, {"b", []int{64, 64, 64}},
		}, nil, "aababb"}, // a: 64 -> 4 -> -56, next turn +64 = 8 -> -52: 180 to b's 192
		{"a fresh flow goes ahead of the others' second turns", 64, []flow{
			{"a", []int{64, 64}}, {"b", []int{64, 64}},
		}, &flow{"p", []int{1}}, "abpab"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			q := New[*batch](1)
			q.Cost = func(b *batch) int { return b.cost }
			q.Quantum = tc.quantum
			names := map[*Flow[*batch]]string{}
			owner := map[*batch]string{}
			push := func(fl flow) {
				f := NewFlow[*batch](16)
				names[f] = fl.name
				for i, c := range fl.cost {
					b := &batch{seq: uint64(i), cost: c}
					owner[b] = fl.name
					if !q.Push(f, b) {
						t.Fatal("push refused")
					}
				}
			}
			for _, fl := range tc.flows {
				push(fl)
			}
			var got []byte
			for {
				it, ok := q.Next()
				if !ok {
					break
				}
				got = append(got, owner[it.Batch]...)
				if tc.late != nil && len(got) == 1 {
					push(*tc.late)
				}
			}
			if string(got) != tc.want {
				t.Fatalf("served %s, want %s", got, tc.want)
			}
		})
	}
}

// TestFairQueueIdleFlows: a flow is new (fresh, served ahead of the
// backlogged ones) when it has been empty for IdleAfter and its batch is
// small (FreshQuantum), whether or not a turn of the round has found it
// empty since. Each case's order differs from RFC 8290's rule (an emptied
// flow stays in the round until its next turn finds it empty; any batch
// of a flow out of the round is new), which the queue followed before.
func TestFairQueueIdleFlows(t *testing.T) {
	type op struct {
		push string        // push a batch with seq and cost on this flow; "" means Next or wait
		seq  uint64        // pushed, or wanted from Next (0: want the queue empty)
		cost int           // of a pushed batch
		wait time.Duration // advance the clock by this (no Next)
	}
	push := func(f string, seq uint64, cost int) op { return op{push: f, seq: seq, cost: cost} }
	bulk := func(f string, first uint64, n int) []op { // n batches of 16: four a turn
		var ops []op
		for i := range n {
			ops = append(ops, push(f, first+uint64(i), 16))
		}
		return ops
	}
	next := func(seqs ...uint64) []op {
		var ops []op
		for _, s := range seqs {
			ops = append(ops, op{seq: s})
		}
		return ops
	}
	wait := func(d time.Duration) op { return op{wait: d} }
	cat := func(parts ...[]op) []op { return slices.Concat(parts...) }
	one := func(o op) []op { return []op{o} }
	for _, tc := range []struct {
		name string
		ops  []op
	}{
		{"a ping on a flow idle past IdleAfter is fresh though its turn has not come round", cat(
			one(push("p", 1, 1)), bulk("a", 10, 8), bulk("b", 20, 8),
			next(1, 10, 11, 12, 13), // p emptied at once; the old rule kept it in the round behind a and b
			one(wait(2*time.Millisecond)), one(push("p", 2, 1)),
			next(2, 20, 21, 22, 23, 14, 15, 16, 17, 24, 25, 26, 27, 0),
		)},
		{"a flow drained and refilled within IdleAfter is not fresh", cat(
			bulk("b", 20, 8), bulk("c", 30, 8), one(push("a", 10, 1)),
			next(10, 20, 21, 22, 23, 30, 31, 32, 33, 24), // the old rule's turn found a empty here
			one(wait(500*time.Microsecond)), one(push("a", 11, 1)),
			next(25, 26, 27, 34, 35, 36, 37, 11, 0),
		)},
		{"the same refill after IdleAfter is fresh", cat(
			bulk("b", 20, 8), bulk("c", 30, 8), one(push("a", 10, 1)),
			next(10, 20, 21, 22, 23, 30, 31, 32, 33, 24),
			one(wait(1500*time.Microsecond)), one(push("a", 11, 1)),
			next(11, 25, 26, 27, 34, 35, 36, 37, 0),
		)},
		{"an idle flow's big batch is not fresh", cat(
			bulk("b", 20, 8), next(20, 21, 22, 23, 24), // b's second turn
			one(push("a", 10, 16)),
			next(25, 26, 27, 10, 0),
		)},
		{"a fresh turn allows FreshQuantum", cat(
			bulk("b", 20, 8), next(20),
			one(push("p", 1, 1)), one(push("p", 2, 1)), one(push("p", 3, 1)),
			next(1, 2, 21, 22, 23, 3, 24, 25, 26, 27, 0),
		)},
		{"a drained flow back soon keeps its overdraft", cat(
			one(push("a", 10, 60)), one(push("a", 11, 60)), bulk("b", 20, 8),
			next(10, 11, 20, 21, 22, 23),                   // a: 64 - 120 = -56, emptied
			one(push("a", 12, 16)), one(push("a", 13, 16)), // back at once: -56 + 64 = 8 for its turn
			next(12, 24, 25, 26, 27, 13, 0), // a whole quantum would have taken both
		)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var clock int64 = 1
			q := New[*batch](1)
			q.Cost = func(b *batch) int { return b.cost }
			q.Quantum, q.FreshQuantum, q.IdleAfter = 64, 2, time.Millisecond
			q.Now = func() int64 { return clock }
			flows := map[string]*Flow[*batch]{}
			var got, want []uint64
			for i, o := range tc.ops {
				switch {
				case o.wait > 0:
					clock += int64(o.wait)
				case o.push != "":
					f := flows[o.push]
					if f == nil {
						f = NewFlow[*batch](16)
						flows[o.push] = f
					}
					if !q.Push(f, &batch{seq: o.seq, cost: o.cost}) {
						t.Fatalf("op %d: push %s/%d refused", i, o.push, o.seq)
					}
				default:
					want = append(want, o.seq)
					if it, ok := q.Next(); ok {
						got = append(got, it.Batch.seq)
					} else {
						got = append(got, 0)
					}
					clock += 10 // every step takes a moment
				}
			}
			if !slices.Equal(got, want) {
				t.Fatalf("served %v\nwant   %v", got, want)
			}
		})
	}
}
