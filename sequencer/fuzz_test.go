package sequencer

import (
	"encoding/binary"
	"slices"
	"testing"
	"time"
)

// FuzzBuffer decodes arbitrary bytes into Put/Drop/Release calls with
// arbitrary sequence numbers and clock steps and checks Buffer against the
// model after every call: sequence numbers come from the network, so no
// input may panic or corrupt the ring.
func FuzzBuffer(f *testing.F) {
	f.Add(uint8(3), uint16(10), []byte{0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0})
	f.Add(uint8(0), uint16(0), []byte{1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, logWindow uint8, gapMs uint16, ops []byte) {
		cfg := Config{Window: 1 << (logWindow % 11), GapTimeout: time.Duration(gapMs%64) * time.Millisecond}
		b, err := New[uint64](cfg)
		if err != nil {
			t.Fatal(err)
		}
		m := &model{window: uint64(cfg.Window), gap: cfg.GapTimeout, slots: map[uint64]modelSlot{}}
		now := t0
		var got []uint64
		for len(ops) >= 10 {
			kind, step, seq := ops[0]%3, ops[1], binary.LittleEndian.Uint64(ops[2:10])
			ops = ops[10:]
			if seq >= 1<<20 {
				seq %= 4 * uint64(cfg.Window) // keep most ops near the window
			}
			now = now.Add(time.Duration(step) * time.Millisecond / 4)
			switch kind {
			case 0:
				if e, w := b.Put(seq, ^seq, now), m.complete(seq, modelSlot{item: ^seq, done: now}); e != w {
					t.Fatalf("put %d: %v, model %v", seq, e, w)
				}
			case 1:
				if e, w := b.Drop(seq, now), m.complete(seq, modelSlot{dropped: true, done: now}); e != w {
					t.Fatalf("drop %d: %v, model %v", seq, e, w)
				}
			case 2:
				got = got[:0]
				b.Release(now, func(s, item uint64) { got = append(got, s, item) })
				if want := m.release(now); !slices.Equal(got, want) {
					t.Fatalf("released %v, model %v", got, want)
				}
			}
			if b.Pending() != len(m.slots) || b.Next() != m.next || b.Stats() != m.stats {
				t.Fatalf("state %d %d %+v, model %d %d %+v", b.Pending(), b.Next(), b.Stats(), len(m.slots), m.next, m.stats)
			}
			gd, gok := b.NextDeadline()
			if md, mok := m.deadline(); gok != mok || !gd.Equal(md) {
				t.Fatalf("deadline %v %v, model %v %v", gd, gok, md, mok)
			}
		}
	})
}
