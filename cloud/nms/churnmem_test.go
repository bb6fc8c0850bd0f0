package nms

import (
	"fmt"
	"log/slog"
	"runtime"
	"testing"
	"time"

	"github.com/cyphonic/cyphonic-go/transport/signaling"
)

func liveHeap() int64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapAlloc)
}

// TestMapsShrinkAfterChurn: a worker's session and ended-session maps,
// the tunnels map and the FQDN index give their memory back once the
// nodes that grew them are gone. Go maps never shrink; before they were
// rebuilt (shrink.Map) a churn of 100k nodes left ~20 MB of empty buckets
// behind for good.
func TestMapsShrinkAfterChurn(t *testing.T) {
	const n = 100_000
	s := &Service{cfg: Config{SessionIdle: time.Minute, Retry: signaling.DefaultRetry()}, log: slog.New(slog.DiscardHandler),
		index: newFQDNIndex()}
	s.endedFor = endedTTL(s.cfg.Retry)
	s.tunnels = newTunnelMap(&s.tunnelNodes)
	w := &worker{s: s, sessions: map[uint32]*session{}, ended: map[uint32]endedSession{}, deletes: map[uint32]struct{}{},
		lookups: newLookupGate(1000, 16, time.Second)}
	base := liveHeap()

	now := time.Now()
	for round := range 2 { // twice: a rebuilt map grows and shrinks again
		for i := range n {
			se := &session{id: uint32(round*n + i + 1), fqdn: fmt.Sprintf("churn-%d.example.cyphonic", i), expires: now.Add(time.Hour).UnixNano(), lastSeen: now.UnixNano()}
			w.addSession(se)
			if i%2 == 1 {
				s.tunnelUp(se.fqdn, fmt.Sprintf("churn-%d.example.cyphonic", i-1), false)
			}
		}
		if len(w.sessions) != n || s.tunnelNodes.Load() != n {
			t.Fatalf("round %d: %d sessions, %d tunnel nodes, want %d", round, len(w.sessions), s.tunnelNodes.Load(), n)
		}
		grown := liveHeap()
		for _, se := range w.sessions {
			w.endSession(se, now) // a logout: its key kept for retransmissions
		}
		if len(w.ended) != min(n, maxEnded) {
			t.Fatalf("%d ended sessions kept, want %d", len(w.ended), min(n, maxEnded))
		}
		w.expire(nil, now.Add(s.endedFor+time.Second))
		if len(w.sessions) != 0 || len(w.ended) != 0 || s.tunnelNodes.Load() != 0 {
			t.Fatalf("after the churn: %d sessions, %d ended, %d tunnel nodes", len(w.sessions), len(w.ended), s.tunnelNodes.Load())
		}
		left := liveHeap() - base
		t.Logf("round %d: %d nodes grew the heap by %.1f MB; %.2f MB left after they went", round, n, float64(grown-base)/1e6, float64(left)/1e6)
		if left > 2<<20 {
			t.Fatalf("round %d: %.1f MB of heap left after every node went (grown %.1f MB)", round, float64(left)/1e6, float64(grown-base)/1e6)
		}
	}
	runtime.KeepAlive(w)
}

// TestEndedKeptForRetransmissions: an ended session's key is kept as long
// as a request sent before the end can be retransmitted, and no longer.
func TestEndedKeptForRetransmissions(t *testing.T) {
	r := signaling.DefaultRetry()
	got := endedTTL(r)
	if life := r.Total() + r.Max; got < life || got > life+5*time.Second {
		t.Fatalf("endedTTL %v for a schedule whose requests live %v", got, life)
	}
	if w := dedupWindow(r); got < w {
		t.Fatalf("endedTTL %v shorter than the reply cache's window %v: a retransmitted Logout would get no ack", got, w)
	}
}
