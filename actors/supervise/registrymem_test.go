package supervise

import (
	"runtime"
	"testing"

	"github.com/asynkron/protoactor-go/actor"
)

// liveHeapOf returns how much the live heap grew by making what make
// returns (kept alive until measured).
func liveHeapOf(make func() any) uint64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	v := make()
	runtime.GC()
	runtime.ReadMemStats(&after)
	runtime.KeepAlive(v)
	if after.HeapAlloc < before.HeapAlloc {
		return 0
	}
	return after.HeapAlloc - before.HeapAlloc
}

// An actor system's fixed cost is what a node pays at rest: protoactor's
// registry with 32 shards per bucket made it 4.6 MB.
func TestSystemHeapAtRest(t *testing.T) {
	const most = 1 << 20
	grew := liveHeapOf(func() any { return newTestSystem(t) })
	if grew > most {
		t.Errorf("an actor system holds %d KB of heap at rest, want <= %d KB", grew>>10, most>>10)
	}
	// The registry still finds, under one shard per bucket, what it holds.
	sys := newTestSystem(t)
	for i := range 200 {
		pid, err := sys.Spawn(nil, "echo", "echo-"+string(rune('a'+i%26))+string(rune('a'+i/26)), actor.PropsFromFunc(func(actor.Context) {}))
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := sys.Actors().ProcessRegistry.GetLocal(pid.Id); !ok {
			t.Fatalf("registry lost %s", pid.Id)
		}
	}
}

// BenchmarkSystemHeap reports an actor system's live heap at rest.
func BenchmarkSystemHeap(b *testing.B) {
	var grew uint64
	for range b.N {
		var sys *System
		grew = liveHeapOf(func() any { sys = New("bench", quietLogger()); return sys })
		if err := sys.Shutdown(b.Context()); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(grew), "heap-B/system")
}
