package dataplane

import (
	"fmt"
	"runtime"
	"testing"
	"time"
	"unsafe"

	"github.com/cyphonic/cyphonic-go/actors/supervise"
)

func TestBatchMoveAndRelease(t *testing.T) {
	p := newBatchPool(128)
	a, b := p.Get(), p.Get()
	bufs, sizes, _ := a.ReadSlices(headroom)
	copy(bufs[0], "hello")
	sizes[0], sizes[1] = 5, 0
	a.Filled(2, headroom)
	if a.Pkts[1].Drop != Truncated {
		t.Fatalf("empty read not marked truncated: %v", a.Pkts[1].Drop)
	}
	if !b.Move(a, 0) || string(b.Pkts[0].Bytes()) != "hello" || b.N != 1 {
		t.Fatalf("move: %q n=%d", b.Pkts[0].Bytes(), b.N)
	}
	if len(a.Pkts[0].Buf) != 128 {
		t.Fatal("source lost its buffer")
	}
	var st peerStats
	b.stats = &st
	b.DropAll(Auth, nil)
	if st.Drops.Get(Auth) != 1 || b.Live() != 0 || len(b.Payloads()) != 0 {
		t.Fatalf("DropAll: %v live %d", st.Drops.Snapshot(), b.Live())
	}
	n := supervise.NewLimiter(1)
	n.Acquire()
	b.track(n)
	b.Release()
	if n.Len() != 0 {
		t.Fatalf("Release did not give the in-flight slot back: %d", n.Len())
	}
	a.Release()
}

// splitRead reads a full batch of packets and splits it as the readers do
// (group) into batches of per packets each, which it returns.
func splitRead(pool *batchPool, per int) []*batch {
	src := pool.Get()
	_, sizes, _ := src.ReadSlices(headroom)
	for i := range maxBatch {
		sizes[i] = 100
	}
	src.Filled(maxBatch, headroom)
	var gs [maxBatch]peerGroup[int]
	n := 0
	for i := range maxBatch {
		group(gs[:], &n, i/per, pool).Move(src, i)
	}
	src.Release()
	out := make([]*batch, n)
	for i := range n {
		out[i] = gs[i].b
	}
	return out
}

// Under many peers a read splits into small batches; the memory they hold
// must follow their packets, not maxBatch buffers each (what made a
// responder under ten pushers hold tens of MB of batches).
func TestBatchMemoryFollowsPackets(t *testing.T) {
	const bufSize, per, reads = 1500, 4, 10
	pool := newBatchPool(bufSize)
	var held [][]*batch
	grew := liveHeapGrowth(func() {
		for range reads {
			held = append(held, splitRead(pool, per))
		}
	})
	batches := reads * maxBatch / per
	// The packets' buffers, the batches' own fields, and one spare read
	// batch in the pool (its buffers): generously twice that.
	want := 2 * (reads*maxBatch*bufSize + batches*int(unsafe.Sizeof(batch{})) + maxBatch*bufSize)
	if grew > uint64(want) {
		t.Errorf("%d batches of %d packets hold %d KB, want <= %d KB", batches, per, grew>>10, want>>10)
	}
	for _, bs := range held {
		for _, b := range bs {
			if b.N != per || len(b.Pkts[0].Bytes()) != 100 {
				t.Fatalf("batch has %d packets, first %d bytes", b.N, len(b.Pkts[0].Bytes()))
			}
			n := 0
			for i := range b.Pkts {
				if b.Pkts[i].Buf != nil {
					n++
				}
			}
			if n != b.held || n != per {
				t.Fatalf("batch of %d packets holds %d buffers, counted %d", per, n, b.held)
			}
			b.Release()
		}
	}
	// The buffers come back: reads and splits in steady state allocate
	// nothing.
	if raceEnabled {
		return
	}
	if a := testing.AllocsPerRun(100, func() {
		for _, b := range splitRead(pool, per) {
			b.Release()
		}
	}); a > 1 { // the returned slice
		t.Errorf("read and split allocates %.1f times, want 1", a)
	}
	runtime.KeepAlive(held)
}

// liveHeapGrowth is how much the live heap grew by running f.
func liveHeapGrowth(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	f()
	runtime.GC()
	runtime.ReadMemStats(&after)
	return max(after.HeapAlloc, before.HeapAlloc) - before.HeapAlloc
}

// Spares survive GCs that come close together (under a soft memory limit
// tens a second): a read after two GCs reuses the buffers released before
// them. A sync.Pool had dropped them, and the read made 64 new buffers.
func TestBatchSparesSurviveGCs(t *testing.T) {
	pool := newBatchPool(1500)
	// The buffers a read holds, by address: a read after the GCs must be
	// served from them, not from new ones. (Counting the process's
	// mallocs instead was flaky: other goroutines allocate too.)
	released := map[*byte]bool{}
	for range 3 {
		for _, b := range splitRead(pool, 8) {
			for i := range b.N {
				released[unsafe.SliceData(b.Pkts[i].Buf)] = true
			}
			b.Release()
		}
	}
	runtime.GC()
	runtime.GC()
	bs := splitRead(pool, 8)
	fresh := 0
	for _, b := range bs {
		for i := range b.N {
			if !released[unsafe.SliceData(b.Pkts[i].Buf)] {
				fresh++
			}
		}
		b.Release()
	}
	if fresh != 0 {
		t.Errorf("a read after two GCs got %d new buffers, want all %d from the spares", fresh, maxBatch)
	}
}

// Spares left by a load are dropped once they went unused for spareKeep,
// with no GC to bring it on (the data path's heap stays far under the
// soft limit now, and nothing else may allocate for minutes), and a load's
// worth of them is returned to the system at once. A pool that kept them
// (or trimmed only after a GC, as before) fails here.
func TestBatchSparesFreedAfterLoad(t *testing.T) {
	pool := newBatchPool(1500)
	freed := make(chan struct{}, 8)
	pool.mu.Lock()
	pool.free = func() { freed <- struct{}{} }
	pool.mu.Unlock()
	// A load: 24 reads in flight at once (2.2 MB of buffers), then none.
	var load []*batch
	for range 24 {
		load = append(load, splitRead(pool, 8)...)
	}
	for _, b := range load {
		b.Release()
	}
	if pool.spareCount() == 0 {
		t.Fatal("no spares after a load")
	}
	deadline := time.Now().Add(10 * spareKeep)
	for pool.spareCount() > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d spares kept %s after the load", pool.spareCount(), 10*spareKeep)
		}
		time.Sleep(50 * time.Millisecond)
	}
	select {
	case <-freed:
	case <-time.After(10 * spareKeep):
		t.Fatal("the shed spares' memory was not returned to the system")
	}
	// With nothing left, no trim is due: the pool schedules none.
	time.Sleep(2 * spareKeep)
	pool.mu.Lock()
	armed := pool.armed
	pool.mu.Unlock()
	if armed {
		t.Error("an empty pool keeps scheduling trims")
	}
}

// A closed pool (the data plane stopped) stops its trim timer, drops its
// spares and pools nothing released afterwards.
func TestBatchPoolClose(t *testing.T) {
	pool := newBatchPool(1500)
	bs := splitRead(pool, 8)
	bs[0].Release() // pooled: arms the trim timer
	pool.mu.Lock()
	armed, timer := pool.armed, pool.timer
	pool.mu.Unlock()
	if !armed || timer == nil {
		t.Fatal("a released batch armed no trim")
	}
	pool.Close()
	if timer.Stop() {
		t.Error("Close left the trim timer pending")
	}
	for _, b := range bs[1:] {
		b.Release()
	}
	pool.mu.Lock()
	armed = pool.armed
	n := len(pool.full.b) + len(pool.empty.b)
	pool.mu.Unlock()
	if armed || n != 0 {
		t.Errorf("after Close: armed %v, %d spares held; want no trim and none", armed, n)
	}
	pool.trimTick() // a tick that fired just before Close is harmless
}

// Spares in use are not shed: under a steady load the pool keeps what the
// load needs across trims, so its reads do not make buffers again. Trims
// are called directly between the load's rounds (the timer does the same
// every spareKeep); a trim that shed spares the rounds used fails here.
func TestBatchSparesKeptUnderLoad(t *testing.T) {
	pool := newBatchPool(1500)
	frees := 0
	pool.mu.Lock()
	pool.free = func() { frees++ }
	pool.mu.Unlock()
	round := func() {
		for _, b := range splitRead(pool, 8) {
			b.Release()
		}
	}
	round()
	pool.trimTick() // what the first round left is the load's working set
	held := pool.spareCount()
	if held == 0 {
		t.Fatal("no spares after a read")
	}
	for i := range 5 {
		round()
		pool.trimTick()
		if n := pool.spareCount(); n != held {
			t.Fatalf("trim %d under a steady load: %d spares held, want the %d the load uses", i+1, n, held)
		}
	}
	if frees != 0 {
		t.Errorf("memory returned to the system %d times under a steady load", frees)
	}
}

// BenchmarkSplitRead is a reader's work on its batch pool: a read of 64
// packets split into batches of per packets (64/per peers) and their
// release. One op is one read.
func BenchmarkSplitRead(b *testing.B) {
	for _, per := range []int{1, 8, 64} {
		b.Run(fmt.Sprintf("per=%d", per), func(b *testing.B) {
			pool := newBatchPool(2263)
			b.ReportAllocs()
			for range b.N {
				for _, x := range splitRead(pool, per) {
					x.Release()
				}
			}
		})
	}
}
