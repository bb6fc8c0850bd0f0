package peer

import (
	"testing"
	"time"
)

func TestHintFresh(t *testing.T) {
	tests := []struct {
		counter, next uint64
		want          bool
	}{
		{0, 0, false}, // nothing sent yet
		{0, 1, true},  // the first packet
		{5, 5, false}, // a counter we have not handed out
		{9, 5, false}, // ...nor that one
		{100, 100 + hintWindow, true},
		{100, 101 + hintWindow, false}, // too far back: stale or forged
	}
	for _, tt := range tests {
		if got := hintFresh(tt.counter, tt.next); got != tt.want {
			t.Errorf("hintFresh(%d, %d) = %v, want %v", tt.counter, tt.next, got, tt.want)
		}
	}
}

// TestRecoveryBackoff: the first answer starts an attempt at once; later
// ones wait a doubling gap up to recoverMaxGap, whether or not a session
// was installed meanwhile (a forged answer's attempt succeeds); a quiet
// minute starts the backoff over.
func TestRecoveryBackoff(t *testing.T) {
	t0 := time.Unix(1_000_000, 0)
	s := time.Second
	steps := []struct {
		at      time.Duration
		install bool // a new session was installed just before
		want    bool
	}{
		{0, false, true},                       // first: at once
		{500 * time.Millisecond, false, false}, // within recoverFirstGap
		{s, true, true},                        // gap 1 s passed (and an install does not reset it)
		{2 * s, false, false},                  // now the gap is 2 s
		{3 * s, false, true},
		{6 * s, false, false}, // 4 s
		{7 * s, false, true},
		{14 * s, false, false}, // 8 s
		{15 * s, false, true},
		{30 * s, false, false}, // 16 s
		{31 * s, false, true},
		{46 * s, false, false}, // capped at 16 s
		{47 * s, false, true},
		{47*s + time.Minute, false, true},        // quiet: over again
		{47*s + time.Minute + s/2, false, false}, // and the first gap is 1 s again
	}
	var r recovery
	for i, st := range steps {
		if st.install {
			r.installed()
		}
		if got := r.start(t0.Add(st.at)); got != st.want {
			t.Fatalf("step %d (at %v): start = %v, want %v (state %+v)", i, st.at, got, st.want, r)
		}
	}
}

func TestRecoveryExpire(t *testing.T) {
	t0 := time.Unix(1_000_000, 0)
	var r recovery
	if !r.start(t0) || !r.active {
		t.Fatal("first start")
	}
	if r.start(t0.Add(500*time.Millisecond)) || !r.since.Equal(t0) {
		t.Fatalf("a start within the gap changed the attempt: %+v", r)
	}
	r.expire(t0.Add(10*time.Second), 10*time.Second)
	if !r.active {
		t.Fatal("expired at the timeout, want after it")
	}
	r.expire(t0.Add(10*time.Second+time.Millisecond), 10*time.Second)
	if r.active {
		t.Fatal("an attempt outlived its timeout")
	}
	if !r.start(t0.Add(20*time.Second)) || !r.active {
		t.Fatal("start after the gap")
	}
	r.installed()
	if r.active {
		t.Fatal("install left the attempt active")
	}
}
