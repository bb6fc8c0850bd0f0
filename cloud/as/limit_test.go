package as

import (
	"net/netip"
	"testing"
	"time"
)

func TestBucket(t *testing.T) {
	t0 := time.Unix(1000, 0)
	tests := []struct {
		name  string
		steps []time.Duration // offsets of take() calls
		want  []bool
	}{
		{"burst then empty", []time.Duration{0, 0, 0}, []bool{true, true, false}},
		{"refills at rate", []time.Duration{0, 0, 0, 500 * time.Millisecond, 500 * time.Millisecond}, []bool{true, true, false, true, false}},
		{"refill capped at burst", []time.Duration{0, 0, time.Hour, time.Hour, time.Hour}, []bool{true, true, true, true, false}},
		{"clock going back refills nothing", []time.Duration{time.Second, time.Second, 0}, []bool{true, true, false}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b bucket
			for i, d := range tt.steps {
				if got := b.take(t0.Add(d), 2, 2); got != tt.want[i] {
					t.Fatalf("take %d at +%v = %v, want %v", i, d, got, tt.want[i])
				}
			}
		})
	}
}

func TestSourceKey(t *testing.T) {
	tests := []struct{ in, want string }{
		{"192.0.2.7", "192.0.2.7"},
		{"::ffff:192.0.2.7", "192.0.2.7"},
		{"2001:db8:1:2:aaaa::1", "2001:db8:1:2::"},
		{"2001:db8:1:2:ffff:ffff:ffff:ffff", "2001:db8:1:2::"},
	}
	for _, tt := range tests {
		if got := sourceKey(netip.MustParseAddr(tt.in)); got != netip.MustParseAddr(tt.want) {
			t.Errorf("sourceKey(%s) = %s, want %s", tt.in, got, tt.want)
		}
	}
}

// TestLimiterUnderLoad: per-source limits bind only under load, and then a
// flooding source is refused while a quiet one still gets through.
func TestLimiterUnderLoad(t *testing.T) {
	t0 := time.Unix(1000, 0)
	flood, real := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("198.51.100.1")
	l := newLimiter(LimitConfig{PerSource: 1, Burst: 2, Logins: 10, LoginBurst: 10})
	// Not under load: one source may take the whole global burst.
	for i := range 6 {
		if !l.allow(flood, true, false, t0) {
			t.Fatalf("login %d refused before any load", i)
		}
	}
	if l.allow(flood, true, false, t0) {
		t.Fatal("flooding source admitted with less than half the global budget left")
	}
	if !l.underLoad(t0) {
		t.Fatal("not under load")
	}
	if !l.allow(real, true, false, t0) {
		t.Fatal("quiet source refused under load")
	}
	// The load holds for loadHold after the last sign of it.
	if !l.underLoad(t0.Add(loadHold / 2)) {
		t.Fatal("load forgotten at once")
	}
	later := t0.Add(loadHold + 10*time.Second)
	if l.underLoad(later) {
		t.Fatal("still under load long after")
	}
	// busy (many pending logins) is load too.
	if !l.allow(flood, false, true, later) || !l.underLoad(later) {
		t.Fatal("busy does not count as load")
	}
}

func TestLimiterGlobalBudget(t *testing.T) {
	t0 := time.Unix(1000, 0)
	l := newLimiter(LimitConfig{PerSource: 1000, Burst: 1000, Logins: 10, LoginBurst: 4})
	var admitted int
	for i := range 100 {
		a := netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)})
		if l.allow(a, true, false, t0) {
			admitted++
		}
	}
	if admitted != 4 {
		t.Fatalf("admitted %d logins from 100 sources, want the burst of 4", admitted)
	}
	// Other packets (confirmations) do not spend the login budget.
	if !l.allow(netip.MustParseAddr("10.9.9.9"), false, false, t0) {
		t.Fatal("confirmation refused for lack of login budget")
	}
}

// TestLimiterTableBounded: a flood from ever new sources keeps the table
// at its bound; sources beyond it share the overflow bucket.
func TestLimiterTableBounded(t *testing.T) {
	t0 := time.Unix(1000, 0)
	l := newLimiter(LimitConfig{PerSource: 1, Burst: 2, Logins: 1e9, LoginBurst: 1e9, Sources: 64})
	for i := range 10000 {
		a := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		l.allow(a, true, false, t0.Add(time.Duration(i)*time.Microsecond))
		if n := l.tracked(); n > 64 {
			t.Fatalf("table at %d entries after %d sources, bound 64", n, i+1)
		}
	}
	// Once their buckets refill the entries are swept.
	l.allow(netip.MustParseAddr("192.0.2.1"), false, false, t0.Add(time.Minute))
	if n := l.tracked(); n > 1 {
		t.Fatalf("%d refilled entries not swept", n)
	}
}

func TestWindow(t *testing.T) {
	t0 := time.Unix(1000, 0)
	w := newWindow(10*time.Second, 3)
	for i := range 3 {
		if !w.admit(t0) {
			t.Fatalf("admission %d refused", i)
		}
	}
	if w.admit(t0.Add(5 * time.Second)) {
		t.Fatal("fourth admission within the TTL")
	}
	// Entries admitted at t0 live until t0+10s: until then none is freed.
	if w.admit(t0.Add(9999 * time.Millisecond)) {
		t.Fatal("admitted before the first entries expired")
	}
	if got := w.count(t0.Add(11 * time.Second)); got != 0 {
		t.Fatalf("count %d after the TTL", got)
	}
	if !w.admit(t0.Add(11 * time.Second)) {
		t.Fatal("refused after the TTL")
	}
	if got := w.count(t0.Add(time.Hour)); got != 0 {
		t.Fatalf("count %d an hour later", got)
	}
}

// TestLimiterProvenLoginNotCrowdedOut: a table filled by unproven sources
// (confirmations, metered while the AS was not loaded) leaves a source with
// a proven login its own bucket instead of the overflow bucket the flood
// has emptied; overShare never adds a source.
func TestLimiterProvenLoginNotCrowdedOut(t *testing.T) {
	t0 := time.Unix(1000, 0)
	l := newLimiter(LimitConfig{PerSource: 1, Burst: 2, Logins: 1e9, LoginBurst: 1e9, Sources: 64})
	for i := range 1000 { // fills the table, then empties the overflow bucket
		l.allow(netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}), false, true, t0)
	}
	if got := l.tracked(); got != 64 {
		t.Fatalf("table at %d entries, want full (64)", got)
	}
	stranger := netip.MustParseAddr("192.0.2.9")
	if l.allow(stranger, false, true, t0) {
		t.Fatal("an unproven stranger got past the emptied overflow bucket under load")
	}
	real := netip.MustParseAddr("192.0.2.7")
	if l.overShare(real, t0) {
		t.Fatal("overShare held a source it does not know over its share")
	}
	if !l.allow(real, true, true, t0) {
		t.Fatal("a proven login refused: it shared the flood's overflow bucket")
	}
	if got := l.tracked(); got != 64 {
		t.Fatalf("table at %d entries after the eviction, want 64", got)
	}
	if l.overShare(real, t0) {
		t.Fatal("the proven source is over its share after one packet of a burst of 2")
	}
	if !l.overShare(real, t0) {
		t.Fatal("the proven source's third packet at once is not over its share")
	}
}

// TestLimiterSweepForgetsIdleSources: the sources of a burst that is over
// leave the table at the next sweep, whether or not the table filled; a
// source still over its share stays.
func TestLimiterSweepForgetsIdleSources(t *testing.T) {
	l := newLimiter(LimitConfig{Sources: 1 << 14})
	t0 := time.Unix(1000, 0)
	for i := range 5000 {
		l.allow(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), true, false, t0)
	}
	busy := netip.MustParseAddr("192.0.2.1")
	for range 100 {
		l.allow(busy, true, false, t0.Add(time.Minute))
	}
	if got := l.tracked(); got != 5001 {
		t.Fatalf("%d sources tracked, want 5001", got)
	}
	l.sweep(t0.Add(time.Minute))
	if got := l.tracked(); got != 1 {
		t.Fatalf("%d sources tracked after the sweep, want 1 (the one over its share)", got)
	}
}

// TestLoadFromRateNotClumps: logins at a quarter of the budget arriving in
// clumps (158 at once every 300 ms: 526/s, the rate of the 100k-node run)
// are not load; a flood is, once it has spent the bucket's burst. On the
// bucket's level (the sign before) the first clump already meant load.
func TestLoadFromRateNotClumps(t *testing.T) {
	t0 := time.Unix(1000, 0)
	l := newLimiter(LimitConfig{})
	src := 0
	next := func() netip.Addr {
		src++
		return netip.AddrFrom4([4]byte{10, byte(src >> 16), byte(src >> 8), byte(src)})
	}
	for clump := range 40 {
		at := t0.Add(time.Duration(clump) * 300 * time.Millisecond)
		for range 158 {
			if !l.allow(next(), true, false, at) {
				t.Fatalf("clump %d: a login refused", clump)
			}
		}
		if l.underLoad(at) {
			t.Fatalf("under load after clump %d of 158 logins (526/s, budget %v/s)", clump, l.cfg.Logins)
		}
	}
	// A flood of 4,000 logins a second from fresh sources: load within
	// 200 ms (the bucket's burst of 256 is spent after ~130 ms).
	at := t0.Add(time.Minute)
	for i := range 800 {
		l.allow(next(), true, false, at.Add(time.Duration(i)*250*time.Microsecond))
	}
	if !l.underLoad(at.Add(200 * time.Millisecond)) {
		t.Fatal("a flood at twice the budget is not load")
	}
}
