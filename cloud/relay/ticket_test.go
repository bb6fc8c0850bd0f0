package relay

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/cyphonic/cyphonic-go/messages"
	"github.com/cyphonic/cyphonic-go/transport/relaybind"
)

func testTickets(t testing.TB) *Tickets {
	t.Helper()
	tk, err := NewTickets(bytes.Repeat([]byte{7}, TicketKeyLen))
	if err != nil {
		t.Fatal(err)
	}
	return tk
}

func mint(t testing.TB, tk *Tickets, a, b string, exp time.Time) (TicketSide, TicketSide) {
	t.Helper()
	sa, sb, err := tk.Mint(a, b, exp)
	if err != nil {
		t.Fatal(err)
	}
	return sa, sb
}

func sealBind(t testing.TB, s TicketSide, counter uint64) []byte {
	t.Helper()
	b, err := relaybind.Seal(s.Key, s.Token, counter)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestTicketMintOpen(t *testing.T) {
	tk := testTickets(t)
	exp := t0.Add(time.Hour)
	a, b := mint(t, tk, "a.example.cyphonic", "b.example.cyphonic", exp)
	if a.Token == b.Token || a.Key == b.Key || a.Key.IsZero() || b.Key.IsZero() {
		t.Fatalf("sides not distinct: %x %x", a.Token, b.Token)
	}
	ka, r := tk.open(a.Token[:], t0)
	kb, r2 := tk.open(b.Token[:], t0)
	if r != DropNone || r2 != DropNone {
		t.Fatalf("open: %v %v", r, r2)
	}
	switch {
	case ka.session != kb.session:
		t.Fatal("the sides name different sessions")
	case ka.side != 0 || kb.side != 1:
		t.Fatalf("sides %d %d", ka.side, kb.side)
	case ka.key != a.Key || kb.key != b.Key:
		t.Fatal("derived keys differ from the minted ones")
	case ka.owner != tk.Owner("a.example.cyphonic") || kb.owner != tk.Owner("b.example.cyphonic"):
		t.Fatal("owners")
	case !ka.expires.Equal(exp.Truncate(time.Second)):
		t.Fatalf("expires %v, want %v", ka.expires, exp)
	}
	// Another key derives other bind keys: tickets of one TRS are
	// nothing at another (or at the same after a restart).
	other, err := NewRandomTickets()
	if err != nil {
		t.Fatal(err)
	}
	if ko, _ := other.open(a.Token[:], t0); ko.key == a.Key {
		t.Fatal("another ticket key derived the same bind key")
	}
	// Two mints never share a session.
	a2, _ := mint(t, tk, "a.example.cyphonic", "b.example.cyphonic", exp)
	if k2, _ := tk.open(a2.Token[:], t0); k2.session == ka.session {
		t.Fatal("two mints, one session")
	}
	for _, c := range []struct {
		name string
		tok  messages.RelayToken
		now  time.Time
		want DropReason
	}{
		{"expired", a.Token, exp.Add(time.Second), DropExpired},
		{"other version", func() messages.RelayToken { x := a.Token; x[15] = 0x7e; return x }(), t0, DropUnknownToken},
		{"too long a life", a.Token, exp.Add(-maxTicketLife - time.Hour), DropUnknownToken},
	} {
		if _, r := tk.open(c.tok[:], c.now); r != c.want {
			t.Errorf("%s: %v, want %v", c.name, r, c.want)
		}
	}
}

func statelessTable(t testing.TB, cfg Config) (*Table, *Tickets) {
	t.Helper()
	tk := testTickets(t)
	cfg.Tickets = tk
	if cfg.IdleTimeout == 0 {
		cfg.IdleTimeout = time.Minute
	}
	return NewTable(cfg), tk
}

// TestStatelessSession: minting costs the table nothing; a session exists
// from its first side's genuine bind, the second side joins it, frames go
// both ways with the tokens rewritten, and it is swept when both stop.
func TestStatelessSession(t *testing.T) {
	tab, tk := statelessTable(t, Config{})
	for range 1000 {
		mint(t, tk, "x.example.cyphonic", "y.example.cyphonic", t0.Add(time.Hour))
	}
	a, b := mint(t, tk, "a.example.cyphonic", "b.example.cyphonic", t0.Add(time.Hour))
	if st := tab.Stats(); st.Sessions != 0 {
		t.Fatalf("%d sessions before any bind", st.Sessions)
	}
	if r := forward(tab, a.Token, epA, 10, t0); r.reason != DropUnknownToken {
		t.Fatalf("frame before any bind: %v", r.reason)
	}
	if r := tab.Bind(sealBind(t, a, 1), epA, t0); r != DropNone {
		t.Fatalf("A's first bind: %v", r)
	}
	if st := tab.Stats(); st.Sessions != 1 || st.Created != 1 || st.Binds != 1 {
		t.Fatalf("after A's bind: %+v", st)
	}
	if r := forward(tab, a.Token, epA, 10, t0); r.reason != DropPeerUnknown {
		t.Fatalf("frame before B's bind: %v", r.reason)
	}
	if r := tab.Bind(sealBind(t, b, 1), epB6, t0); r != DropNone {
		t.Fatalf("B's first bind: %v", r)
	}
	if st := tab.Stats(); st.Sessions != 1 || st.Created != 1 {
		t.Fatalf("B's bind made another session: %+v", st)
	}
	if r := forward(tab, a.Token, epA, 10, t0); !r.ok || r.to != epB6 || r.peerToken != b.Token {
		t.Fatalf("A to B: %+v", r)
	}
	if r := forward(tab, b.Token, epB6, 10, t0); !r.ok || r.to != epA || r.peerToken != a.Token {
		t.Fatalf("B to A: %+v", r)
	}
	// Later binds go the allocated sessions' way: replay refused, a fresh
	// one moves the side.
	if r := tab.Bind(sealBind(t, a, 1), epB, t0); r != DropReplay {
		t.Fatalf("replayed first bind: %v", r)
	}
	if r := tab.Bind(sealBind(t, a, 2), epB, t0); r != DropNone {
		t.Fatalf("A's second bind: %v", r)
	}
	if r := forward(tab, b.Token, epB6, 10, t0); !r.ok || r.to != epB {
		t.Fatalf("B to A after A moved: %+v", r)
	}
	tab.Expire(t0)
	if n := tab.Expire(t0.Add(2 * time.Minute)); n != 1 {
		t.Fatalf("swept %d", n)
	}
	if st := tab.Stats(); st.Sessions != 0 || len(tab.owners) != 0 || len(tab.tokens) != 0 {
		t.Fatalf("after the sweep: %+v, owners %v", st, tab.owners)
	}
}

// TestStatelessForgedBinds: binds nobody minted or signed keep nothing.
func TestStatelessForgedBinds(t *testing.T) {
	tab, tk := statelessTable(t, Config{})
	a, b := mint(t, tk, "a.example.cyphonic", "b.example.cyphonic", t0.Add(time.Hour))
	wrongKey := a
	wrongKey.Key = b.Key // B's key on A's token: what B, a tunnel peer, holds
	otherOwner := a
	otherOwner.Token[0] ^= 1 // A's key, the token moved to another owner
	otherSide := a
	otherSide.Token[15] ^= 1
	expired := func() TicketSide {
		x, _ := mint(t, tk, "a.example.cyphonic", "b.example.cyphonic", t0.Add(-time.Second))
		return x
	}()
	var random TicketSide
	random.Token = id(0x33)
	random.Token[15] = ticketVersion << 1
	copy(random.Token[4:8], a.Token[4:8]) // a live expiry
	random.Key = keyOf(random.Token)
	for _, c := range []struct {
		name string
		pkt  []byte
		want DropReason
	}{
		{"a peer's key", sealBind(t, wrongKey, 1), DropBadBind},
		{"token moved to another owner", sealBind(t, otherOwner, 1), DropBadBind},
		{"token moved to the other side", sealBind(t, otherSide, 1), DropBadBind},
		{"expired ticket", sealBind(t, expired, 1), DropExpired},
		{"a token nobody minted", sealBind(t, random, 1), DropBadBind},
		{"counter zero", sealBind(t, a, 0), DropReplay},
		{"not a ticket of this format", bindPkt(id(0x44), 1), DropUnknownToken},
	} {
		if r := tab.Bind(c.pkt, epA, t0); r != c.want {
			t.Errorf("%s: %v, want %v", c.name, r, c.want)
		}
	}
	if st := tab.Stats(); st.Sessions != 0 || st.Binds != 0 || len(tab.tokens) != 0 || len(tab.owners) != 0 {
		t.Fatalf("forged binds kept state: %+v", st)
	}
	// And without a ticket key, no token the table was not given exists.
	plain := NewTable(Config{})
	if r := plain.Bind(sealBind(t, a, 1), epA, t0); r != DropUnknownToken {
		t.Fatalf("a table without tickets: %v", r)
	}
}

// TestStatelessBounds: one node cannot hold more than its share of the
// table, others still bind; a full table refuses new sessions but lets a
// session's second side join.
func TestStatelessBounds(t *testing.T) {
	tab, tk := statelessTable(t, Config{MaxSessions: 8, MaxPerOwner: 3})
	exp := t0.Add(time.Hour)
	var hostile []TicketSide
	for i := range 5 {
		a, _ := mint(t, tk, "mallory.example.cyphonic", fmt.Sprintf("v%d.example.cyphonic", i), exp)
		hostile = append(hostile, a)
	}
	for i, a := range hostile {
		want := DropNone
		if i >= 3 {
			want = DropOwnerFull
		}
		if r := tab.Bind(sealBind(t, a, 1), epA, t0); r != want {
			t.Fatalf("mallory's bind %d: %v, want %v", i, r, want)
		}
	}
	if st := tab.Stats(); st.Sessions != 3 || st.Dropped(DropOwnerFull) != 2 {
		t.Fatalf("after mallory: %+v", st)
	}
	// Another node still gets its relay.
	a, b := mint(t, tk, "alice.example.cyphonic", "bob.example.cyphonic", exp)
	if r := tab.Bind(sealBind(t, a, 1), epA, t0); r != DropNone {
		t.Fatalf("alice: %v", r)
	}
	if r := tab.Bind(sealBind(t, b, 1), epB, t0); r != DropNone {
		t.Fatalf("bob: %v", r)
	}
	if r := forward(tab, a.Token, epA, 10, t0); !r.ok || r.to != epB {
		t.Fatalf("alice to bob: %+v", r)
	}
	// Fill the table with distinct nodes' sessions, one side bound each.
	var halves []TicketSide
	for i := range 5 {
		x, y := mint(t, tk, fmt.Sprintf("n%d.example.cyphonic", i), fmt.Sprintf("m%d.example.cyphonic", i), exp)
		r := tab.Bind(sealBind(t, x, 1), epA, t0)
		switch {
		case i < 4 && r != DropNone:
			t.Fatalf("n%d: %v", i, r)
		case i == 4 && r != DropFull:
			t.Fatalf("n%d with the table full: %v, want %v", i, r, DropFull)
		}
		halves = append(halves, y)
	}
	if r := tab.Bind(sealBind(t, halves[0], 1), epB, t0); r != DropNone {
		t.Fatalf("the second side of a held session with the table full: %v", r)
	}
	// Sweeping mallory's sessions gives her share back.
	tab.Expire(t0)
	tab.Expire(t0.Add(2 * time.Minute))
	if r := tab.Bind(sealBind(t, hostile[3], 1), epA, t0.Add(2*time.Minute)); r != DropNone {
		t.Fatalf("mallory after the sweep: %v", r)
	}
}

// TestStatelessConcurrentFirstBind: the same side's first bind on two
// readers at once makes one session, and the slower one counts as a bind
// on it.
func TestStatelessConcurrentFirstBind(t *testing.T) {
	for range 50 {
		tab, tk := statelessTable(t, Config{})
		a, _ := mint(t, tk, "a.example.cyphonic", "b.example.cyphonic", t0.Add(time.Hour))
		var wg sync.WaitGroup
		res := make([]DropReason, 2)
		for i := range 2 {
			pkt := sealBind(t, a, uint64(1+i))
			wg.Go(func() { res[i] = tab.Bind(pkt, epA, t0) })
		}
		wg.Wait()
		st := tab.Stats()
		if st.Sessions != 1 || st.Created != 1 || tab.owners[tk.Owner("a.example.cyphonic")] != 1 {
			t.Fatalf("%+v owners %v (results %v)", st, tab.owners, res)
		}
		if res[0] != DropNone && res[1] != DropNone {
			t.Fatalf("both refused: %v", res)
		}
	}
}

// TestStatelessForgedBindAllocs: a forged first bind costs at most the
// MAC the table would keep had it verified (a keyed BLAKE2s state:
// x/crypto cannot re-key one in place); nothing when its token is not of
// the format.
func TestStatelessForgedBindAllocs(t *testing.T) {
	tab, tk := statelessTable(t, Config{})
	a, b := mint(t, tk, "a.example.cyphonic", "b.example.cyphonic", t0.Add(time.Hour))
	a.Key = b.Key
	forged := sealBind(t, a, 1)
	tab.Bind(forged, epA, t0) // the pool's first hash
	if n := testing.AllocsPerRun(200, func() { tab.Bind(forged, epA, t0) }); n > 3 {
		t.Fatalf("%v allocations per forged bind", n)
	}
	junk := bindPkt(id(0x44), 1)
	if n := testing.AllocsPerRun(200, func() { tab.Bind(junk, epA, t0) }); n != 0 {
		t.Fatalf("%v allocations per bind on a foreign token", n)
	}
}

// TestLoadTickets: the key file is made once (0600) and read back by the
// next process; a file of the wrong size is refused, not replaced.
func TestLoadTickets(t *testing.T) {
	path := filepath.Join(t.TempDir(), "trs-ticket.key")
	first, err := LoadTickets(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 || fi.Size() != TicketKeyLen {
		t.Fatalf("key file: %v, %v", fi, err)
	}
	again, err := LoadTickets(path)
	if err != nil || !again.Same(first) {
		t.Fatalf("reloaded key differs (%v)", err)
	}
	// What the first minted, the second opens: a genuine first bind.
	a, _ := mint(t, first, "a.example.cyphonic", "b.example.cyphonic", t0.Add(time.Hour))
	tab := NewTable(Config{Tickets: again})
	if r := tab.Bind(sealBind(t, a, 1), epA, t0); r != DropNone {
		t.Fatalf("ticket of the previous process: %v", r)
	}
	other, err := LoadTickets(filepath.Join(t.TempDir(), "k"))
	if err != nil || other.Same(first) {
		t.Fatalf("a new file has the same key (%v)", err)
	}
	bad := filepath.Join(t.TempDir(), "short.key")
	if err := os.WriteFile(bad, []byte("short"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadTickets(bad); !errors.Is(err, ErrTicketKey) {
		t.Fatalf("short key file: %v", err)
	}
	if b, _ := os.ReadFile(bad); string(b) != "short" {
		t.Fatal("a bad key file was overwritten")
	}
}
