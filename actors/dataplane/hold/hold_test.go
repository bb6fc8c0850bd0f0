package hold

import (
	"fmt"
	"net/netip"
	"testing"
	"time"
)

var (
	t0   = time.Unix(1_800_000_000, 0)
	bob6 = netip.MustParseAddr("fd63:7970:686f::2")
	bob4 = netip.MustParseAddr("100.64.0.2")
)

// step is one call on the queue and what it must return.
type step struct {
	at   time.Duration // since t0
	op   string        // hold, hold-peer (ask=false), take, unknown, failed, sweep
	dst  netip.Addr
	pkt  string
	want Verdict  // hold
	got  []string // take: the packets, in order
	drop Drops    // every op: the drops it reports
	len  [2]int   // after the step: destinations, packets held
}

func vip(i int) netip.Addr { return netip.AddrFrom4([4]byte{100, 64, byte(i >> 8), byte(i)}) }

func TestQueue(t *testing.T) {
	small := Config{PerDest: 2, MaxDests: 2, MaxAge: time.Second, Retry: 3 * time.Second, Negative: 10 * time.Second, MaxNegative: 2}
	tests := []struct {
		name  string
		cfg   Config
		steps []step
	}{
		{"first packet asks, later ones wait", small, []step{
			{op: "hold", dst: bob4, pkt: "a", want: HeldAsk, len: [2]int{1, 1}},
			{at: 10 * time.Millisecond, op: "hold", dst: bob4, pkt: "b", want: Held, len: [2]int{1, 2}},
			{at: 20 * time.Millisecond, op: "take", dst: bob4, got: []string{"a", "b"}, len: [2]int{0, 0}},
		}},
		{"per destination bound", small, []step{
			{op: "hold", dst: bob4, pkt: "a", want: HeldAsk},
			{op: "hold", dst: bob4, pkt: "b", want: Held},
			{op: "hold", dst: bob4, pkt: "c", want: DropFull, len: [2]int{1, 2}},
		}},
		{"destination bound also bounds lookups", small, []step{
			{op: "hold", dst: vip(1), pkt: "a", want: HeldAsk},
			{op: "hold", dst: vip(2), pkt: "a", want: HeldAsk},
			{op: "hold", dst: vip(3), pkt: "a", want: DropFull, len: [2]int{2, 2}},
			// The held packets expire, but the lookups are recent: the
			// slots stay taken, so a scan cannot ask faster than that.
			{at: 2 * time.Second, op: "hold", dst: vip(4), pkt: "a", want: DropFull, drop: Drops{Expired: 2}, len: [2]int{2, 0}},
			// Past Retry the slots free up.
			{at: 3 * time.Second, op: "hold", dst: vip(5), pkt: "a", want: HeldAsk, len: [2]int{1, 1}},
		}},
		{"one lookup per retry", small, []step{
			{op: "hold", dst: bob4, pkt: "a", want: HeldAsk},
			{at: 900 * time.Millisecond, op: "hold", dst: bob4, pkt: "b", want: Held},
			{at: 2900 * time.Millisecond, op: "hold", dst: bob4, pkt: "c", want: Held, drop: Drops{Expired: 2}, len: [2]int{1, 1}},
			{at: 3 * time.Second, op: "hold", dst: bob4, pkt: "d", want: HeldAsk, len: [2]int{1, 2}},
		}},
		{"old packets are not delivered", small, []step{
			{op: "hold", dst: bob4, pkt: "a", want: HeldAsk},
			{at: 600 * time.Millisecond, op: "hold", dst: bob4, pkt: "b", want: Held},
			{at: 1200 * time.Millisecond, op: "take", dst: bob4, got: []string{"b"}, drop: Drops{Expired: 1}},
		}},
		{"unknown destination", small, []step{
			{op: "hold", dst: bob4, pkt: "a", want: HeldAsk},
			{op: "hold", dst: bob4, pkt: "b", want: Held},
			{op: "unknown", dst: bob4, drop: Drops{Unknown: 2}, len: [2]int{0, 0}},
			{at: 9 * time.Second, op: "hold", dst: bob4, pkt: "c", want: DropUnknown, len: [2]int{0, 0}},
			{at: 10 * time.Second, op: "hold", dst: bob4, pkt: "d", want: HeldAsk, len: [2]int{1, 1}},
		}},
		{"failed lookup waits a retry", small, []step{
			{op: "hold", dst: bob4, pkt: "a", want: HeldAsk},
			{op: "failed", dst: bob4, drop: Drops{Failed: 1}},
			{at: 2 * time.Second, op: "hold", dst: bob4, pkt: "b", want: DropUnknown},
			{at: 3 * time.Second, op: "hold", dst: bob4, pkt: "c", want: HeldAsk},
		}},
		{"lookup rate", Config{MaxDests: 10, Lookups: 2, Retry: 2 * time.Second, MaxAge: time.Second}, []step{
			{op: "hold", dst: vip(1), pkt: "a", want: HeldAsk},
			{op: "hold", dst: vip(2), pkt: "a", want: HeldAsk},
			{op: "hold", dst: vip(3), pkt: "a", want: DropRate, len: [2]int{2, 2}},
			// Answered at once: the slot is free, the rate still used up.
			{op: "unknown", dst: vip(1), drop: Drops{Unknown: 1}, len: [2]int{1, 1}},
			{at: 100 * time.Millisecond, op: "hold", dst: vip(4), pkt: "a", want: DropRate},
			// One token a second comes back.
			{at: time.Second, op: "hold", dst: vip(5), pkt: "a", want: HeldAsk},
			{at: 1100 * time.Millisecond, op: "hold", dst: vip(6), pkt: "a", want: DropRate},
			// A handshaking peer's packets need no lookup, so no token.
			{at: 1100 * time.Millisecond, op: "hold-peer", dst: vip(7), pkt: "a", want: Held},
		}},
		{"negative answers are bounded", small, []step{
			{op: "unknown", dst: vip(1)},
			{op: "unknown", dst: vip(2)},
			{op: "unknown", dst: vip(3)},
			{op: "hold", dst: vip(3), pkt: "a", want: DropUnknown, len: [2]int{0, 0}},
		}},
		{"a handshaking peer's packets wait without a lookup", small, []step{
			{op: "hold-peer", dst: bob6, pkt: "a", want: Held},
			{op: "hold-peer", dst: bob6, pkt: "b", want: Held},
			{op: "hold-peer", dst: bob6, pkt: "c", want: DropFull},
			{op: "take", dst: bob6, got: []string{"a", "b"}},
		}},
		{"negative answers do not stop a peer's packets", small, []step{
			{op: "unknown", dst: bob4},
			{op: "hold-peer", dst: bob4, pkt: "a", want: Held, len: [2]int{1, 1}},
		}},
		{"take gets both families, mapped or not", Config{}, []step{
			{op: "hold", dst: netip.AddrFrom16(bob4.As16()), pkt: "4", want: HeldAsk},
			{op: "hold", dst: bob6, pkt: "6", want: HeldAsk},
			{op: "take", dst: bob4, got: []string{"6", "4"}, len: [2]int{0, 0}},
		}},
		{"sweep", small, []step{
			{op: "hold", dst: bob4, pkt: "a", want: HeldAsk},
			{op: "hold-peer", dst: bob6, pkt: "a", want: Held},
			{at: 1500 * time.Millisecond, op: "sweep", drop: Drops{Expired: 2}, len: [2]int{1, 0}},
			{at: 3 * time.Second, op: "sweep", len: [2]int{0, 0}},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q := New(tt.cfg)
			for i, s := range tt.steps {
				now := t0.Add(s.at)
				var drops Drops
				switch s.op {
				case "hold", "hold-peer":
					var v Verdict
					v, drops = q.Hold(s.dst, []byte(s.pkt), s.op == "hold", now)
					if v != s.want {
						t.Fatalf("step %d: Hold(%v, %q) = %v, want %v", i, s.dst, s.pkt, v, s.want)
					}
				case "take":
					var pkts [][]byte
					pkts, drops = q.Take(now, 64, bob6, s.dst)
					if got := fmt.Sprintf("%q", pkts); got != fmt.Sprintf("%q", s.got) {
						t.Fatalf("step %d: Take = %s, want %q", i, got, s.got)
					}
				case "unknown":
					drops = q.Unknown(s.dst, now)
				case "failed":
					drops = q.Failed(s.dst, now)
				case "sweep":
					drops = q.Sweep(now)
				}
				if drops != s.drop {
					t.Fatalf("step %d (%s): drops %+v, want %+v", i, s.op, drops, s.drop)
				}
				if s.len != [2]int{} || s.op == "take" || s.op == "unknown" || s.op == "sweep" {
					if d, p := q.Len(); [2]int{d, p} != s.len {
						t.Fatalf("step %d (%s): holds %d destinations, %d packets; want %v", i, s.op, d, p, s.len)
					}
				}
			}
		})
	}
}

// TestHoldCopies: the caller's buffer is reused for the next read.
func TestHoldCopies(t *testing.T) {
	q := New(Config{})
	buf := []byte("first")
	q.Hold(bob4, buf, true, t0)
	copy(buf, "XXXXX")
	pkts, _ := q.Take(t0, 64, bob4)
	if len(pkts) != 1 || string(pkts[0]) != "first" {
		t.Fatalf("Take = %q, want the packet as it was held", pkts)
	}
}

// TestTakeMax: Take hands out at most max packets; the rest are counted.
func TestTakeMax(t *testing.T) {
	q := New(Config{PerDest: 10})
	for i := range 10 {
		q.Hold(bob4, []byte{byte(i)}, true, t0)
	}
	pkts, drops := q.Take(t0, 4, bob4)
	if len(pkts) != 4 || pkts[0][0] != 0 || pkts[3][0] != 3 || drops.Failed != 6 {
		t.Fatalf("Take(max 4) = %v, %+v", pkts, drops)
	}
}

// TestScanBounded: a scan of many addresses asks about at most MaxDests
// of them per Retry, and never holds more than MaxDests*PerDest packets.
func TestScanBounded(t *testing.T) {
	q := New(Config{})
	asks := 0
	for i := range 10000 {
		now := t0.Add(time.Duration(i) * time.Millisecond) // 10 s of scanning
		if v, _ := q.Hold(vip(i), []byte("syn"), true, now); v == HeldAsk {
			asks++
		}
		if _, p := q.Len(); p > DefaultMaxDests*DefaultPerDest {
			t.Fatalf("holds %d packets", p)
		}
	}
	// A burst of Lookups, then Lookups per Retry: three for 10 s.
	if max := 3 * DefaultMaxDests; asks > max {
		t.Fatalf("%d lookups for a 10 s scan, want at most %d", asks, max)
	}
}

// TestScanAnsweredFast: NMS answers every lookup at once, which frees its
// slot; the lookup rate still holds a scan to Lookups per Retry.
func TestScanAnsweredFast(t *testing.T) {
	q := New(Config{})
	asks := 0
	for i := range 10000 {
		now := t0.Add(time.Duration(i) * time.Millisecond)
		if v, _ := q.Hold(vip(i), []byte("syn"), true, now); v == HeldAsk {
			asks++
			q.Unknown(vip(i), now)
		}
	}
	if max := 3 * DefaultMaxDests; asks > max {
		t.Fatalf("%d lookups for a 10 s scan answered at once, want at most %d", asks, max)
	}
}

// Ask (a PTR lookup, no packet) obeys what the packets' lookups obey:
// an address nobody holds is refused while that answer is believed, and
// the lookups share one budget, so PTR queries cannot scan past it.
func TestAsk(t *testing.T) {
	q := New(Config{Lookups: 3, Retry: time.Second, Negative: 10 * time.Second})
	if v := q.Ask(bob4, t0); v != HeldAsk {
		t.Fatalf("first ask: %v, want HeldAsk", v)
	}
	q.Unknown(bob4, t0)
	if v := q.Ask(bob4, t0.Add(time.Second)); v != DropUnknown {
		t.Fatalf("ask after nobody-holds-it: %v, want DropUnknown", v)
	}
	if v := q.Ask(bob4, t0.Add(11*time.Second)); v != HeldAsk {
		t.Fatalf("ask once the answer is stale: %v, want HeldAsk", v)
	}
	// A fresh budget, shared: a packet's lookup and two asks spend it.
	q = New(Config{Lookups: 3, Retry: time.Second})
	if v, _ := q.Hold(vip(1), []byte("syn"), true, t0); v != HeldAsk {
		t.Fatalf("packet lookup: %v", v)
	}
	for i := range 2 {
		if v := q.Ask(vip(10+i), t0); v != HeldAsk {
			t.Fatalf("ask %d: %v, want HeldAsk", i, v)
		}
	}
	if v := q.Ask(vip(20), t0); v != DropRate {
		t.Fatalf("ask past the budget: %v, want DropRate", v)
	}
	if v, _ := q.Hold(vip(21), []byte("syn"), true, t0); v != DropRate {
		t.Fatalf("packet lookup past the budget the asks spent: %v, want DropRate", v)
	}
	if v := q.Ask(vip(20), t0.Add(time.Second)); v != HeldAsk {
		t.Fatalf("ask after a Retry's refill: %v, want HeldAsk", v)
	}
}
