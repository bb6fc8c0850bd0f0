package sequencer

import (
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// model is the reorder buffer written the obvious way: a map of complete
// slots and a linear search for the smallest key. Buffer must agree with
// it on every call.
type model struct {
	window uint64
	gap    time.Duration
	next   uint64
	slots  map[uint64]modelSlot
	stats  Stats
}

type modelSlot struct {
	item    uint64
	dropped bool
	done    time.Time
}

func (m *model) complete(seq uint64, s modelSlot) error {
	switch _, dup := m.slots[seq]; {
	case seq < m.next:
		m.stats.TooOld++
		return ErrTooOld
	case seq >= m.next+m.window:
		m.stats.BeyondWindow++
		return ErrBeyondWindow
	case dup:
		m.stats.Duplicates++
		return ErrDuplicate
	}
	if _, prev := m.slots[seq-1]; !s.dropped && seq != m.next && !prev {
		m.stats.Held++
	}
	m.slots[seq] = s
	return nil
}

func (m *model) minKey() uint64 {
	k, first := uint64(0), true
	for seq := range m.slots {
		if first || seq < k {
			k, first = seq, false
		}
	}
	return k
}

func (m *model) release(now time.Time) (out []uint64) {
	for len(m.slots) > 0 {
		s, ok := m.slots[m.next]
		if !ok {
			k := m.minKey()
			if m.gap == 0 || now.Sub(m.slots[k].done) < m.gap {
				return out
			}
			m.stats.Skipped += k - m.next
			m.next = k
			continue
		}
		delete(m.slots, m.next)
		if s.dropped {
			m.stats.Dropped++
		} else {
			m.stats.Released++
			out = append(out, m.next, s.item)
		}
		m.next++
	}
	return out
}

func (m *model) deadline() (time.Time, bool) {
	if len(m.slots) == 0 {
		return time.Time{}, false
	}
	if s, ok := m.slots[m.next]; ok {
		return s.done, true
	}
	if m.gap == 0 {
		return time.Time{}, false
	}
	return m.slots[m.minKey()].done.Add(m.gap), true
}

// TestBufferMatchesModel drives Buffer and model with the same random
// stream (local shuffles, losses, drops, duplicates, stale and far-ahead
// sequence numbers, a fake clock) and compares every result.
func TestBufferMatchesModel(t *testing.T) {
	windows := []int{1, 2, 4, 64, 128, 1024}
	gaps := []time.Duration{0, time.Millisecond, 20 * time.Millisecond}
	iterations := 300
	if testing.Short() {
		iterations = 30
	}
	for it := range iterations {
		rng := rand.New(rand.NewPCG(uint64(it), 0x5e9))
		cfg := Config{
			Window:     windows[rng.IntN(len(windows))],
			GapTimeout: gaps[rng.IntN(len(gaps))],
			Start:      rng.Uint64N(1 << 62),
		}
		runModelCheck(t, it, cfg, rng)
	}
}

func runModelCheck(t *testing.T, it int, cfg Config, rng *rand.Rand) {
	t.Helper()
	b, err := New[uint64](cfg)
	if err != nil {
		t.Fatal(err)
	}
	m := &model{window: uint64(cfg.Window), gap: cfg.GapTimeout, next: cfg.Start, slots: map[uint64]modelSlot{}}

	// The stream: Start..Start+n, shuffled in blocks up to twice the window
	// (so some arrive beyond it), with ~5% lost, ~5% dropped, ~3%
	// duplicated later and ~2% stale numbers.
	n := 200 + rng.IntN(3000)
	seqs := make([]uint64, n)
	for i := range seqs {
		seqs[i] = cfg.Start + uint64(i)
	}
	for lo := 0; lo < n; {
		hi := min(n, lo+1+rng.IntN(2*cfg.Window+1))
		rng.Shuffle(hi-lo, func(i, j int) { seqs[lo+i], seqs[lo+j] = seqs[lo+j], seqs[lo+i] })
		lo = hi
	}

	now := t0
	accepted := map[uint64]bool{} // items Put successfully
	released := map[uint64]int{}
	last, haveLast := uint64(0), false
	var got []uint64

	check := func(what string, seq uint64, gotErr, wantErr error) {
		if gotErr != wantErr {
			t.Fatalf("iter %d cfg %+v: %s %d: err %v, model %v", it, cfg, what, seq, gotErr, wantErr)
		}
	}
	release := func() {
		got = got[:0]
		nb := b.Release(now, func(seq, item uint64) { got = append(got, seq, item) })
		want := m.release(now)
		if !slices.Equal(got, want) || nb != len(want)/2 {
			t.Fatalf("iter %d cfg %+v: released %v (n=%d), model %v", it, cfg, got, nb, want)
		}
		for i := 0; i < len(got); i += 2 {
			seq, item := got[i], got[i+1]
			if haveLast && seq <= last {
				t.Fatalf("iter %d: released %d after %d", it, seq, last)
			}
			if item != ^seq || !accepted[seq] {
				t.Fatalf("iter %d: released seq %d item %x not accepted as such", it, seq, item)
			}
			last, haveLast = seq, true
			released[seq]++
		}
	}

	for _, seq := range seqs {
		now = now.Add(time.Duration(rng.IntN(3000)) * time.Microsecond)
		switch r := rng.IntN(100); {
		case r < 5: // lost before the sequencer
		case r < 10:
			check("drop", seq, b.Drop(seq, now), m.complete(seq, modelSlot{dropped: true, done: now}))
		default:
			if r < 12 {
				seq = cfg.Start + rng.Uint64N(seq-cfg.Start+1) // stale or duplicate
			}
			err := b.Put(seq, ^seq, now)
			check("put", seq, err, m.complete(seq, modelSlot{item: ^seq, done: now}))
			if err == nil {
				accepted[seq] = true
			}
			if r < 15 {
				check("dup put", seq, b.Put(seq, ^seq, now), m.complete(seq, modelSlot{item: ^seq, done: now}))
			}
		}
		if rng.IntN(4) == 0 {
			release()
		}
		if b.Pending() != len(m.slots) || b.Next() != m.next || b.Stats() != m.stats {
			t.Fatalf("iter %d: pending %d next %d stats %+v; model %d %d %+v",
				it, b.Pending(), b.Next(), b.Stats(), len(m.slots), m.next, m.stats)
		}
		gd, gok := b.NextDeadline()
		md, mok := m.deadline()
		if gok != mok || !gd.Equal(md) {
			t.Fatalf("iter %d: deadline %v %v, model %v %v", it, gd, gok, md, mok)
		}
	}

	// Drain: fill the remaining holes with drops (the only way when gap
	// skipping is off), then every accepted item must be out exactly once.
	for seq := b.Next(); b.Pending() > 0; seq++ {
		check("final drop", seq, b.Drop(seq, now), m.complete(seq, modelSlot{dropped: true, done: now}))
		release()
	}
	for seq := range accepted {
		if released[seq] != 1 {
			t.Fatalf("iter %d: accepted seq %d released %d times", it, seq, released[seq])
		}
	}
	st := b.Stats()
	if st.Released != uint64(len(accepted)) || st.Released+st.Dropped+st.Skipped != b.Next()-cfg.Start {
		t.Fatalf("iter %d: stats %+v do not add up: accepted %d, head advanced %d",
			it, st, len(accepted), b.Next()-cfg.Start)
	}
}
