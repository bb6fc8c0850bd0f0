package replay

import (
	"math/rand/v2"
	"testing"
)

func TestWindowEdges(t *testing.T) {
	type step struct {
		counter uint64
		want    bool
	}
	tests := []struct {
		name  string
		steps []step
	}{
		{"counter zero first", []step{{0, true}, {0, false}}},
		{"in order", []step{{0, true}, {1, true}, {2, true}, {3, true}}},
		{"duplicate", []step{{5, true}, {5, false}, {4, true}, {4, false}}},
		{"reorder inside window", []step{{10, true}, {7, true}, {9, true}, {8, true}, {7, false}}},
		{"oldest in window", []step{{WindowSize + 10, true}, {10, true}, {9, false}}},
		{"just too old", []step{{WindowSize + 10, true}, {9, false}}},
		{"slide across block boundary", []step{{63, true}, {64, true}, {65, true}, {63, false}, {0, true}}},
		{"wrap of ring", []step{
			{0, true}, {1, true},
			{ringBlocks * blockBits, true}, // lands on the same ring slot as 0
			{ringBlocks*blockBits + 1, true},
			{1, false}, // out of window now
			{ringBlocks*blockBits + 1, false},
			{ringBlocks*blockBits - 1, true},
		}},
		{"far future jump clears bitmap", []step{
			{100, true}, {1 << 40, true}, {100, false},
			{1<<40 - 1, true}, {1<<40 - WindowSize, true}, {1<<40 - WindowSize - 1, false},
			{1 << 40, false},
		}},
		{"max accepted counter", []step{{RejectAfterMessages - 1, true}, {RejectAfterMessages - 1, false}, {RejectAfterMessages - 2, true}}},
		{"limit rejected", []step{{RejectAfterMessages, false}, {1<<64 - 1, false}, {0, true}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var w Window
			for i, s := range tt.steps {
				if got := w.Check(s.counter); got != s.want {
					t.Fatalf("step %d: Check(%d) = %v, want %v", i, s.counter, got, s.want)
				}
				if got := w.Accept(s.counter); got != s.want {
					t.Fatalf("step %d: Accept(%d) = %v, want %v", i, s.counter, got, s.want)
				}
			}
		})
	}
}

func TestWindowReset(t *testing.T) {
	var w Window
	for c := range uint64(100) {
		w.Accept(c)
	}
	w.Reset()
	for c := range uint64(100) {
		if !w.Accept(c) {
			t.Fatalf("after Reset, counter %d rejected", c)
		}
	}
}

// model is the specification the bitmap must match exactly: a counter is new
// if it is below the limit, unseen, and not more than WindowSize behind the
// highest counter accepted so far.
type model struct {
	seen map[uint64]bool
	max  uint64
}

func (m *model) wouldAccept(c uint64) bool {
	if c >= RejectAfterMessages || m.seen[c] {
		return false
	}
	return c > m.max || m.max-c <= WindowSize
}

func (m *model) accept(c uint64) bool {
	if !m.wouldAccept(c) {
		return false
	}
	m.seen[c] = true
	m.max = max(m.max, c)
	return true
}

func TestWindowMatchesModel(t *testing.T) {
	for seed := range uint64(20) {
		rng := rand.New(rand.NewPCG(seed, 42))
		var w Window
		m := model{seen: map[uint64]bool{}}
		var base uint64
		for i := range 20000 {
			var c uint64
			switch r := rng.IntN(100); {
			case r < 60: // near the front, jittered both ways
				c = base + rng.Uint64N(200)
				if c >= 100 {
					c -= 100
				}
				base++
			case r < 80: // around the window's trailing edge
				c = m.max - min(m.max, WindowSize-64+rng.Uint64N(128))
			case r < 95: // a replay of something recent
				c = m.max - min(m.max, rng.Uint64N(300))
			case r < 99: // a jump ahead, sometimes past the whole ring
				base += rng.Uint64N(3 * ringBlocks * blockBits)
				c = base
			default: // at or past the limit: always refused, never slides the window
				c = RejectAfterMessages + rng.Uint64N(1<<13)
			}
			wantCheck := m.wouldAccept(c)
			if got := w.Check(c); got != wantCheck {
				t.Fatalf("seed %d step %d: Check(%d) = %v, model %v (max %d)", seed, i, c, got, wantCheck, m.max)
			}
			want := m.accept(c)
			if got := w.Accept(c); got != want {
				t.Fatalf("seed %d step %d: Accept(%d) = %v, model %v (max %d)", seed, i, c, got, want, m.max)
			}
			if i%1000 == 999 {
				if got, want := w.Lost(), m.lost(); got != want {
					t.Fatalf("seed %d step %d: Lost() = %d, model %d (max %d)", seed, i, got, want, m.max)
				}
			}
		}
	}
}

// lost is the counters below the ring's oldest block (they have left the
// window) that were never accepted.
func (m *model) lost() uint64 {
	lastBlock := m.max / blockBits
	if lastBlock < ringBlocks-1 {
		return 0
	}
	bound := (lastBlock - (ringBlocks - 1)) * blockBits
	lost := bound
	for c := range m.seen {
		if c < bound {
			lost--
		}
	}
	return lost
}

func TestWindowLost(t *testing.T) {
	const block = blockBits
	for _, c := range []struct {
		name     string
		counters []uint64
		want     uint64
	}{
		{"nothing yet", nil, 0},
		{"in order, a whole ring and more", seq(0, 3*WindowSize), 0},
		{"a gap still inside the window is not lost yet", append(seq(0, 100), seq(110, WindowSize)...), 0},
		{"a gap that left the window", append(seq(0, 100), seq(110, 2*WindowSize)...), 10},
		{"a jump past the whole ring loses everything skipped and the ring's holes", []uint64{0, 1, 10 * ringBlocks * block}, (10*ringBlocks-(ringBlocks-1))*block - 2},
		{"a late packet after its block left stays lost", append(append(seq(0, 100), seq(110, 2*WindowSize)...), 105), 10},
	} {
		t.Run(c.name, func(t *testing.T) {
			var w Window
			for _, n := range c.counters {
				w.Accept(n)
			}
			if got := w.Lost(); got != c.want {
				t.Errorf("Lost() = %d, want %d", got, c.want)
			}
			w.Reset()
			if w.Lost() != 0 {
				t.Errorf("Lost() after Reset = %d", w.Lost())
			}
		})
	}
}

func seq(from, to uint64) []uint64 {
	var s []uint64
	for i := from; i < to; i++ {
		s = append(s, i)
	}
	return s
}

func BenchmarkAcceptInOrder(b *testing.B) {
	var w Window
	b.ReportAllocs()
	for i := range uint64(b.N) {
		if !w.Accept(i) {
			b.Fatal("rejected in-order counter")
		}
	}
}

func BenchmarkAcceptReordered(b *testing.B) {
	var w Window
	b.ReportAllocs()
	for i := range uint64(b.N) {
		w.Accept(i ^ 7) // swaps within groups of 8: every counter once, out of order
	}
}
