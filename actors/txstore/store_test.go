package txstore

import (
	"encoding/binary"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func newStore[V any](t testing.TB, cfg Config) *Store[V] {
	t.Helper()
	s, err := New[V](cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

func idOf(n uint64) ID {
	var id ID
	binary.BigEndian.PutUint64(id[:8], n)
	binary.BigEndian.PutUint64(id[8:], ^n)
	return id
}

func TestPutGetDelete(t *testing.T) {
	s := newStore[string](t, Config{})
	a, b := idOf(1), idOf(2)
	if _, ok := s.Get(a); ok {
		t.Fatal("empty store has a")
	}
	if err := s.Put(a, "tunnel-request", time.Minute); err != nil {
		t.Fatal(err)
	}
	if v, ok := s.Get(a); !ok || v != "tunnel-request" {
		t.Fatalf("Get(a) = %q, %v", v, ok)
	}
	if _, ok := s.Get(b); ok {
		t.Fatal("b present without a Put")
	}
	if err := s.Put(a, "replaced", time.Minute); err != nil {
		t.Fatal(err)
	}
	if v, _ := s.Get(a); v != "replaced" {
		t.Fatalf("Get(a) after replace = %q", v)
	}
	s.Delete(a)
	if _, ok := s.Get(a); ok {
		t.Fatal("a present after Delete")
	}
	s.Delete(b) // absent: no effect
}

func TestInvalidTTL(t *testing.T) {
	s := newStore[int](t, Config{})
	for _, ttl := range []time.Duration{0, -time.Second} {
		if err := s.Put(idOf(1), 1, ttl); !errors.Is(err, ErrInvalidTTL) {
			t.Errorf("Put ttl %v: %v, want ErrInvalidTTL", ttl, err)
		}
		if _, _, err := s.PutIfAbsent(idOf(1), 1, ttl); !errors.Is(err, ErrInvalidTTL) {
			t.Errorf("PutIfAbsent ttl %v: %v, want ErrInvalidTTL", ttl, err)
		}
	}
}

func TestExpiry(t *testing.T) {
	s := newStore[int](t, Config{})
	short, long := idOf(1), idOf(2)
	if err := s.Put(short, 1, 20*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if err := s.Put(long, 2, time.Hour); err != nil {
		t.Fatal(err)
	}
	time.Sleep(40 * time.Millisecond) // past short's TTL: a lower bound, not a timing assertion
	if _, ok := s.Get(short); ok {
		t.Fatal("expired entry still returned")
	}
	if v, ok := s.Get(long); !ok || v != 2 {
		t.Fatal("live entry lost")
	}
	// An expired ID is free again for PutIfAbsent.
	if _, loaded, err := s.PutIfAbsent(short, 3, time.Hour); err != nil || loaded {
		t.Fatalf("PutIfAbsent over expired: loaded=%v err=%v", loaded, err)
	}
}

// TestBurstNoneLost is the reason this package exists: a plain Ristretto
// Set drops a large share of a burst like this.
func TestBurstNoneLost(t *testing.T) {
	const n, workers = 100_000, 32
	s := newStore[uint64](t, Config{MaxEntries: 1 << 20})
	var wg sync.WaitGroup
	var putErrs atomic.Int64
	for w := range workers {
		wg.Go(func() {
			for i := uint64(w); i < n; i += workers {
				if err := s.Put(idOf(i), i, time.Hour); err != nil {
					putErrs.Add(1)
				}
			}
		})
	}
	wg.Wait()
	if e := putErrs.Load(); e != 0 {
		t.Fatalf("%d Puts failed; stats %+v", e, s.Stats())
	}
	var missing atomic.Int64
	for w := range workers { // read from goroutines other than the writers
		wg.Go(func() {
			for i := uint64(w); i < n; i += workers {
				if v, ok := s.Get(idOf(i)); !ok || v != i {
					missing.Add(1)
				}
			}
		})
	}
	wg.Wait()
	st := s.Stats()
	if missing.Load() != 0 || st.Stored != n || st.Failed != 0 || st.Evicted != 0 {
		t.Fatalf("%d of %d entries lost; stats %+v", missing.Load(), n, st)
	}
	t.Logf("stats after burst: %+v", st)
}

func TestTinyStoreCountsLosses(t *testing.T) {
	s := newStore[int](t, Config{MaxEntries: 8, Retries: 1})
	var failed uint64
	for i := range 2000 {
		err := s.Put(idOf(uint64(i)), i, time.Hour)
		if err != nil {
			if !errors.Is(err, ErrNotStored) {
				t.Fatalf("Put: %v", err)
			}
			failed++
		}
	}
	st := s.Stats()
	if st.Rejected+st.Evicted == 0 {
		t.Fatalf("no rejects or evictions counted in an overfull store: %+v", st)
	}
	if st.Failed != failed || st.Stored+st.Failed != 2000 {
		t.Fatalf("stats %+v disagree with %d failed Puts", st, failed)
	}
	t.Logf("stats: %+v", st)
}

func TestPutIfAbsentOneWinner(t *testing.T) {
	s := newStore[int](t, Config{})
	id := idOf(42)
	const racers = 16
	var wg sync.WaitGroup
	var winners atomic.Int32
	results := make([]int, racers)
	for r := range racers {
		wg.Go(func() {
			v, loaded, err := s.PutIfAbsent(id, r, time.Hour)
			if err != nil {
				t.Error(err)
				return
			}
			if !loaded {
				winners.Add(1)
			}
			results[r] = v
		})
	}
	wg.Wait()
	if winners.Load() != 1 {
		t.Fatalf("%d winners, want 1", winners.Load())
	}
	stored, _ := s.Get(id)
	for r, v := range results {
		if v != stored {
			t.Fatalf("racer %d saw %d, stored is %d", r, v, stored)
		}
	}
}

func TestClosed(t *testing.T) {
	s, err := New[int](Config{})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Put(idOf(1), 1, time.Hour); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s.Close() // idempotent
	if _, ok := s.Get(idOf(1)); ok {
		t.Fatal("Get after Close found an entry")
	}
	if err := s.Put(idOf(2), 2, time.Hour); !errors.Is(err, ErrClosed) {
		t.Fatalf("Put after Close: %v", err)
	}
	s.Delete(idOf(1))
}

func BenchmarkGetHit(b *testing.B) {
	s := newStore[uint64](b, Config{})
	ids := make([]ID, 1024)
	for i := range ids {
		ids[i] = idOf(uint64(i))
		if err := s.Put(ids[i], uint64(i), time.Hour); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		if _, ok := s.Get(ids[i&1023]); !ok {
			b.Fatal("miss")
		}
	}
}

func BenchmarkPut(b *testing.B) {
	s := newStore[uint64](b, Config{MaxEntries: 1 << 22})
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		if err := s.Put(idOf(uint64(i)), uint64(i), time.Hour); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkPutIfAbsentDuplicate(b *testing.B) {
	s := newStore[uint64](b, Config{})
	id := idOf(7)
	if err := s.Put(id, 7, time.Hour); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if _, loaded, _ := s.PutIfAbsent(id, 8, time.Hour); !loaded {
			b.Fatal("not deduplicated")
		}
	}
}

// TestLenCap: Len counts what the store holds (for the fill metric), Delete
// gives the room back, and a closed store holds nothing.
func TestLenCap(t *testing.T) {
	s := newStore[int](t, Config{MaxEntries: 1000})
	if s.Cap() != 1000 || s.Len() != 0 {
		t.Fatalf("new store: len %d cap %d", s.Len(), s.Cap())
	}
	for i := range 10 {
		if err := s.Put(idOf(uint64(i)), i, time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	if got := s.Len(); got != 10 {
		t.Fatalf("len %d after 10 puts", got)
	}
	s.Delete(idOf(3))
	deadline := time.Now().Add(5 * time.Second)
	for s.Len() != 9 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond) // Ristretto applies the delete to its policy asynchronously
	}
	if got := s.Len(); got != 9 {
		t.Fatalf("len %d after a delete", got)
	}
	s.Close()
	if got := s.Len(); got != 0 {
		t.Fatalf("len %d after close", got)
	}
}
