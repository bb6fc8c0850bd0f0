package relay

import (
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var (
	t0   = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	ap   = netip.MustParseAddrPort
	idA  = id(0x51)
	tokA = id(0xa1)
	tokB = id(0xb1)
	epA  = ap("198.51.100.1:60001")
	epB  = ap("203.0.113.1:50002")
	epB6 = ap("[2001:db8:b::20]:41641")
)

func id(b byte) (v [16]byte) {
	for i := range v {
		v[i] = b
	}
	return v
}

// newSession returns a table holding session idA between tokA and tokB,
// valid for an hour after t0, with a one-minute idle timeout.
func newSession(t *testing.T) *Table {
	t.Helper()
	tab := NewTable(Config{IdleTimeout: time.Minute})
	if err := tab.Allocate(idA, tokA, tokB, "a.example.cyphonic", "b.example.cyphonic", t0.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	return tab
}

type fwd struct {
	to        netip.AddrPort
	peerToken [16]byte
	ok        bool
	reason    DropReason
}

func forward(tab *Table, token [16]byte, from netip.AddrPort, n int, now time.Time) fwd {
	to, pt, ok, r := tab.Forward(token, from, n, now)
	return fwd{to, pt, ok, r}
}

func TestAllocate(t *testing.T) {
	exp := t0.Add(time.Hour)
	tests := []struct {
		name             string
		session          [16]byte
		tokenA, tokenB   [16]byte
		expires          time.Time
		want             error
		wantSessionCount int
	}{
		{"new session", id(2), id(0xa2), id(0xb2), exp, nil, 2},
		{"duplicate session", idA, id(0xa2), id(0xb2), exp, ErrDuplicateSession, 1},
		{"token A taken as A", id(2), tokA, id(0xb2), exp, ErrDuplicateToken, 1},
		{"token B taken as A", id(2), tokB, id(0xb2), exp, ErrDuplicateToken, 1},
		{"token A taken as B", id(2), id(0xa2), tokA, exp, ErrDuplicateToken, 1},
		{"same token both sides", id(2), id(0xa2), id(0xa2), exp, ErrSameToken, 1},
		{"zero token", id(2), [16]byte{}, id(0xb2), exp, ErrZeroToken, 1},
		{"no expiry", id(2), id(0xa2), id(0xb2), time.Time{}, ErrNoExpiry, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tab := newSession(t)
			err := tab.Allocate(tt.session, tt.tokenA, tt.tokenB, "x", "y", tt.expires)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Allocate() = %v, want %v", err, tt.want)
			}
			if got := tab.Stats().Sessions; got != tt.wantSessionCount {
				t.Errorf("sessions = %d, want %d", got, tt.wantSessionCount)
			}
			// A refused allocation must leave the existing session intact.
			if r := forward(tab, tokA, epA, 1, t0); r.reason != DropPeerUnknown {
				t.Errorf("existing session disturbed: %+v", r)
			}
		})
	}
}

func TestAllocateFull(t *testing.T) {
	tab := NewTable(Config{MaxSessions: 2})
	exp := t0.Add(time.Hour)
	for i := byte(1); i <= 2; i++ {
		if err := tab.Allocate(id(i), id(0x10+i), id(0x20+i), "a", "b", exp); err != nil {
			t.Fatal(err)
		}
	}
	if err := tab.Allocate(id(3), id(0x13), id(0x23), "a", "b", exp); !errors.Is(err, ErrFull) {
		t.Fatalf("third Allocate() = %v, want ErrFull", err)
	}
	if !tab.Release(id(1)) {
		t.Fatal("Release of a live session returned false")
	}
	if err := tab.Allocate(id(3), id(0x13), id(0x23), "a", "b", exp); err != nil {
		t.Fatalf("Allocate after Release: %v", err)
	}
}

// TestForward walks one session through its life: each step's result
// depends on the ones before it.
func TestForward(t *testing.T) {
	steps := []struct {
		name  string
		token [16]byte
		from  netip.AddrPort
		n     int
		want  fwd
	}{
		{"A first: B not seen yet", tokA, epA, 100, fwd{reason: DropPeerUnknown}},
		{"B reaches A", tokB, epB, 200, fwd{epA, tokA, true, DropNone}},
		{"A reaches B", tokA, epA, 300, fwd{epB, tokB, true, DropNone}},
		{"B roams to IPv6: A's packets follow", tokB, epB6, 50, fwd{epA, tokA, true, DropNone}},
		{"A reaches B over IPv6", tokA, epA, 60, fwd{epB6, tokB, true, DropNone}},
		{"A behind a new mapping, v4-mapped form", tokA, ap("[::ffff:198.51.100.1]:60099"), 70, fwd{epB6, tokB, true, DropNone}},
		{"B answers the new mapping", tokB, epB6, 80, fwd{ap("198.51.100.1:60099"), tokA, true, DropNone}},
		{"unknown token", id(0xee), epA, 90, fwd{reason: DropUnknownToken}},
		{"source without port", tokA, ap("198.51.100.1:0"), 90, fwd{reason: DropBadSource}},
		{"unspecified source", tokA, ap("0.0.0.0:1"), 90, fwd{reason: DropBadSource}},
		{"multicast source", tokA, ap("224.0.0.1:1"), 90, fwd{reason: DropBadSource}},
		{"broadcast source", tokA, ap("255.255.255.255:1"), 90, fwd{reason: DropBadSource}},
		{"invalid source", tokA, netip.AddrPort{}, 90, fwd{reason: DropBadSource}},
		{"relay's own address", tokA, ap("192.0.2.1:4500"), 90, fwd{reason: DropBadSource}},
		{"relay's own address, v4-mapped", tokA, ap("[::ffff:192.0.2.1]:4500"), 90, fwd{reason: DropBadSource}},
	}
	tab := NewTable(Config{Self: []netip.AddrPort{ap("192.0.2.1:4500")}})
	if err := tab.Allocate(idA, tokA, tokB, "a", "b", t0.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	for i, st := range steps {
		if got := forward(tab, st.token, st.from, st.n, t0.Add(time.Duration(i)*time.Second)); got != st.want {
			t.Fatalf("step %d %q: got %+v, want %+v", i, st.name, got, st.want)
		}
	}

	ss := tab.Sessions()
	if len(ss) != 1 {
		t.Fatalf("%d sessions, want 1", len(ss))
	}
	want := SessionInfo{
		ID: idA, FQDNA: "a", FQDNB: "b",
		EndpointA: ap("198.51.100.1:60099"), EndpointB: epB6,
		AToB:       Counters{Packets: 3, Bytes: 300 + 60 + 70},
		BToA:       Counters{Packets: 3, Bytes: 200 + 50 + 80},
		Drops:      1, // only the first packet carried a session token and was refused
		Roams:      2,
		Expires:    t0.Add(time.Hour),
		LastActive: t0.Add(6 * time.Second),
	}
	if ss[0] != want {
		t.Errorf("session\n got %+v\nwant %+v", ss[0], want)
	}
	st := tab.Stats()
	wantStats := Stats{
		Sessions: 1, Allocated: 1,
		Forwarded: Counters{Packets: 6, Bytes: 760},
		Roams:     2,
	}
	wantStats.Drops[DropPeerUnknown] = 1
	wantStats.Drops[DropUnknownToken] = 1
	wantStats.Drops[DropBadSource] = 7
	if st != wantStats {
		t.Errorf("stats\n got %+v\nwant %+v", st, wantStats)
	}
	if st.Dropped(DropBadSource) != 7 || st.Dropped(DropReason(200)) != 0 {
		t.Errorf("Dropped() disagrees with Drops: %+v", st.Drops)
	}
}

func TestTicketExpiry(t *testing.T) {
	tab := newSession(t)
	exp := t0.Add(time.Hour)
	forward(tab, tokA, epA, 1, t0)
	if r := forward(tab, tokB, epB, 1, exp.Add(-time.Nanosecond)); !r.ok {
		t.Fatalf("just before expiry: %+v", r)
	}
	if r := forward(tab, tokB, epB, 1, exp); r.reason != DropExpired {
		t.Fatalf("at expiry: %+v, want DropExpired", r)
	}
	if n := tab.Expire(exp.Add(-time.Second)); n != 0 {
		t.Fatalf("Expire before the ticket ran out removed %d", n)
	}
	if n := tab.Expire(exp); n != 1 {
		t.Fatalf("Expire at ticket expiry removed %d, want 1", n)
	}
	if r := forward(tab, tokA, epA, 1, exp); r.reason != DropUnknownToken {
		t.Fatalf("after sweep: %+v, want DropUnknownToken", r)
	}
	st := tab.Stats()
	if st.Sessions != 0 || st.ExpiredTicket != 1 || st.ExpiredIdle != 0 || st.Dropped(DropExpired) != 1 {
		t.Errorf("stats %+v", st)
	}
	// The tokens are free again.
	if err := tab.Allocate(id(9), tokA, tokB, "a", "b", exp.Add(time.Hour)); err != nil {
		t.Errorf("reallocating expired tokens: %v", err)
	}
}

func TestIdleExpiry(t *testing.T) {
	tab := newSession(t) // idle timeout: one minute
	if err := tab.Allocate(id(2), id(0xa2), id(0xb2), "c", "d", t0.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := tab.Allocate(id(3), id(0xa3), id(0xb3), "e", "f", t0.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	// Session 3 is never used. Session 2 goes quiet after t0. Session A
	// stays active.
	forward(tab, id(0xa2), epA, 1, t0)
	steps := []struct {
		at        time.Duration
		activeA   bool
		removed   int
		remaining [][16]byte
	}{
		{0, true, 0, [][16]byte{id(2), id(3), idA}},           // first sweep starts session 3's idle clock
		{time.Minute, true, 0, [][16]byte{id(2), id(3), idA}}, // exactly the timeout: not yet idle
		{time.Minute + time.Second, true, 2, [][16]byte{idA}},
		{time.Minute + 30*time.Second, false, 0, [][16]byte{idA}}, // quiet for 29s
		{2*time.Minute + time.Second, false, 0, [][16]byte{idA}},  // quiet for exactly the timeout
		{2*time.Minute + 2*time.Second, false, 1, nil},
	}
	for _, st := range steps {
		now := t0.Add(st.at)
		if st.activeA {
			forward(tab, tokA, epA, 1, now)
		}
		if n := tab.Expire(now); n != st.removed {
			t.Fatalf("Expire(t0+%v) removed %d, want %d", st.at, n, st.removed)
		}
		var ids [][16]byte
		for _, s := range tab.Sessions() {
			ids = append(ids, s.ID)
		}
		if fmt.Sprint(ids) != fmt.Sprint(st.remaining) {
			t.Fatalf("after Expire(t0+%v): sessions %x, want %x", st.at, ids, st.remaining)
		}
	}
	if st := tab.Stats(); st.ExpiredIdle != 3 || st.ExpiredTicket != 0 {
		t.Errorf("stats %+v", st)
	}
}

func TestRelease(t *testing.T) {
	tab := newSession(t)
	forward(tab, tokA, epA, 1, t0)
	if !tab.Release(idA) {
		t.Fatal("Release() = false for a live session")
	}
	if tab.Release(idA) {
		t.Fatal("second Release() = true")
	}
	if r := forward(tab, tokB, epB, 1, t0); r.reason != DropUnknownToken {
		t.Fatalf("after Release: %+v", r)
	}
	if st := tab.Stats(); st.Released != 1 || st.Sessions != 0 {
		t.Errorf("stats %+v", st)
	}
}

func TestDropReasonString(t *testing.T) {
	want := map[DropReason]string{
		DropNone: "none", DropUnknownToken: "unknown-token", DropExpired: "expired",
		DropPeerUnknown: "peer-unknown", DropBadSource: "bad-source", 42: "drop(42)",
	}
	for r, s := range want {
		if r.String() != s {
			t.Errorf("%d.String() = %q, want %q", r, r.String(), s)
		}
	}
}

// TestConcurrent forwards on many sessions from many goroutines while
// sessions are allocated, released and swept, then checks that every
// forwarded packet was counted exactly once. Run with -race.
func TestConcurrent(t *testing.T) {
	const (
		sessions = 8
		packets  = 2000
	)
	tab := NewTable(Config{IdleTimeout: time.Hour})
	exp := t0.Add(24 * time.Hour)
	for i := range byte(sessions) {
		if err := tab.Allocate(id(i+1), id(0x40+i), id(0x80+i), "a", "b", exp); err != nil {
			t.Fatal(err)
		}
	}
	var (
		wg        sync.WaitGroup
		mu        sync.Mutex
		forwarded uint64
		bytes     uint64
		churnDrop uint64 // peer-unknown drops caused by the churn goroutine
	)
	for i := range byte(sessions) {
		for side, tok := range [2][16]byte{id(0x40 + i), id(0x80 + i)} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				from := netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 0, i, byte(side)}), 4000)
				var ok, n uint64
				for p := range packets {
					if _, _, fine, _ := tab.Forward(tok, from, p%1500, t0.Add(time.Duration(p)*time.Millisecond)); fine {
						ok++
						n += uint64(p % 1500)
					}
				}
				mu.Lock()
				forwarded += ok
				bytes += n
				mu.Unlock()
			}()
		}
	}
	// Churn beside the traffic: sessions that come and go, sweeps and
	// snapshots.
	wg.Add(1)
	go func() {
		defer wg.Done()
		for j := range 200 {
			sid, ta, tb := id(0xc0+byte(j%16)), id(0xd0+byte(j%16)), id(0xe0+byte(j%16))
			_ = tab.Allocate(sid, ta, tb, "x", "y", exp)
			if _, _, _, r := tab.Forward(ta, epA, 10, t0); r == DropPeerUnknown {
				churnDrop++
			}
			tab.Release(sid)
			tab.Expire(t0)
			_ = tab.Sessions()
			_ = tab.Stats()
		}
	}()
	wg.Wait()

	var perSession uint64
	var perSessionBytes uint64
	for _, s := range tab.Sessions() {
		perSession += s.AToB.Packets + s.BToA.Packets
		perSessionBytes += s.AToB.Bytes + s.BToA.Bytes
	}
	st := tab.Stats()
	if st.Forwarded.Packets != forwarded || perSession != forwarded {
		t.Errorf("forwarded: callers saw %d, Stats %d, sessions %d", forwarded, st.Forwarded.Packets, perSession)
	}
	if st.Forwarded.Bytes != bytes || perSessionBytes != bytes {
		t.Errorf("bytes: callers saw %d, Stats %d, sessions %d", bytes, st.Forwarded.Bytes, perSessionBytes)
	}
	if st.Sessions != sessions {
		t.Errorf("%d sessions left, want %d", st.Sessions, sessions)
	}
	// Every packet of the long-lived sessions was either forwarded or
	// refused because its peer had not been heard yet.
	if got := forwarded + st.Dropped(DropPeerUnknown) - churnDrop; got != 2*sessions*packets {
		t.Errorf("forwarded+peer-unknown = %d, want %d", got, 2*sessions*packets)
	}
}
