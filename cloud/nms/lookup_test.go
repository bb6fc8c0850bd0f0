package nms

import (
	"testing"
	"time"
)

func TestLookupGate(t *testing.T) {
	const ms = int64(time.Millisecond)
	type step struct {
		at   int64 // ms
		op   string
		id   uint32
		want lookupVerdict // for "admit"
	}
	for _, tt := range []struct {
		name        string
		rate        float64
		inFlight    int
		ttl         time.Duration
		steps       []step
		unknownLeft int
	}{
		{"rate: a burst, then a token per 1/rate", 40, 100, time.Second, []step{
			// burst = rate/4 = 10
			{0, "admit", 1, lookupGo}, {0, "admit", 2, lookupGo}, {0, "admit", 3, lookupGo}, {0, "admit", 4, lookupGo},
			{0, "admit", 5, lookupGo}, {0, "admit", 6, lookupGo}, {0, "admit", 7, lookupGo}, {0, "admit", 8, lookupGo},
			{0, "admit", 9, lookupGo}, {0, "admit", 10, lookupGo}, {0, "admit", 11, lookupRate},
			{24, "admit", 11, lookupRate}, {25, "admit", 11, lookupGo}, {25, "admit", 12, lookupRate},
		}, 0},
		{"in flight: bounded, and one lookup per ID", 1000, 2, time.Second, []step{
			{0, "admit", 1, lookupGo}, {0, "admit", 1, lookupInFlight}, {0, "admit", 2, lookupGo},
			{0, "admit", 3, lookupInFlight}, {1, "found", 1, 0}, {1, "admit", 3, lookupGo}, {1, "admit", 1, lookupInFlight},
		}, 0},
		{"unknown: cached for ttl from the lookup's start", 1000, 10, 500 * time.Millisecond, []step{
			{0, "admit", 7, lookupGo}, {100, "unknown", 7, 0},
			{101, "admit", 7, lookupUnknown}, {499, "admit", 7, lookupUnknown}, {500, "admit", 7, lookupGo},
		}, 0},
		{"unknown: an answer later than ttl caches nothing", 1000, 10, 500 * time.Millisecond, []step{
			{0, "admit", 7, lookupGo}, {600, "unknown", 7, 0}, {601, "admit", 7, lookupGo},
		}, 0},
		{"found and failed lookups cache nothing", 1000, 10, time.Second, []step{
			{0, "admit", 7, lookupGo}, {0, "admit", 8, lookupGo}, {1, "found", 7, 0}, {1, "failed", 8, 0},
			{2, "admit", 7, lookupGo}, {2, "admit", 8, lookupGo},
		}, 0},
		{"a session handed over clears its entry", 1000, 10, time.Second, []step{
			{0, "admit", 7, lookupGo}, {1, "unknown", 7, 0}, {2, "known", 7, 0}, {3, "admit", 7, lookupGo},
		}, 0},
		{"an answer for a lookup not in flight (a restarted worker's) is ignored", 1000, 10, time.Second, []step{
			{1, "unknown", 7, 0}, {2, "admit", 7, lookupGo},
		}, 0},
		{"expire drops lapsed entries", 1000, 10, 100 * time.Millisecond, []step{
			{0, "admit", 1, lookupGo}, {0, "admit", 2, lookupGo}, {1, "unknown", 1, 0}, {50, "unknown", 2, 0},
			{99, "expire", 0, 0},
		}, 2},
		{"expire drops lapsed entries (later)", 1000, 10, 100 * time.Millisecond, []step{
			{0, "admit", 1, lookupGo}, {0, "admit", 2, lookupGo}, {1, "unknown", 1, 0}, {50, "unknown", 2, 0},
			{100, "expire", 0, 0},
		}, 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			g := newLookupGate(tt.rate, tt.inFlight, tt.ttl)
			base := time.Now().UnixNano()
			for i, s := range tt.steps {
				now := base + s.at*ms
				switch s.op {
				case "admit":
					if got := g.admit(s.id, now); got != s.want {
						t.Fatalf("step %d: admit(%d) at %d ms = %d, want %d", i, s.id, s.at, got, s.want)
					}
				case "unknown", "found", "failed":
					g.done(s.id, s.op == "unknown", now)
				case "known":
					g.known(s.id)
				case "expire":
					g.expire(now)
				}
			}
			if len(g.unknown) != tt.unknownLeft {
				t.Fatalf("%d negative entries left, want %d", len(g.unknown), tt.unknownLeft)
			}
		})
	}
}

// TestLookupGateBounded: a flood of distinct unknown IDs keeps every map
// bounded, and a lookup stuck in the store holds one in-flight slot, not
// more.
func TestLookupGateBounded(t *testing.T) {
	g := newLookupGate(1e9, 8, time.Hour)
	now := time.Now().UnixNano()
	for id := uint32(1); id <= 10*maxUnknownPerWorker; id++ {
		if g.admit(id, now) != lookupGo {
			t.Fatalf("id %d refused", id)
		}
		g.done(id, true, now)
	}
	if n := len(g.unknown); n > maxUnknownPerWorker {
		t.Fatalf("%d negative entries, bound %d", n, maxUnknownPerWorker)
	}
	for id := uint32(1 << 30); id < 1<<30+8; id++ {
		if g.admit(id, now) != lookupGo {
			t.Fatal("in-flight slot refused below the bound")
		}
	}
	if v := g.admit(1<<31, now); v != lookupInFlight {
		t.Fatalf("ninth lookup in flight: %d, want refused", v)
	}
	if len(g.inFlight) != 8 {
		t.Fatalf("%d in flight, want 8", len(g.inFlight))
	}
}
