package relay

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/cyphonic/cyphonic-go/messages"
	"github.com/cyphonic/cyphonic-go/transport/relaybind"
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

// keyOf is the bind key the tests give the side with token tok.
func keyOf(tok [16]byte) (k messages.RelayBindKey) {
	copy(k[:], tok[:])
	copy(k[16:], tok[:])
	k[31] ^= 0x5a
	return k
}

func sides(fqdnA string, ta [16]byte, fqdnB string, tb [16]byte) (Side, Side) {
	return Side{Token: ta, Key: keyOf(ta), FQDN: fqdnA}, Side{Token: tb, Key: keyOf(tb), FQDN: fqdnB}
}

func alloc(tab *Table, session, ta, tb [16]byte, expires time.Time) error {
	a, b := sides("a", ta, "b", tb)
	return tab.Allocate(session, a, b, expires)
}

// bindPkt is a genuine bind of the side with token tok.
func bindPkt(tok [16]byte, counter uint64) []byte {
	b, err := relaybind.Seal(keyOf(tok), tok, counter)
	if err != nil {
		panic(err)
	}
	return b
}

// newSession returns a table holding session idA between tokA and tokB,
// valid for an hour after t0, with a one-minute idle timeout.
func newSession(t *testing.T) *Table {
	t.Helper()
	tab := NewTable(Config{IdleTimeout: time.Minute})
	a, b := sides("a.example.cyphonic", tokA, "b.example.cyphonic", tokB)
	if err := tab.Allocate(idA, a, b, t0.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	return tab
}

// bound returns newSession's table with A bound at epA and B at epB.
func bound(t *testing.T) *Table {
	t.Helper()
	tab := newSession(t)
	for tok, ep := range map[[16]byte]netip.AddrPort{tokA: epA, tokB: epB} {
		if r := tab.Bind(bindPkt(tok, 1), ep, t0); r != DropNone {
			t.Fatalf("bind %x from %v: %v", tok[0], ep, r)
		}
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

func endpoints(t *testing.T, tab *Table) (netip.AddrPort, netip.AddrPort) {
	t.Helper()
	ss := tab.Sessions()
	if len(ss) != 1 {
		t.Fatalf("%d sessions, want 1", len(ss))
	}
	return ss[0].EndpointA, ss[0].EndpointB
}

func TestAllocate(t *testing.T) {
	exp := t0.Add(time.Hour)
	k2a, k2b := keyOf(id(0xa2)), keyOf(id(0xb2))
	tests := []struct {
		name             string
		session          [16]byte
		tokenA, tokenB   [16]byte
		keyA, keyB       messages.RelayBindKey
		expires          time.Time
		want             error
		wantSessionCount int
	}{
		{"new session", id(2), id(0xa2), id(0xb2), k2a, k2b, exp, nil, 2},
		{"duplicate session", idA, id(0xa2), id(0xb2), k2a, k2b, exp, ErrDuplicateSession, 1},
		{"token A taken as A", id(2), tokA, id(0xb2), k2a, k2b, exp, ErrDuplicateToken, 1},
		{"token B taken as A", id(2), tokB, id(0xb2), k2a, k2b, exp, ErrDuplicateToken, 1},
		{"token A taken as B", id(2), id(0xa2), tokA, k2a, k2b, exp, ErrDuplicateToken, 1},
		{"same token both sides", id(2), id(0xa2), id(0xa2), k2a, k2b, exp, ErrSameToken, 1},
		{"zero token", id(2), [16]byte{}, id(0xb2), k2a, k2b, exp, ErrZeroToken, 1},
		{"zero key A", id(2), id(0xa2), id(0xb2), messages.RelayBindKey{}, k2b, exp, ErrZeroKey, 1},
		{"zero key B", id(2), id(0xa2), id(0xb2), k2a, messages.RelayBindKey{}, exp, ErrZeroKey, 1},
		{"same key both sides", id(2), id(0xa2), id(0xb2), k2a, k2a, exp, ErrSameKey, 1},
		{"no expiry", id(2), id(0xa2), id(0xb2), k2a, k2b, time.Time{}, ErrNoExpiry, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tab := newSession(t)
			err := tab.Allocate(tt.session, Side{Token: tt.tokenA, Key: tt.keyA, FQDN: "x"}, Side{Token: tt.tokenB, Key: tt.keyB, FQDN: "y"}, tt.expires)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Allocate() = %v, want %v", err, tt.want)
			}
			if got := tab.Stats().Sessions; got != tt.wantSessionCount {
				t.Errorf("sessions = %d, want %d", got, tt.wantSessionCount)
			}
			// A refused allocation must leave the existing session intact.
			if r := tab.Bind(bindPkt(tokA, 1), epA, t0); r != DropNone {
				t.Errorf("existing session disturbed: %v", r)
			}
		})
	}
}

func TestAllocateFull(t *testing.T) {
	tab := NewTable(Config{MaxSessions: 2})
	exp := t0.Add(time.Hour)
	for i := byte(1); i <= 2; i++ {
		if err := alloc(tab, id(i), id(0x10+i), id(0x20+i), exp); err != nil {
			t.Fatal(err)
		}
	}
	if err := alloc(tab, id(3), id(0x13), id(0x23), exp); !errors.Is(err, ErrFull) {
		t.Fatalf("third Allocate() = %v, want ErrFull", err)
	}
	if !tab.Release(id(1)) {
		t.Fatal("Release of a live session returned false")
	}
	if err := alloc(tab, id(3), id(0x13), id(0x23), exp); err != nil {
		t.Fatalf("Allocate after Release: %v", err)
	}
}

// TestForward walks one session through its life: each step's result
// depends on the ones before it. Binds move endpoints; relay frames only
// travel between bound endpoints.
func TestForward(t *testing.T) {
	const bind = -1 // n of a step that is a bind, with counter ctr
	steps := []struct {
		name  string
		token [16]byte
		from  netip.AddrPort
		n     int
		ctr   uint64
		want  fwd
	}{
		{"A sends before binding", tokA, epA, 100, 0, fwd{reason: DropNotBound}},
		{"A binds", tokA, epA, bind, 10, fwd{}},
		{"A first: B not bound yet", tokA, epA, 100, 0, fwd{reason: DropPeerUnknown}},
		{"B binds", tokB, epB, bind, 10, fwd{}},
		{"B reaches A", tokB, epB, 200, 0, fwd{epA, tokA, true, DropNone}},
		{"A reaches B", tokA, epA, 300, 0, fwd{epB, tokB, true, DropNone}},
		{"B's frame from IPv6 before it binds there", tokB, epB6, 50, 0, fwd{reason: DropNotBound}},
		{"B roams to IPv6 with a bind", tokB, epB6, bind, 11, fwd{}},
		{"B from IPv6: A's packets follow", tokB, epB6, 50, 0, fwd{epA, tokA, true, DropNone}},
		{"B's old address is no longer bound", tokB, epB, 50, 0, fwd{reason: DropNotBound}},
		{"A reaches B over IPv6", tokA, epA, 60, 0, fwd{epB6, tokB, true, DropNone}},
		{"A binds behind a new mapping, v4-mapped form", tokA, ap("[::ffff:198.51.100.1]:60099"), bind, 11, fwd{}},
		{"A from the new mapping", tokA, ap("198.51.100.1:60099"), 70, 0, fwd{epB6, tokB, true, DropNone}},
		{"B answers the new mapping", tokB, epB6, 80, 0, fwd{ap("198.51.100.1:60099"), tokA, true, DropNone}},
		{"an empty frame is no bind", tokA, epA, 0, 0, fwd{reason: DropBadBind}},
		{"unknown token", id(0xee), epA, 90, 0, fwd{reason: DropUnknownToken}},
		{"source without port", tokA, ap("198.51.100.1:0"), 90, 0, fwd{reason: DropBadSource}},
		{"unspecified source", tokA, ap("0.0.0.0:1"), 90, 0, fwd{reason: DropBadSource}},
		{"multicast source", tokA, ap("224.0.0.1:1"), 90, 0, fwd{reason: DropBadSource}},
		{"broadcast source", tokA, ap("255.255.255.255:1"), 90, 0, fwd{reason: DropBadSource}},
		{"invalid source", tokA, netip.AddrPort{}, 90, 0, fwd{reason: DropBadSource}},
		{"relay's own address", tokA, ap("192.0.2.1:4500"), 90, 0, fwd{reason: DropBadSource}},
		{"relay's own address, v4-mapped", tokA, ap("[::ffff:192.0.2.1]:4500"), 90, 0, fwd{reason: DropBadSource}},
		{"bind from the relay's own address", tokA, ap("192.0.2.1:4500"), bind, 12, fwd{reason: DropBadSource}},
	}
	tab := NewTable(Config{Self: []netip.AddrPort{ap("192.0.2.1:4500")}})
	if err := alloc(tab, idA, tokA, tokB, t0.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	for i, st := range steps {
		now := t0.Add(time.Duration(i) * time.Second)
		var got fwd
		if st.n == bind {
			got.reason = tab.Bind(bindPkt(st.token, st.ctr), st.from, now)
		} else {
			got = forward(tab, st.token, st.from, st.n, now)
		}
		if got != st.want {
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
		Drops:      4, // refused frames of this session that got as far as its lookup
		Roams:      2,
		Expires:    t0.Add(time.Hour),
		LastActive: t0.Add(11 * time.Second), // A's last bind; frames do not count
	}
	if ss[0] != want {
		t.Errorf("session\n got %+v\nwant %+v", ss[0], want)
	}
	st := tab.Stats()
	wantStats := Stats{
		Sessions: 1, Allocated: 1,
		Forwarded: Counters{Packets: 6, Bytes: 760},
		Binds:     4,
		Roams:     2,
	}
	wantStats.Drops[DropNotBound] = 3
	wantStats.Drops[DropPeerUnknown] = 1
	wantStats.Drops[DropBadBind] = 1
	wantStats.Drops[DropUnknownToken] = 1
	wantStats.Drops[DropBadSource] = 8
	if st != wantStats {
		t.Errorf("stats\n got %+v\nwant %+v", st, wantStats)
	}
	if st.Dropped(DropBadSource) != 8 || st.Dropped(DropReason(200)) != 0 {
		t.Errorf("Dropped() disagrees with Drops: %+v", st.Drops)
	}
}

// TestBindWithoutKey: whoever saw a side's token on the wire, but has no
// bind key, cannot move that side: an empty relay frame (the old bind), a
// bind under another key, a bind with a garbage or truncated MAC all leave
// both endpoints where they were and are counted.
func TestBindWithoutKey(t *testing.T) {
	evil := ap("192.0.2.66:4444")
	good := bindPkt(tokA, 100)
	wrongKey, _ := relaybind.Seal(keyOf(id(0x99)), tokA, 100)
	peerKey, _ := relaybind.Seal(keyOf(tokB), tokA, 100) // B's key, A's token
	garbage := bytes.Clone(good)
	garbage[len(garbage)-1] ^= 0x80
	counterBumped := bytes.Clone(good)
	counterBumped[messages.RelayBindMACOffset-1]++
	emptyFrame := make([]byte, messages.RelayHeaderLen)
	messages.PutRelayHeader(emptyFrame, tokA)
	tests := []struct {
		name         string
		pkt          []byte
		want         DropReason
		sessionDrops uint64 // 0 when refused before the token is looked up
	}{
		{"wrong key", wrongKey, DropBadBind, 1},
		{"the peer's key", peerKey, DropBadBind, 1},
		{"garbage MAC", garbage, DropBadBind, 1},
		{"counter changed after MACing", counterBumped, DropBadBind, 1},
		{"truncated", good[:messages.RelayBindLen-1], DropBadBind, 0},
		{"oversized", append(bytes.Clone(good), 0), DropBadBind, 0},
		{"empty relay frame", emptyFrame, DropBadBind, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tab := bound(t)
			var r DropReason
			if messages.PacketType(tt.pkt[0]) == messages.TypeRelay {
				tok, inner, err := messages.ParseRelay(tt.pkt)
				if err != nil {
					t.Fatal(err)
				}
				_, _, _, r = tab.Forward(tok, evil, len(inner), t0.Add(time.Second))
			} else {
				r = tab.Bind(tt.pkt, evil, t0.Add(time.Second))
			}
			if r != tt.want {
				t.Fatalf("reason %v, want %v", r, tt.want)
			}
			if a, b := endpoints(t, tab); a != epA || b != epB {
				t.Fatalf("endpoints moved to %v %v", a, b)
			}
			if got := forward(tab, tokB, epB, 10, t0.Add(time.Second)); got.to != epA {
				t.Fatalf("B's traffic goes to %v, want %v", got.to, epA)
			}
			st := tab.Stats()
			if st.Dropped(tt.want) != 1 || st.Roams != 0 || st.Binds != 2 || tab.Sessions()[0].Drops != tt.sessionDrops {
				t.Fatalf("stats %+v", st)
			}
			// The genuine bind still works afterwards.
			if r := tab.Bind(good, ap("198.51.100.1:60005"), t0.Add(2*time.Second)); r != DropNone {
				t.Fatalf("genuine bind after the attack: %v", r)
			}
		})
	}
}

// TestBindReplay: a genuine bind recorded on the wire and sent again later
// from another address moves nothing, whether the node has bound since or
// not, and neither does an older one.
func TestBindReplay(t *testing.T) {
	evil := ap("192.0.2.66:4444")
	tab := bound(t) // both sides bound with counter 1
	recorded := bindPkt(tokA, 5)
	if r := tab.Bind(recorded, epA, t0.Add(time.Second)); r != DropNone {
		t.Fatal(r)
	}
	for i, pkt := range [][]byte{recorded, bindPkt(tokA, 1), bindPkt(tokA, 4)} {
		if r := tab.Bind(pkt, evil, t0.Add(time.Duration(2+i)*time.Second)); r != DropReplay {
			t.Fatalf("replay %d: %v, want DropReplay", i, r)
		}
	}
	// The node roams with a newer bind; the old one still moves nothing.
	moved := ap("198.51.100.1:60077")
	if r := tab.Bind(bindPkt(tokA, 6), moved, t0.Add(10*time.Second)); r != DropNone {
		t.Fatal(r)
	}
	if r := tab.Bind(recorded, epA, t0.Add(11*time.Second)); r != DropReplay {
		t.Fatalf("replay to move back: %v", r)
	}
	if a, b := endpoints(t, tab); a != moved || b != epB {
		t.Fatalf("endpoints %v %v, want %v %v", a, b, moved, epB)
	}
	if st := tab.Stats(); st.Dropped(DropReplay) != 4 || st.Roams != 1 {
		t.Fatalf("stats %+v", st)
	}
}

// TestFrameFromNewAddress: a relay frame carrying a side's token from an
// address that is not its bound endpoint is not forwarded and moves
// nothing; the bound side's traffic is unaffected.
func TestFrameFromNewAddress(t *testing.T) {
	tab := bound(t)
	evil := ap("192.0.2.66:4444")
	for i := range 3 {
		if got := forward(tab, tokA, evil, 100, t0.Add(time.Duration(i)*time.Second)); got.ok || got.reason != DropNotBound {
			t.Fatalf("frame from %v: %+v", evil, got)
		}
	}
	if a, b := endpoints(t, tab); a != epA || b != epB {
		t.Fatalf("endpoints moved to %v %v", a, b)
	}
	if got := forward(tab, tokB, epB, 10, t0); got != (fwd{epA, tokA, true, DropNone}) {
		t.Fatalf("B's frame: %+v", got)
	}
	if got := forward(tab, tokA, epA, 10, t0); got != (fwd{epB, tokB, true, DropNone}) {
		t.Fatalf("A's frame: %+v", got)
	}
	if st := tab.Stats(); st.Dropped(DropNotBound) != 3 || st.Forwarded.Packets != 2 || st.Roams != 0 {
		t.Fatalf("stats %+v", st)
	}
}

func TestBindAllocatesNothing(t *testing.T) {
	tab := bound(t)
	ctr := uint64(10)
	good := make([]byte, messages.RelayBindLen)
	m, err := relaybind.NewMAC(keyOf(tokA))
	if err != nil {
		t.Fatal(err)
	}
	bad := bindPkt(tokA, 1)
	if n := testing.AllocsPerRun(100, func() {
		ctr++
		m.Put(good, tokA, ctr)
		if tab.Bind(good, epA, t0) != DropNone || tab.Bind(bad, epA, t0) != DropReplay {
			t.Fatal("wrong answer")
		}
	}); n != 0 {
		t.Fatalf("Bind allocates %v times", n)
	}
}

func TestTicketExpiry(t *testing.T) {
	tab := bound(t)
	exp := t0.Add(time.Hour)
	if r := forward(tab, tokB, epB, 1, exp.Add(-time.Nanosecond)); !r.ok {
		t.Fatalf("just before expiry: %+v", r)
	}
	if r := forward(tab, tokB, epB, 1, exp); r.reason != DropExpired {
		t.Fatalf("at expiry: %+v, want DropExpired", r)
	}
	if r := tab.Bind(bindPkt(tokA, 2), epA, exp); r != DropExpired {
		t.Fatalf("bind at expiry: %v, want DropExpired", r)
	}
	// Binding keeps it from going idle; only the ticket ends it.
	if r := tab.Bind(bindPkt(tokA, 3), epA, exp.Add(-2*time.Second)); r != DropNone {
		t.Fatal(r)
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
	if st.Sessions != 0 || st.ExpiredTicket != 1 || st.ExpiredIdle != 0 || st.Dropped(DropExpired) != 2 {
		t.Errorf("stats %+v", st)
	}
	// The tokens are free again.
	if err := alloc(tab, id(9), tokA, tokB, exp.Add(time.Hour)); err != nil {
		t.Errorf("reallocating expired tokens: %v", err)
	}
}

// TestIdleExpiry: only accepted binds keep a session alive. Traffic alone
// does not (whoever knows a token and a bound endpoint could spoof it),
// nor do refused binds.
func TestIdleExpiry(t *testing.T) {
	tab := bound(t) // idle timeout: one minute; both sides bound at t0
	for _, sid := range []byte{2, 3} {
		if err := alloc(tab, id(sid), id(0xa0+sid), id(0xb0+sid), t0.Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
	}
	// Session 3 is never used. Session 2 binds once at t0 and then only
	// relays frames and gets forged binds. Session A keeps binding.
	for _, tok := range [][16]byte{id(0xa2), id(0xb2)} {
		if r := tab.Bind(bindPkt(tok, 1), epA, t0); r != DropNone && tok == id(0xa2) {
			t.Fatal(r)
		}
	}
	ctr := uint64(1)
	steps := []struct {
		at        time.Duration
		bindA     bool
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
		if st.bindA {
			ctr++
			if r := tab.Bind(bindPkt(tokA, ctr), epA, now); r != DropNone {
				t.Fatal(r)
			}
		}
		forward(tab, id(0xa2), epA, 100, now)
		forward(tab, tokA, epA, 100, now)
		wrong, _ := relaybind.Seal(keyOf(id(0x77)), id(0xa2), ctr+100)
		tab.Bind(wrong, epA, now)
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

// TestExpireBounded: one sweep looks at no more than SweepBatch sessions,
// and successive sweeps get through the whole table.
func TestExpireBounded(t *testing.T) {
	const n, batch = 10, 3
	tab := NewTable(Config{IdleTimeout: time.Minute, SweepBatch: batch})
	for i := range byte(n) {
		if err := alloc(tab, id(i+1), id(0x40+i), id(0x80+i), t0.Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
	}
	// Sessions 1 and 2 keep binding; the others go idle.
	live := func(now time.Time, ctr uint64) {
		for _, tok := range [][16]byte{id(0x40), id(0x41)} {
			if r := tab.Bind(bindPkt(tok, ctr), epA, now); r != DropNone {
				t.Fatal(r)
			}
		}
	}
	// Start every idle clock: ceil(n/batch) sweeps look at every session.
	for range (n + batch - 1) / batch {
		if got := tab.Expire(t0); got != 0 {
			t.Fatalf("Expire at t0 removed %d", got)
		}
	}
	later := t0.Add(2 * time.Minute)
	total := 0
	for i := range 10 {
		live(later, uint64(i+1))
		got := tab.Expire(later)
		if got > batch {
			t.Fatalf("one Expire removed %d, more than the batch of %d", got, batch)
		}
		total += got
	}
	if total != n-2 || tab.Stats().Sessions != 2 {
		t.Fatalf("removed %d, %d left; want %d removed, 2 left", total, tab.Stats().Sessions, n-2)
	}
	for _, s := range tab.Sessions() {
		if s.ID != id(1) && s.ID != id(2) {
			t.Fatalf("session %x survived", s.ID)
		}
	}
	// Removing from the middle of the sweep order keeps it consistent.
	if !tab.Release(id(1)) || !tab.Release(id(2)) || tab.Expire(later) != 0 || tab.Stats().Sessions != 0 {
		t.Fatalf("after releasing the rest: %+v", tab.Stats())
	}
}

func TestRelease(t *testing.T) {
	tab := bound(t)
	if !tab.Release(idA) {
		t.Fatal("Release() = false for a live session")
	}
	if tab.Release(idA) {
		t.Fatal("second Release() = true")
	}
	if r := forward(tab, tokB, epB, 1, t0); r.reason != DropUnknownToken {
		t.Fatalf("after Release: %+v", r)
	}
	if r := tab.Bind(bindPkt(tokB, 9), epB, t0); r != DropUnknownToken {
		t.Fatalf("bind after Release: %v", r)
	}
	if st := tab.Stats(); st.Released != 1 || st.Sessions != 0 {
		t.Errorf("stats %+v", st)
	}
}

func TestDropReasonString(t *testing.T) {
	want := map[DropReason]string{
		DropNone: "none", DropUnknownToken: "unknown-token", DropExpired: "expired",
		DropPeerUnknown: "peer-unknown", DropBadSource: "bad-source", DropBadBind: "bad-bind",
		DropReplay: "replay", DropNotBound: "not-bound", 42: "drop(42)",
	}
	for r, s := range want {
		if r.String() != s {
			t.Errorf("%d.String() = %q, want %q", r, r.String(), s)
		}
	}
}

// TestConcurrent forwards and binds on many sessions from many goroutines
// while sessions are allocated, released and swept, then checks that every
// forwarded packet was counted exactly once. Run with -race.
func TestConcurrent(t *testing.T) {
	const (
		sessions = 8
		packets  = 2000
	)
	tab := NewTable(Config{IdleTimeout: time.Hour, SweepBatch: 3})
	exp := t0.Add(24 * time.Hour)
	for i := range byte(sessions) {
		if err := alloc(tab, id(i+1), id(0x40+i), id(0x80+i), exp); err != nil {
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
					if p%100 == 0 { // rebind now and then, as a node does
						if r := tab.Bind(bindPkt(tok, uint64(p+1)), from, t0); r != DropNone {
							t.Error(r)
							return
						}
					}
					if _, _, fine, _ := tab.Forward(tok, from, p%1500+1, t0.Add(time.Duration(p)*time.Millisecond)); fine {
						ok++
						n += uint64(p%1500 + 1)
					}
				}
				mu.Lock()
				forwarded += ok
				bytes += n
				mu.Unlock()
			}()
		}
	}
	// Forged binds on every session beside its traffic: they take the
	// MAC's lock, never the session's for long, and move nothing.
	wg.Add(1)
	go func() {
		defer wg.Done()
		for p := range packets {
			i := byte(p % sessions)
			forged, _ := relaybind.Seal(keyOf(id(0x99)), id(0x40+i), uint64(p+1000))
			if r := tab.Bind(forged, epB, t0); r != DropBadBind {
				t.Errorf("forged bind: %v", r)
				return
			}
		}
	}()
	// Churn beside the traffic: sessions that come and go, sweeps and
	// snapshots.
	wg.Add(1)
	go func() {
		defer wg.Done()
		for j := range 200 {
			sid, ta, tb := id(0xc0+byte(j%16)), id(0xd0+byte(j%16)), id(0xe0+byte(j%16))
			_ = alloc(tab, sid, ta, tb, exp)
			_ = tab.Bind(bindPkt(ta, 1), epA, t0)
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
	// refused because its peer had not bound yet.
	if got := forwarded + st.Dropped(DropPeerUnknown) - churnDrop; got != 2*sessions*packets {
		t.Errorf("forwarded+peer-unknown = %d, want %d", got, 2*sessions*packets)
	}
}
