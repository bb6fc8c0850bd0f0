package shrink

import (
	"runtime"
	"testing"
)

func TestMapRebuildsBelowQuarterOfPeak(t *testing.T) {
	for _, tc := range []struct {
		name        string
		peak, left  int
		wantRebuilt bool
	}{
		{"small map never", MinPeak - 1, 0, false},
		{"at peak", 4096, 4096, false},
		{"at a quarter", 4096, 1024, false},
		{"under a quarter", 4096, 1023, true},
		{"emptied", 4096, 0, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, p := map[int]int{}, &Peak{}
			for i := range tc.peak {
				m[i] = i
			}
			p.Grew(len(m))
			orig := m
			for i := tc.left; i < tc.peak; i++ {
				delete(m, i)
				m = Map(m, p)
			}
			m = Map(m, p)
			if len(m) != tc.left {
				t.Fatalf("%d entries, want %d", len(m), tc.left)
			}
			for i := range tc.left {
				if m[i] != i {
					t.Fatalf("entry %d lost", i)
				}
			}
			orig[-1] = -1 // distinguishes the original from a copy
			_, same := m[-1]
			if rebuilt := !same; rebuilt != tc.wantRebuilt {
				t.Fatalf("rebuilt %v, want %v", rebuilt, tc.wantRebuilt)
			}
		})
	}
}

// TestMapAmortised: rebuilds copy at most a third of the deletions made.
func TestMapAmortised(t *testing.T) {
	m, p := map[int]struct{}{}, &Peak{}
	copied, deleted := 0, 0
	for round := range 5 {
		for i := range 100_000 >> round {
			m[i] = struct{}{}
			p.Grew(len(m))
		}
		for i := range 100_000 >> round {
			delete(m, i)
			deleted++
			before := m
			if m = Map(m, p); len(m) > 0 {
				before[-1] = struct{}{}
				if _, same := m[-1]; !same {
					copied += len(m)
				}
				delete(before, -1)
			}
		}
	}
	if copied*3 > deleted {
		t.Fatalf("copied %d entries for %d deletions", copied, deleted)
	}
}

// TestMapGivesMemoryBack: a map grown to 200k entries and emptied holds
// its buckets; rebuilt by Map, the heap is back near where it started.
func TestMapGivesMemoryBack(t *testing.T) {
	heap := func() uint64 {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.HeapAlloc
	}
	const n = 200_000
	grow := func() map[uint64][32]byte {
		m := map[uint64][32]byte{}
		for i := range uint64(n) {
			m[i] = [32]byte{}
		}
		return m
	}
	base := heap()
	plain := grow()
	for i := range uint64(n) {
		delete(plain, i)
	}
	held := heap() - min(base, heap())
	runtime.KeepAlive(plain)
	plain = nil

	base = heap()
	m, p := grow(), &Peak{}
	for i := range uint64(n) {
		delete(m, i)
		m = Map(m, p)
	}
	left := int64(heap()) - int64(base)
	runtime.KeepAlive(m)
	if held < n*32 {
		t.Fatalf("a plain emptied map holds %d B: the test no longer shows what Map fixes", held)
	}
	if left > int64(held)/10 {
		t.Fatalf("after Map the emptied map holds %d B (a plain one %d B)", left, held)
	}
	t.Logf("emptied map: %d B plain, %d B with Map", held, left)
}
