package sequencer

import (
	"errors"
	"slices"
	"testing"
	"time"
)

var t0 = time.Unix(1_700_000_000, 0)

type op struct {
	kind    byte // 'p' put, 'd' drop, 'r' release
	seq     uint64
	at      time.Duration // clock offset from t0
	wantErr error
	want    []uint64 // for 'r': seqs emitted
}

func TestBuffer(t *testing.T) {
	ms := time.Millisecond
	tests := []struct {
		name string
		cfg  Config
		ops  []op
		want Stats
	}{
		{
			name: "in order",
			cfg:  Config{Window: 4},
			ops: []op{
				{kind: 'p', seq: 0}, {kind: 'p', seq: 1}, {kind: 'r', want: []uint64{0, 1}},
				{kind: 'p', seq: 2}, {kind: 'r', want: []uint64{2}},
			},
			want: Stats{Released: 3},
		},
		{
			name: "reversed within window",
			cfg:  Config{Window: 4, Start: 10},
			ops: []op{
				{kind: 'p', seq: 13}, {kind: 'p', seq: 12}, {kind: 'p', seq: 11}, {kind: 'r'},
				{kind: 'p', seq: 10}, {kind: 'r', want: []uint64{10, 11, 12, 13}},
			},
			want: Stats{Released: 4, Held: 3},
		},
		{
			name: "rejections",
			cfg:  Config{Window: 4, Start: 5},
			ops: []op{
				{kind: 'p', seq: 4, wantErr: ErrTooOld},
				{kind: 'p', seq: 9, wantErr: ErrBeyondWindow},
				{kind: 'd', seq: 9, wantErr: ErrBeyondWindow},
				{kind: 'p', seq: 6}, {kind: 'p', seq: 6, wantErr: ErrDuplicate},
				{kind: 'd', seq: 6, wantErr: ErrDuplicate},
				{kind: 'p', seq: 5}, {kind: 'r', want: []uint64{5, 6}},
				{kind: 'p', seq: 5, wantErr: ErrTooOld},
				{kind: 'p', seq: 10}, // window moved with the head
			},
			want: Stats{Released: 2, Duplicates: 2, TooOld: 2, BeyondWindow: 2, Held: 2},
		},
		{
			name: "drop completes slot",
			cfg:  Config{Window: 8},
			ops: []op{
				{kind: 'p', seq: 2}, {kind: 'd', seq: 1}, {kind: 'r'},
				{kind: 'd', seq: 0}, {kind: 'r', want: []uint64{2}},
			},
			want: Stats{Released: 1, Dropped: 2, Held: 1},
		},
		{
			name: "gap waits for timeout then skips the whole run",
			cfg:  Config{Window: 8, GapTimeout: 10 * ms},
			ops: []op{
				{kind: 'p', seq: 3, at: 0}, {kind: 'p', seq: 5, at: 2 * ms},
				{kind: 'r', at: 9 * ms},
				// 0-2 skipped; then 4 is missing and 5 completed at 2ms,
				// so the new gap expires at 12ms.
				{kind: 'r', at: 10 * ms, want: []uint64{3}},
				{kind: 'r', at: 11 * ms},
				{kind: 'r', at: 12 * ms, want: []uint64{5}},
				{kind: 'p', seq: 4, at: 11 * ms, wantErr: ErrTooOld},
			},
			want: Stats{Released: 2, Skipped: 4, TooOld: 1, Held: 2},
		},
		{
			name: "gap clock starts at the first complete slot behind it",
			cfg:  Config{Window: 8, GapTimeout: 10 * ms},
			ops: []op{
				{kind: 'p', seq: 2, at: 5 * ms}, {kind: 'p', seq: 1, at: 8 * ms},
				{kind: 'r', at: 14 * ms}, // 1 waited only 6ms
				{kind: 'r', at: 18 * ms, want: []uint64{1, 2}},
			},
			want: Stats{Released: 2, Skipped: 1, Held: 2},
		},
		{
			name: "gap disabled waits forever",
			cfg:  Config{Window: 2},
			ops: []op{
				{kind: 'p', seq: 1}, {kind: 'r', at: time.Hour},
				{kind: 'p', seq: 0}, {kind: 'r', at: time.Hour, want: []uint64{0, 1}},
			},
			want: Stats{Released: 2, Held: 1},
		},
		{
			name: "window of one",
			cfg:  Config{Window: 1},
			ops: []op{
				{kind: 'p', seq: 1, wantErr: ErrBeyondWindow},
				{kind: 'p', seq: 0}, {kind: 'r', want: []uint64{0}},
				{kind: 'p', seq: 1}, {kind: 'r', want: []uint64{1}},
			},
			want: Stats{Released: 2, BeyondWindow: 1},
		},
		{
			name: "ring wraps",
			cfg:  Config{Window: 64, GapTimeout: ms, Start: 60},
			ops: []op{
				{kind: 'p', seq: 70}, {kind: 'p', seq: 123},
				{kind: 'r', at: ms / 2},
				{kind: 'r', at: ms, want: []uint64{70, 123}},
			},
			want: Stats{Released: 2, Skipped: 62, Held: 2},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := New[uint64](tt.cfg)
			if err != nil {
				t.Fatal(err)
			}
			for i, o := range tt.ops {
				now := t0.Add(o.at)
				switch o.kind {
				case 'p':
					err = b.Put(o.seq, o.seq*10, now)
				case 'd':
					err = b.Drop(o.seq, now)
				case 'r':
					var got []uint64
					n := b.Release(now, func(seq, item uint64) {
						if item != seq*10 {
							t.Errorf("op %d: seq %d carried item %d", i, seq, item)
						}
						got = append(got, seq)
					})
					if n != len(got) || !slices.Equal(got, o.want) {
						t.Fatalf("op %d: released %v (n=%d), want %v", i, got, n, o.want)
					}
					continue
				}
				if !errors.Is(err, o.wantErr) {
					t.Fatalf("op %d (%c %d): err %v, want %v", i, o.kind, o.seq, err, o.wantErr)
				}
			}
			if got := b.Stats(); got != tt.want {
				t.Errorf("stats %+v, want %+v", got, tt.want)
			}
			st := b.Stats()
			if st.Released+st.Dropped+st.Skipped != b.Next()-tt.cfg.Start {
				t.Errorf("counters %+v do not add up to head advance %d", st, b.Next()-tt.cfg.Start)
			}
		})
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	for _, cfg := range []Config{
		{Window: 0}, {Window: 3}, {Window: -4}, {Window: MaxWindow * 2},
		{Window: 4, GapTimeout: -time.Second},
	} {
		if _, err := New[int](cfg); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("New(%+v) err %v, want ErrInvalidConfig", cfg, err)
		}
	}
}

func TestNextDeadline(t *testing.T) {
	b, _ := New[int](Config{Window: 16, GapTimeout: 10 * time.Millisecond})
	if _, ok := b.NextDeadline(); ok {
		t.Fatal("empty buffer has a deadline")
	}
	b.Put(4, 0, t0.Add(3*time.Millisecond))
	b.Put(2, 0, t0.Add(5*time.Millisecond))
	// The first complete slot behind the gap is 2, completed at 5ms.
	if d, ok := b.NextDeadline(); !ok || !d.Equal(t0.Add(15*time.Millisecond)) {
		t.Fatalf("deadline %v %v, want t0+15ms", d, ok)
	}
	b.Put(0, 0, t0.Add(6*time.Millisecond))
	if d, ok := b.NextDeadline(); !ok || !d.Equal(t0.Add(6*time.Millisecond)) {
		t.Fatalf("ready head: deadline %v %v, want t0+6ms", d, ok)
	}
	b.Release(t0.Add(6*time.Millisecond), func(uint64, int) {})
	// Head is 1, missing; 2 completed at 5ms.
	if d, ok := b.NextDeadline(); !ok || !d.Equal(t0.Add(15*time.Millisecond)) {
		t.Fatalf("after release: deadline %v %v, want t0+15ms", d, ok)
	}
	b.Release(t0.Add(15*time.Millisecond), func(uint64, int) {})
	// 1 and 3 skipped, 2 and 4 released.
	if _, ok := b.NextDeadline(); ok || b.Pending() != 0 || b.Next() != 5 {
		t.Fatalf("drained: ok=%v pending=%d next=%d", ok, b.Pending(), b.Next())
	}
}

// Release must not keep references to released items alive.
func TestReleaseClearsSlots(t *testing.T) {
	b, _ := New[*int](Config{Window: 4})
	v := 1
	b.Put(0, &v, t0)
	b.Release(t0, func(uint64, *int) {})
	for i, s := range b.slots {
		if s.item != nil {
			t.Fatalf("slot %d still holds an item", i)
		}
	}
}
