package fairq

import (
	"testing"
	"time"
)

// TestCoDelDrop walks the RFC 8289 state machine through a sequence of
// dequeues: (offset from t0, sojourn, backlog) -> dropped?
func TestCoDelDrop(t *testing.T) {
	const target, interval = 2 * time.Millisecond, 50 * time.Millisecond
	type step struct {
		at      time.Duration
		sojourn time.Duration
		backlog bool
		want    bool
	}
	tests := []struct {
		name  string
		steps []step
	}{
		{"below target never drops", []step{
			{0, time.Millisecond, true, false},
			{100 * time.Millisecond, time.Millisecond, true, false},
			{time.Second, time.Millisecond, true, false},
		}},
		{"above target drops only after a whole interval", []step{
			{0, 10 * time.Millisecond, true, false},
			{49 * time.Millisecond, 10 * time.Millisecond, true, false},
			{50 * time.Millisecond, 10 * time.Millisecond, true, true},
			// The first drop sets the next one interval/sqrt(1) later...
			{60 * time.Millisecond, 10 * time.Millisecond, true, false},
			{99 * time.Millisecond, 10 * time.Millisecond, true, false},
			{100 * time.Millisecond, 10 * time.Millisecond, true, true},
			// ... then interval/sqrt(2) ≈ 35.4ms after that.
			{135 * time.Millisecond, 10 * time.Millisecond, true, false},
			{136 * time.Millisecond, 10 * time.Millisecond, true, true},
		}},
		{"dipping below target resets the clock", []step{
			{0, 10 * time.Millisecond, true, false},
			{40 * time.Millisecond, time.Millisecond, true, false},
			{60 * time.Millisecond, 10 * time.Millisecond, true, false},
			{100 * time.Millisecond, 10 * time.Millisecond, true, false},
			{110 * time.Millisecond, 10 * time.Millisecond, true, true},
		}},
		{"a sparse flow is never dropped", []step{
			{0, 30 * time.Millisecond, false, false},
			{50 * time.Millisecond, 30 * time.Millisecond, false, false},
			{100 * time.Millisecond, 30 * time.Millisecond, false, false},
			{time.Second, 30 * time.Millisecond, false, false},
		}},
		{"leaving the dropping state on an emptied queue", []step{
			{0, 10 * time.Millisecond, true, false},
			{50 * time.Millisecond, 10 * time.Millisecond, true, true},
			{90 * time.Millisecond, 10 * time.Millisecond, false, false},
			{95 * time.Millisecond, 10 * time.Millisecond, true, false},
		}},
	}
	t0 := time.Unix(1000, 0)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := CoDel{Target: target, Interval: interval}
			for i, s := range tt.steps {
				if got := c.Drop(s.sojourn, t0.Add(s.at), s.backlog); got != s.want {
					t.Fatalf("step %d (at %v, sojourn %v, backlog %v): drop = %v, want %v", i, s.at, s.sojourn, s.backlog, got, s.want)
				}
			}
		})
	}
}

// TestCoDelZeroValueDefaults: the zero value behaves as the defaults.
func TestCoDelZeroValueDefaults(t *testing.T) {
	var c CoDel
	t0 := time.Unix(1000, 0)
	late := 10 * DefaultCoDelTarget
	if c.Drop(late, t0, true) {
		t.Fatal("dropped at the first late packet")
	}
	if c.Drop(late, t0.Add(DefaultCoDelInterval-time.Nanosecond), true) {
		t.Fatal("dropped before a whole interval")
	}
	if !c.Drop(late, t0.Add(DefaultCoDelInterval), true) || !c.Dropping() {
		t.Fatal("did not drop after a whole interval above target")
	}
}
