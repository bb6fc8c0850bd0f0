package dataplane

import "testing"

// TestYielderEveryFewBatches: a reader or writer loop yields once every
// yieldBatches batches, not after each (each yield wakes a thread), and
// never goes longer than that without one.
func TestYielderEveryFewBatches(t *testing.T) {
	tests := []struct {
		batches, want int
	}{
		{1, 0},
		{yieldBatches - 1, 0},
		{yieldBatches, 1},
		{3*yieldBatches + 1, 3},
		{100 * yieldBatches, 100},
	}
	for _, tt := range tests {
		var y yielder
		got, run := 0, 0
		for range tt.batches {
			if y.after() {
				got++
				run = 0
			} else if run++; run >= yieldBatches {
				t.Fatalf("%d batches: %d in a row without a yield", tt.batches, run)
			}
		}
		if got != tt.want {
			t.Errorf("%d batches: %d yields, want %d", tt.batches, got, tt.want)
		}
	}
}
