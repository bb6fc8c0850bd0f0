package relay

import (
	"testing"
	"time"
)

func benchTable(b *testing.B) *Table {
	tab := NewTable(Config{})
	for i := range 1024 {
		var sid, ta, tb [16]byte
		sid[0], sid[1] = byte(i), byte(i>>8)
		ta, tb = sid, sid
		ta[15], tb[15] = 0xa, 0xb
		if err := alloc(tab, sid, ta, tb, t0.Add(time.Hour)); err != nil {
			b.Fatal(err)
		}
		tab.Bind(bindPkt(ta, 1), epA, t0)
	}
	return tab
}

// BenchmarkForward is the TRS hot path: one lookup and endpoint update per
// relayed packet. It must not allocate.
func BenchmarkForward(b *testing.B) {
	tab := NewTable(Config{})
	if err := alloc(tab, idA, tokA, tokB, t0.Add(time.Hour)); err != nil {
		b.Fatal(err)
	}
	tab.Bind(bindPkt(tokA, 1), epA, t0)
	tab.Bind(bindPkt(tokB, 1), epB, t0)
	b.ReportAllocs()
	for b.Loop() {
		if _, _, ok, _ := tab.Forward(tokA, epA, 1400, t0); !ok {
			b.Fatal("not forwarded")
		}
	}
}

// BenchmarkForwardParallel relays on 1024 sessions from all cores, showing
// how far the read lock and per-session locks scale.
func BenchmarkForwardParallel(b *testing.B) {
	tab := benchTable(b)
	for i := range 1024 {
		var tb [16]byte
		tb[0], tb[1], tb[15] = byte(i), byte(i>>8), 0xb
		tab.Bind(bindPkt(tb, 1), epB, t0)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			var ta [16]byte
			ta[0], ta[1], ta[15] = byte(i), byte(i>>8&3), 0xa
			if _, _, ok, _ := tab.Forward(ta, epA, 1400, t0); !ok {
				b.Error("not forwarded")
				return
			}
			i++
		}
	})
}

// BenchmarkBind is the cost of one genuine bind (MAC check and endpoint
// update) and of one forged one: what a flood of binds costs TRS.
func BenchmarkBind(b *testing.B) {
	tab := NewTable(Config{})
	if err := alloc(tab, idA, tokA, tokB, t0.Add(time.Hour)); err != nil {
		b.Fatal(err)
	}
	forged := bindPkt(tokA, 1)
	forged[len(forged)-1] ^= 1
	b.Run("forged", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if tab.Bind(forged, epA, t0) != DropBadBind {
				b.Fatal("accepted")
			}
		}
	})
}
