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

// BenchmarkBindStateless is what binds on stateless tickets cost the TRS:
// a forged first bind (a token of the format, the wrong key: two keyed
// hashes and a MAC state, then garbage), one on a token not of the format
// (nothing computed), and a first bind that creates a session (minted
// fresh each time, so the table grows: its map growth is in the figure).
func BenchmarkBindStateless(b *testing.B) {
	tab, tk := statelessTable(b, Config{MaxSessions: 1 << 30, MaxPerOwner: 1 << 30})
	x, y := mint(b, tk, "a.example.cyphonic", "b.example.cyphonic", t0.Add(time.Hour))
	x.Key = y.Key
	forged := sealBind(b, x, 1)
	b.Run("forged", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if tab.Bind(forged, epA, t0) != DropBadBind {
				b.Fatal("accepted")
			}
		}
	})
	foreign := bindPkt(id(0x44), 1)
	b.Run("foreign", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if tab.Bind(foreign, epA, t0) != DropUnknownToken {
				b.Fatal("accepted")
			}
		}
	})
	b.Run("first", func(b *testing.B) {
		pkts := make([][]byte, 0, 1<<16)
		for range cap(pkts) {
			s, _ := mint(b, tk, "a.example.cyphonic", "b.example.cyphonic", t0.Add(time.Hour))
			pkts = append(pkts, sealBind(b, s, 1))
		}
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			if i == len(pkts) {
				b.StopTimer()
				tab, _ = statelessTable(b, Config{MaxSessions: 1 << 30, MaxPerOwner: 1 << 30})
				tab.tickets = tk
				i = 0
				b.StartTimer()
			}
			if r := tab.Bind(pkts[i], epA, t0); r != DropNone {
				b.Fatal(r)
			}
			i++
		}
	})
}

// BenchmarkMint is NMS's cost of a tunnel's two relay tickets.
func BenchmarkMint(b *testing.B) {
	tk := testTickets(b)
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := tk.Mint("a.example.cyphonic", "b.example.cyphonic", t0); err != nil {
			b.Fatal(err)
		}
	}
}
