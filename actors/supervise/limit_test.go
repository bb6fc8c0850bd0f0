package supervise

import (
	"sync"
	"testing"
)

func TestLimiter(t *testing.T) {
	l := NewLimiter(3)
	for i := range 3 {
		if !l.Acquire() {
			t.Fatalf("acquire %d refused below the limit", i)
		}
	}
	if l.Acquire() || l.Dropped() != 1 || l.Len() != 3 {
		t.Fatalf("at the limit: len %d dropped %d; want a refusal counted", l.Len(), l.Dropped())
	}
	l.Release()
	if !l.Acquire() {
		t.Fatal("a released slot was not reusable")
	}
	if NewLimiter(0).max != 1 {
		t.Fatal("a limiter must have at least one slot")
	}
}

// TestLimiterConcurrent: however senders race, no more than max slots are
// ever held and every refusal is counted.
func TestLimiterConcurrent(t *testing.T) {
	const slots, senders, tries = 8, 16, 1000
	l := NewLimiter(slots)
	var wg sync.WaitGroup
	var mu sync.Mutex
	held, peak, ok := 0, 0, 0
	for range senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range tries {
				if !l.Acquire() {
					continue
				}
				mu.Lock()
				held++
				ok++
				peak = max(peak, held)
				held--
				mu.Unlock()
				l.Release()
			}
		}()
	}
	wg.Wait()
	if peak > slots || uint64(ok)+l.Dropped() != senders*tries || l.Len() != 0 {
		t.Fatalf("peak %d (max %d), ok %d + dropped %d != %d, len %d", peak, slots, ok, l.Dropped(), senders*tries, l.Len())
	}
}
