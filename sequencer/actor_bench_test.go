package sequencer

import (
	"math/rand/v2"
	"testing"
)

// BenchmarkActor measures items through the sequencer actor: shuffled
// batches of 64 in, released batches of 64 out, a few windows in flight.
// b.N counts items, so allocs/op is per item (the output Batch, one per 64).
func BenchmarkActor(b *testing.B) {
	const (
		window   = 1024
		inFlight = 4 // blocks of one window each
	)
	sys := quietSystem()
	defer sys.Shutdown()
	blocks := (b.N + window - 1) / window
	doneBlocks := make(chan struct{}, blocks)
	var released int
	sink := ToFunc(func(out *Batch[int]) {
		for range out.Entries {
			released++
			if released%window == 0 {
				doneBlocks <- struct{}{}
			}
		}
	})
	props, err := Props(Config{Window: window * inFlight * 2}, sink)
	if err != nil {
		b.Fatal(err)
	}
	pid := sys.Root.Spawn(props)
	defer sys.Root.Stop(pid)

	// Input batches are recycled once their window has been released
	// (the sink runs after the actor has read them), so memory stays flat.
	rng := rand.New(rand.NewPCG(3, 4))
	orders := make([][]int, 8)
	for i := range orders {
		orders[i] = rng.Perm(window)
	}
	perBlock := window / MaxBatch
	sets := make([][]*Batch[int], inFlight+1)
	for i := range sets {
		for range perBlock {
			sets[i] = append(sets[i], &Batch[int]{Entries: make([]Entry[int], MaxBatch)})
		}
	}

	b.ReportAllocs()
	b.ResetTimer()
	for k := range blocks {
		if k >= inFlight {
			<-doneBlocks
		}
		order := orders[k%len(orders)]
		for j, bt := range sets[k%len(sets)] {
			for i, s := range order[j*MaxBatch : (j+1)*MaxBatch] {
				bt.Entries[i] = Entry[int]{Seq: uint64(k*window + s), Item: s}
			}
			sys.Root.Send(pid, bt)
		}
	}
	for range min(blocks, inFlight) {
		<-doneBlocks
	}
	b.StopTimer()
	b.ReportMetric(float64(blocks*window)/b.Elapsed().Seconds(), "items/s")
}
