package dataplane

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

// TestSilence: a peer counts as silent once we have sent for `after`
// with nothing back, timed from the first tick that saw the unanswered
// send; anything received starts it over.
func TestSilence(t *testing.T) {
	t0 := time.Unix(1_000_000, 0)
	ms := time.Millisecond
	at := func(d time.Duration) time.Time { return t0.Add(d) }
	steps := []struct {
		now, sent, recv time.Duration
		want            bool
	}{
		{0, -10 * ms, -5 * ms, false},        // received after our last send: nothing owed
		{250 * ms, 100 * ms, -5 * ms, false}, // a send unanswered: the clock starts (250 ms)
		{2000 * ms, 1900 * ms, -5 * ms, false},
		{2250 * ms, 2200 * ms, -5 * ms, true},    // 2 s since the clock started
		{2500 * ms, 2400 * ms, 2450 * ms, false}, // an answer: over
		{2750 * ms, 2700 * ms, 2450 * ms, false}, // a new send: the clock starts again
		{4750 * ms, 4700 * ms, 2450 * ms, true},
	}
	var s silence
	for i, st := range steps {
		if got := s.observe(at(st.now), at(st.sent), at(st.recv), 2*time.Second); got != st.want {
			t.Fatalf("step %d: observe = %v, want %v (since %v)", i, got, st.want, s.since.Sub(t0))
		}
	}
}

func TestPassiveDue(t *testing.T) {
	t0 := time.Unix(1_000_000, 0)
	ms := time.Millisecond
	tests := []struct {
		now, sent, recv time.Duration
		want            bool
	}{
		{1000 * ms, 0, 100 * ms, true},         // received, and our last send is 1 s old
		{400 * ms, 0, 100 * ms, false},         // our last send is recent enough
		{1000 * ms, 200 * ms, 100 * ms, false}, // sent since the receive: nothing owed
		{5000 * ms, 0, 0, false},               // nothing received
	}
	for i, tt := range tests {
		if got := passiveDue(t0.Add(tt.now), t0.Add(tt.sent), t0.Add(tt.recv), 500*ms); got != tt.want {
			t.Errorf("case %d: passiveDue = %v, want %v", i, got, tt.want)
		}
	}
}
