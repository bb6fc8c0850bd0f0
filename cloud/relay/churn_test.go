package relay

import (
	"fmt"
	"runtime"
	"testing"
	"time"
)

func liveHeap() int64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapAlloc)
}

// TestMapsShrinkAfterChurn: the table's maps (sessions, tokens, owners)
// and its sweep order give their memory back once the sessions that grew
// them are gone. Go maps never shrink: before cloud/shrink was applied
// here, a burst of relayed tunnels kept its peak's buckets for the TRS's
// life.
func TestMapsShrinkAfterChurn(t *testing.T) {
	const n = 50_000
	tab, tk := statelessTable(t, Config{MaxSessions: 2 * n, MaxPerOwner: n, SweepBatch: 2 * n})
	base := liveHeap()
	now := t0
	for round := range 2 { // twice: a rebuilt map grows and shrinks again
		for i := range n {
			// Stateless sessions of many owners (the owners map grows too)
			// and allocated ones.
			if i%2 == 0 {
				a, _ := mint(t, tk, fmt.Sprintf("n%d.example.cyphonic", i), "peer.example.cyphonic", now.Add(time.Hour))
				if r := tab.Bind(sealBind(t, a, 1), epA, now); r != DropNone {
					t.Fatalf("round %d: bind %d: %v", round, i, r)
				}
				continue
			}
			var s, ta, tb [16]byte
			s[0], s[1], s[2], s[3] = byte(round), byte(i>>16), byte(i>>8), byte(i)
			ta, tb = s, s
			ta[15], tb[15] = 0xa, 0xb
			if err := alloc(tab, s, ta, tb, now.Add(time.Hour)); err != nil {
				t.Fatal(err)
			}
		}
		if st := tab.Stats(); st.Sessions != n {
			t.Fatalf("round %d: %d sessions, want %d", round, st.Sessions, n)
		}
		grown := liveHeap()
		now = now.Add(time.Second)
		tab.Expire(now) // starts the idle clocks of the allocations nobody bound
		now = now.Add(tab.IdleTimeout() + time.Second)
		if got := tab.Expire(now); got != n {
			t.Fatalf("round %d: swept %d of %d", round, got, n)
		}
		if st := tab.Stats(); st.Sessions != 0 || len(tab.tokens) != 0 || len(tab.owners) != 0 || len(tab.order) != 0 {
			t.Fatalf("round %d: after the sweep: %d sessions, %d tokens, %d owners, %d in order", round, st.Sessions, len(tab.tokens), len(tab.owners), len(tab.order))
		}
		// What the sweep remembers of the stateless sides (against
		// replays) is bounded and lasts until their tickets expire.
		if got := tab.sweptLen(); got != n/2 {
			t.Fatalf("round %d: %d swept sides remembered, want %d", round, got, n/2)
		}
		records := liveHeap() - base
		now = now.Add(time.Hour)
		tab.Expire(now)
		if got := tab.sweptLen(); got != 0 {
			t.Fatalf("round %d: %d swept sides remembered past their tickets' expiry", round, got)
		}
		left := liveHeap() - base
		t.Logf("round %d: %d sessions grew the heap by %.1f MB; %.2f MB left after they went with %d swept sides remembered, %.2f MB once their tickets expired",
			round, n, float64(grown-base)/1e6, float64(records)/1e6, n/2, float64(left)/1e6)
		if left > 1<<20 {
			t.Fatalf("round %d: %.1f MB of heap left after every session went (grown %.1f MB)", round, float64(left)/1e6, float64(grown-base)/1e6)
		}
	}
	runtime.KeepAlive(tab)
}

// TestSweptFirstBindReplayed is the attack: an on-path attacker records a
// side's genuine first bind, waits until the session is swept (its nodes
// went quiet), and sends the recording again, from its own address. Before,
// the replay recreated the session (the table had forgotten the side's
// counter), bound to the attacker and charged to the victim node's share
// until the next sweep, again and again. Now the sweep remembers the
// side's last counter until the ticket expires (bounded), so the replay is
// refused and keeps nothing; the node's own later bind (a higher counter)
// still brings its side back.
func TestSweptFirstBindReplayed(t *testing.T) {
	tab, tk := statelessTable(t, Config{})
	a, b := mint(t, tk, "victim.example.cyphonic", "peer.example.cyphonic", t0.Add(time.Hour))
	recordedA, recordedB := sealBind(t, a, 100), sealBind(t, b, 200)
	if r := tab.Bind(recordedA, epA, t0); r != DropNone {
		t.Fatalf("A's first bind: %v", r)
	}
	if r := tab.Bind(recordedB, epB, t0); r != DropNone {
		t.Fatalf("B's first bind: %v", r)
	}
	later := sealBind(t, a, 150) // A binds again, the session stays live
	if r := tab.Bind(later, epA, t0.Add(10*time.Second)); r != DropNone {
		t.Fatalf("A's second bind: %v", r)
	}
	now := t0.Add(10*time.Second + tab.IdleTimeout() + time.Second)
	if got := tab.Expire(now); got != 1 {
		t.Fatalf("swept %d sessions, want 1", got)
	}
	attacker := ap("192.0.2.66:4444")
	for i, pkt := range [][]byte{recordedA, later, recordedB} {
		for range 3 { // after every sweep, as the attacker would
			if r := tab.Bind(pkt, attacker, now); r != DropReplay {
				t.Fatalf("replay %d after the sweep: %v, want %v", i, r, DropReplay)
			}
			tab.Expire(now)
		}
	}
	if st := tab.Stats(); st.Sessions != 0 || st.Created != 1 || len(tab.owners) != 0 || len(tab.tokens) != 0 {
		t.Fatalf("after the replays: %+v, owners %v", st, tab.owners)
	}
	// The node itself comes back with a fresh counter: its side is bound again.
	if r := tab.Bind(sealBind(t, a, 151), epA, now); r != DropNone {
		t.Fatalf("A's fresh bind after the sweep: %v", r)
	}
	if st := tab.Stats(); st.Sessions != 1 || st.Created != 2 {
		t.Fatalf("after A's fresh bind: %+v", st)
	}
	// Past the ticket's expiry the record is gone (the token is refused as
	// expired anyway).
	tab.Expire(t0.Add(2 * time.Hour))
	if st := tab.Stats(); st.Sessions != 0 || tab.sweptLen() != 0 {
		t.Fatalf("after the ticket's expiry: %d sessions, %d swept records", st.Sessions, tab.sweptLen())
	}
}

// TestSweptRecordsBounded: the sweep's records of stateless sides are at
// most MaxSessions, the oldest forgotten first.
func TestSweptRecordsBounded(t *testing.T) {
	const max = 4
	tab, tk := statelessTable(t, Config{MaxSessions: max, MaxPerOwner: max})
	now := t0
	var first []byte
	for i := range 3 * max {
		a, _ := mint(t, tk, fmt.Sprintf("n%d.example.cyphonic", i), "peer.example.cyphonic", t0.Add(time.Hour))
		bind := sealBind(t, a, 1)
		if i == 0 {
			first = bind
		}
		if r := tab.Bind(bind, epA, now); r != DropNone {
			t.Fatalf("bind %d: %v", i, r)
		}
		now = now.Add(tab.IdleTimeout() + time.Second)
		if got := tab.Expire(now); got != 1 {
			t.Fatalf("sweep %d: %d", i, got)
		}
		if got := tab.sweptLen(); got > max {
			t.Fatalf("after %d sweeps: %d records, bound %d", i+1, got, max)
		}
	}
	if got := tab.sweptLen(); got != max {
		t.Fatalf("%d records, want %d", got, max)
	}
	// The oldest was forgotten: its replay is taken as a first bind again
	// (the bound's price, as before the records existed).
	if r := tab.Bind(first, epA, now); r != DropNone {
		t.Fatalf("replay of a forgotten side: %v", r)
	}
}
