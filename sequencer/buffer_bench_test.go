package sequencer

import (
	"math/rand/v2"
	"testing"
	"time"
)

type benchItem struct {
	buf []byte // a pooled packet buffer in real use
	n   int
}

// BenchmarkBufferInOrder: items arrive in order, released every 64 (one
// batch per Release, as the actor does).
func BenchmarkBufferInOrder(b *testing.B) {
	benchBuffer(b, func(rng *rand.Rand, block []uint64) {})
}

// BenchmarkBufferShuffled: each window's worth of items arrives in a random
// order (the worst the crypto workers can do without loss).
func BenchmarkBufferShuffled(b *testing.B) {
	benchBuffer(b, func(rng *rand.Rand, block []uint64) {
		rng.Shuffle(len(block), func(i, j int) { block[i], block[j] = block[j], block[i] })
	})
}

// BenchmarkBufferGaps: shuffled, with one item in 64 lost and skipped after
// the gap deadline.
func BenchmarkBufferGaps(b *testing.B) {
	benchBuffer(b, func(rng *rand.Rand, block []uint64) {
		rng.Shuffle(len(block), func(i, j int) { block[i], block[j] = block[j], block[i] })
		for i := 0; i < len(block); i += 64 {
			block[i] = ^uint64(0) // marks a loss
		}
	})
}

func benchBuffer(b *testing.B, arrange func(*rand.Rand, []uint64)) {
	const window = 1024
	gap := time.Millisecond
	buf, err := New[benchItem](Config{Window: window, GapTimeout: gap})
	if err != nil {
		b.Fatal(err)
	}
	// Precompute a few arrival orders of one window (offsets from the block
	// start) so the benchmark measures the buffer, not the shuffle.
	rng := rand.New(rand.NewPCG(1, 2))
	orders := make([][]uint64, 8)
	for k := range orders {
		orders[k] = make([]uint64, window)
		for i := range orders[k] {
			orders[k][i] = uint64(i)
		}
		arrange(rng, orders[k])
	}
	packet := make([]byte, 1500)
	now := t0
	var sum int
	emit := func(seq uint64, it benchItem) { sum += it.n }

	b.ReportAllocs()
	b.ResetTimer()
	base := uint64(0)
	for i := 0; i < b.N; i += window {
		order := orders[(i/window)%len(orders)]
		for j, off := range order {
			if off != ^uint64(0) {
				_ = buf.Put(base+off, benchItem{buf: packet, n: 1}, now)
			}
			if j%64 == 63 {
				buf.Release(now, emit)
			}
		}
		base += window
		// Time passes between windows: gaps left behind expire.
		now = now.Add(gap)
		buf.Release(now, emit)
	}
	b.StopTimer()
	b.ReportMetric(float64(sum)/b.Elapsed().Seconds(), "items/s")
	if s := buf.Stats(); s.BeyondWindow != 0 || s.Duplicates != 0 {
		b.Fatalf("unexpected rejections: %+v", s)
	}
}
