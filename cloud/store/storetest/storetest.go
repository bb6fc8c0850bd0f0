// Package storetest is the conformance suite every store.Store
// implementation must pass, and the helpers to run it (a Redis server for
// tests). Run it from the implementation's tests:
//
//	storetest.Run(t, storetest.Harness{Fresh: ...})
package storetest

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/cyphonic/cyphonic-go/cloud/store"
)

// Opener opens one more handle on one backing database.
type Opener func() (store.Store, error)

// Harness adapts an implementation to the suite.
type Harness struct {
	// Fresh returns an Opener for a new, empty database private to t.
	// Calling the Opener again opens another handle on the same database:
	// a restart after Close, or (with SharedHandles) a second process.
	Fresh func(t *testing.T) Opener
	// SharedHandles is true if two handles may be open at once on one
	// database (Redis); the multi-process tests run only then.
	SharedHandles bool
}

// Run runs the conformance suite against h.
func Run(t *testing.T, h Harness) {
	tests := []struct {
		name   string
		fn     func(*testing.T, Harness)
		shared bool
	}{
		{"NodeRoundTrip", testNodeRoundTrip, false},
		{"NodeNotFound", testNodeNotFound, false},
		{"RejectsInvalidNode", testRejectsInvalidNode, false},
		{"Sessions", testSessions, false},
		{"SessionInUse", testSessionInUse, false},
		{"FreeSessionIDs", testFreeSessionIDs, false},
		{"CountSessions", testCountSessions, false},
		{"ListNodes", testListNodes, false},
		{"EachNode", testEachNode, false},
		{"ConcurrentSessionClaim", testConcurrentSessionClaim, false},
		{"UpdateLocator", testUpdateLocator, false},
		{"UpdateLocatorStaleSession", testUpdateLocatorStaleSession, false},
		{"LoginsRaceUpdateLocator", testLoginsRaceUpdateLocator, false},
		{"CanceledContext", testCanceledContext, false},
		{"LookupVIP", testLookupVIP, false},
		{"LookupVIPMoves", testLookupVIPMoves, false},
		{"LookupVIPSurvivesReopen", testLookupVIPSurvivesReopen, false},
		{"TwoInstancesLookupVIP", testTwoInstancesLookupVIP, true},
		{"TwoInstancesSessions", testTwoInstancesSessions, true},
		{"TwoInstancesLoginsRaceUpdateLocator", testTwoInstancesLoginsRaceUpdateLocator, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.shared && !h.SharedHandles {
				t.Skip("implementation does not share one database between handles")
			}
			tt.fn(t, h)
		})
	}
}

// open opens a handle and closes it when t ends.
func open(t *testing.T, o Opener) store.Store {
	t.Helper()
	s, err := o()
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func name(i int) string { return fmt.Sprintf("node%d.example.cyphonic", i) }

// VIPs is a test node's VIP pair, derived from its name: records need VIPs,
// and the store does not care where they come from (they are the
// certificate's). A hash of the name keeps the pairs of the names the suite
// uses apart.
func VIPs(fqdn string) [2]netip.Addr {
	h := sha256.Sum256([]byte(fqdn))
	b6 := [16]byte{0xfd, 0x63, 0x79, 0x70, 0x68, 0x6f}
	copy(b6[8:], h[:8])
	n := binary.BigEndian.Uint32(h[8:]) & (1<<22 - 1)
	b4 := [4]byte{100, 64 | byte(n>>16), byte(n >> 8), byte(n)}
	return [2]netip.Addr{netip.AddrFrom16(b6), netip.AddrFrom4(b4)}
}

func fullNode(t *testing.T, s store.Store, fqdn string, sid store.SessionID) store.Node {
	p := VIPs(fqdn)
	var k1, k2 [32]byte
	for i := range k1 {
		k1[i], k2[i] = byte(i), byte(255-i)
	}
	return store.Node{
		FQDN: fqdn, VIP6: p[0], VIP4: p[1], CertSerial: "9f3a0c",
		Session: store.Session{
			ID: sid, NodeToCloud: k1, CloudToNode: k2,
			Expires: time.Unix(1_900_000_000, 123_456_789),
		},
		Locator: store.Locator{
			Observed4: netip.MustParseAddrPort("203.0.113.7:41641"),
			Observed6: netip.MustParseAddrPort("[2001:db8::7]:41641"),
			Locals: []netip.AddrPort{
				netip.MustParseAddrPort("192.168.1.10:41641"),
				netip.MustParseAddrPort("[fe80::1%eth0]:41641"),
			},
			NAT4: 2, NAT6: 1, HasIPv4: true, HasIPv6: true,
		},
		HomeNMS: "nms-1",
		Updated: time.Unix(1_800_000_000, 42),
	}
}

// equalNode compares records field by field, times by instant.
func equalNode(a, b store.Node) bool {
	ta, tb := a.Updated, b.Updated
	ea, eb := a.Session.Expires, b.Session.Expires
	a.Updated, b.Updated, a.Session.Expires, b.Session.Expires = time.Time{}, time.Time{}, time.Time{}, time.Time{}
	la, lb := a.Locator.Locals, b.Locator.Locals
	a.Locator.Locals, b.Locator.Locals = nil, nil
	return ta.Equal(tb) && ea.Equal(eb) && slices.Equal(la, lb) && fmt.Sprint(a) == fmt.Sprint(b)
}

func testNodeRoundTrip(t *testing.T, h Harness) {
	ctx := context.Background()
	s := open(t, h.Fresh(t))
	n := fullNode(t, s, "alice.example.cyphonic", 7)
	if err := s.PutNode(ctx, n); err != nil {
		t.Fatal(err)
	}
	got, err := s.GetNode(ctx, n.FQDN)
	if err != nil {
		t.Fatal(err)
	}
	if !equalNode(got, n) {
		t.Fatalf("GetNode:\n got %+v\nwant %+v", got, n)
	}
	// Replace with a sparse record: nothing of the old one lingers.
	sparse := store.Node{FQDN: n.FQDN, VIP6: n.VIP6, VIP4: n.VIP4}
	if err := s.PutNode(ctx, sparse); err != nil {
		t.Fatal(err)
	}
	if got, err := s.GetNode(ctx, n.FQDN); err != nil || !equalNode(got, sparse) {
		t.Fatalf("after replace: %+v, %v", got, err)
	}
}

func testNodeNotFound(t *testing.T, h Harness) {
	ctx := context.Background()
	s := open(t, h.Fresh(t))
	if _, err := s.GetNode(ctx, "nobody.example"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("GetNode(unknown): err = %v, want ErrNotFound", err)
	}
	if _, err := s.LookupSession(ctx, 12345); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("LookupSession(unknown): err = %v, want ErrNotFound", err)
	}
	if _, err := s.LookupSession(ctx, 0); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("LookupSession(0): err = %v, want ErrNotFound", err)
	}
}

func testRejectsInvalidNode(t *testing.T, h Harness) {
	ctx := context.Background()
	s := open(t, h.Fresh(t))
	good := fullNode(t, s, "alice.example", 0)
	tests := []struct {
		name string
		mod  func(*store.Node)
	}{
		{"empty fqdn", func(n *store.Node) { n.FQDN = "" }},
		{"invalid fqdn", func(n *store.Node) { n.FQDN = "Alice.example." }},
		{"swapped VIPs", func(n *store.Node) { n.VIP4, n.VIP6 = n.VIP6, n.VIP4 }},
		{"too many locals", func(n *store.Node) { n.Locator.Locals = make([]netip.AddrPort, 1000) }},
	}
	for _, tt := range tests {
		n := good
		tt.mod(&n)
		if err := s.PutNode(ctx, n); !errors.Is(err, store.ErrInvalidNode) {
			t.Errorf("%s: PutNode err = %v, want ErrInvalidNode", tt.name, err)
		}
	}
	if nodes, err := s.ListNodes(ctx); err != nil || len(nodes) != 0 {
		t.Fatalf("rejected nodes were stored: %v, %v", nodes, err)
	}
}

func testSessions(t *testing.T, h Harness) {
	ctx := context.Background()
	s := open(t, h.Fresh(t))
	n := fullNode(t, s, "alice.example", 7)
	if err := s.PutNode(ctx, n); err != nil {
		t.Fatal(err)
	}
	if got, err := s.LookupSession(ctx, 7); err != nil || !equalNode(got, n) {
		t.Fatalf("LookupSession(7) = %+v, %v", got, err)
	}

	// A new login replaces the session: the old ID stops resolving.
	n.Session.ID = 8
	n.Session.NodeToCloud[0] ^= 0xff
	if err := s.PutNode(ctx, n); err != nil {
		t.Fatal(err)
	}
	if _, err := s.LookupSession(ctx, 7); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("old session 7 after relogin: err = %v, want ErrNotFound", err)
	}
	if got, err := s.LookupSession(ctx, 8); err != nil || got.Session.NodeToCloud != n.Session.NodeToCloud {
		t.Fatalf("LookupSession(8) = %+v, %v", got, err)
	}

	// A write that keeps the session (a locator update) keeps it indexed.
	n.Locator.Observed4 = netip.MustParseAddrPort("198.51.100.9:5000")
	if err := s.PutNode(ctx, n); err != nil {
		t.Fatal(err)
	}
	if got, err := s.LookupSession(ctx, 8); err != nil || got.Locator.Observed4 != n.Locator.Observed4 {
		t.Fatalf("LookupSession(8) after locator update = %+v, %v", got, err)
	}

	// DeleteSession ends it; the node record stays, without a session.
	if err := s.DeleteSession(ctx, 8); err != nil {
		t.Fatal(err)
	}
	if _, err := s.LookupSession(ctx, 8); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("deleted session 8: err = %v, want ErrNotFound", err)
	}
	got, err := s.GetNode(ctx, n.FQDN)
	if err != nil {
		t.Fatal(err)
	}
	if got.Session != (store.Session{}) {
		t.Fatalf("node keeps session %+v after DeleteSession", got.Session)
	}
	want := n
	want.Session = store.Session{}
	if !equalNode(got, want) {
		t.Fatalf("DeleteSession changed more than the session:\n got %+v\nwant %+v", got, want)
	}
	for _, id := range []store.SessionID{8, 9999, 0} {
		if err := s.DeleteSession(ctx, id); err != nil {
			t.Fatalf("DeleteSession(%d) of no session: %v", id, err)
		}
	}

	// Writing a record without a session drops the index of the old one.
	n.Session.ID = 10
	if err := s.PutNode(ctx, n); err != nil {
		t.Fatal(err)
	}
	n.Session = store.Session{}
	if err := s.PutNode(ctx, n); err != nil {
		t.Fatal(err)
	}
	if _, err := s.LookupSession(ctx, 10); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("session 10 after a sessionless write: err = %v, want ErrNotFound", err)
	}
}

func testSessionInUse(t *testing.T, h Harness) {
	ctx := context.Background()
	s := open(t, h.Fresh(t))
	alice, bob := fullNode(t, s, "alice.example", 7), fullNode(t, s, "bob.example", 7)
	if err := s.PutNode(ctx, alice); err != nil {
		t.Fatal(err)
	}
	if err := s.PutNode(ctx, bob); !errors.Is(err, store.ErrSessionInUse) {
		t.Fatalf("second node with session 7: err = %v, want ErrSessionInUse", err)
	}
	if _, err := s.GetNode(ctx, bob.FQDN); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("refused PutNode stored bob: err = %v", err)
	}
	if got, err := s.LookupSession(ctx, 7); err != nil || got.FQDN != alice.FQDN {
		t.Fatalf("session 7 after refused claim: %q, %v", got.FQDN, err)
	}
	// Once alice's session ends, bob may take the ID.
	if err := s.DeleteSession(ctx, 7); err != nil {
		t.Fatal(err)
	}
	if err := s.PutNode(ctx, bob); err != nil {
		t.Fatalf("session 7 after it was freed: %v", err)
	}
	if got, err := s.LookupSession(ctx, 7); err != nil || got.FQDN != bob.FQDN {
		t.Fatalf("session 7 now: %q, %v", got.FQDN, err)
	}
}

// testFreeSessionIDs: the IDs a live session holds are left out, in
// order, and so is 0; an ended session's ID is free again.
func testFreeSessionIDs(t *testing.T, h Harness) {
	ctx := context.Background()
	s := open(t, h.Fresh(t))
	for i, id := range []store.SessionID{7, 9} {
		if err := s.PutNode(ctx, fullNode(t, s, name(i), id)); err != nil {
			t.Fatal(err)
		}
	}
	got, err := s.FreeSessionIDs(ctx, []store.SessionID{5, 7, 0, 8, 9, 10})
	if want := []store.SessionID{5, 8, 10}; err != nil || !slices.Equal(got, want) {
		t.Fatalf("FreeSessionIDs = %v, %v, want %v", got, err, want)
	}
	if got, err := s.FreeSessionIDs(ctx, nil); err != nil || len(got) != 0 {
		t.Fatalf("FreeSessionIDs(nil) = %v, %v", got, err)
	}
	if err := s.DeleteSession(ctx, 7); err != nil {
		t.Fatal(err)
	}
	if got, err := s.FreeSessionIDs(ctx, []store.SessionID{7, 9}); err != nil || !slices.Equal(got, []store.SessionID{7}) {
		t.Fatalf("after session 7 ended: FreeSessionIDs(7, 9) = %v, %v, want [7]", got, err)
	}
	// Every ID a PutNode would accept is reported free, and only those.
	ids := make([]store.SessionID, 300)
	for i := range ids {
		ids[i] = store.SessionID(1000 + i)
	}
	for i := 0; i < len(ids); i += 3 {
		if err := s.PutNode(ctx, fullNode(t, s, name(100+i), ids[i])); err != nil {
			t.Fatal(err)
		}
	}
	free, err := s.FreeSessionIDs(ctx, ids)
	if err != nil || len(free) != 200 {
		t.Fatalf("%d of 300 IDs free (%v), want 200", len(free), err)
	}
	for _, id := range free {
		if err := s.PutNode(ctx, fullNode(t, s, fmt.Sprintf("free%d.example", id), id)); err != nil {
			t.Fatalf("PutNode with ID %d reported free: %v", id, err)
		}
	}
}

// testCountSessions: the count follows logins, a login replacing a
// session, logouts and records without a session, and survives a reopen
// (it is what a restart reloads).
func testCountSessions(t *testing.T, h Harness) {
	ctx := context.Background()
	o := h.Fresh(t)
	s := open(t, o)
	want := func(s store.Store, n int, when string) {
		t.Helper()
		if got, err := s.CountSessions(ctx); err != nil || got != n {
			t.Fatalf("%s: CountSessions = %d, %v, want %d", when, got, err, n)
		}
	}
	want(s, 0, "empty")
	const n = 300 // with their node and VIP keys, more than one SCAN round trip
	for i := range n {
		if err := s.PutNode(ctx, fullNode(t, s, name(i), store.SessionID(i+1))); err != nil {
			t.Fatal(err)
		}
	}
	want(s, n, "after the logins")
	// A new login of node 0 replaces its session: still one.
	if err := s.PutNode(ctx, fullNode(t, s, name(0), n+100)); err != nil {
		t.Fatal(err)
	}
	want(s, n, "after a node's second login")
	for i := 1; i <= 100; i++ {
		if err := s.DeleteSession(ctx, store.SessionID(i+1)); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.DeleteSession(ctx, 1<<30); err != nil { // unknown: no change
		t.Fatal(err)
	}
	want(s, n-100, "after 100 logouts")
	// A record without a session is not a session.
	noSess := fullNode(t, s, "nosession.example", 0)
	noSess.Session = store.Session{}
	if err := s.PutNode(ctx, noSess); err != nil {
		t.Fatal(err)
	}
	want(s, n-100, "after a record without a session")
	if !h.SharedHandles {
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
	want(open(t, o), n-100, "reopened")
}

func testListNodes(t *testing.T, h Harness) {
	ctx := context.Background()
	s := open(t, h.Fresh(t))
	if nodes, err := s.ListNodes(ctx); err != nil || len(nodes) != 0 {
		t.Fatalf("empty store lists %v, %v", nodes, err)
	}
	var want []string
	for _, i := range []int{3, 1, 2, 10} {
		n := fullNode(t, s, name(i), store.SessionID(100+i))
		if err := s.PutNode(ctx, n); err != nil {
			t.Fatal(err)
		}
		want = append(want, n.FQDN)
	}
	slices.Sort(want)
	nodes, err := s.ListNodes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, n := range nodes {
		got = append(got, n.FQDN)
		if n.Session.ID == 0 || !n.VIP6.IsValid() {
			t.Fatalf("listed node %s lacks its data: %+v", n.FQDN, n)
		}
	}
	if !slices.Equal(got, want) {
		t.Fatalf("ListNodes = %v, want %v", got, want)
	}
}

func testEachNode(t *testing.T, h Harness) {
	ctx := context.Background()
	s := open(t, h.Fresh(t))
	count := 0
	if err := s.EachNode(ctx, func(store.Node) error { count++; return nil }); err != nil || count != 0 {
		t.Fatalf("empty store: %d nodes, %v", count, err)
	}
	want := map[string]store.SessionID{}
	for i := range 1200 { // more than one Redis round trip
		sid := store.SessionID(0)
		if i%3 == 0 {
			sid = store.SessionID(1000 + i)
		}
		p := VIPs(name(i))
		if err := s.PutNode(ctx, store.Node{FQDN: name(i), VIP6: p[0], VIP4: p[1], Session: store.Session{ID: sid, Expires: time.Now().Add(time.Hour)}}); err != nil {
			t.Fatal(err)
		}
		want[name(i)] = sid
	}
	got := map[string]store.SessionID{}
	if err := s.EachNode(ctx, func(n store.Node) error {
		if _, dup := got[n.FQDN]; dup {
			return fmt.Errorf("%s seen twice", n.FQDN)
		}
		got[n.FQDN] = n.Session.ID
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if !maps.Equal(got, want) {
		t.Fatalf("EachNode saw %d nodes, want %d (or sessions differ)", len(got), len(want))
	}
	stop := errors.New("stop")
	calls := 0
	if err := s.EachNode(ctx, func(store.Node) error { calls++; return stop }); err != stop || calls != 1 {
		t.Fatalf("fn's error: EachNode returned %v after %d calls, want it after 1", err, calls)
	}
}

// claimConcurrently has one node per worker claim the same session ID at
// once, through the handles in turn: exactly one must win.
func claimConcurrently(t *testing.T, handles []store.Store) {
	const workers = 12
	nodes := make([]store.Node, workers)
	for i := range nodes {
		nodes[i] = fullNode(t, handles[0], name(i), 4242)
	}
	var wg sync.WaitGroup
	errs := make([]error, workers)
	for i := range workers {
		s := handles[i%len(handles)]
		wg.Go(func() { errs[i] = s.PutNode(context.Background(), nodes[i]) })
	}
	wg.Wait()
	winner := ""
	for i, err := range errs {
		switch {
		case err == nil && winner != "":
			t.Fatalf("session 4242 claimed by both %s and %s", winner, nodes[i].FQDN)
		case err == nil:
			winner = nodes[i].FQDN
		case !errors.Is(err, store.ErrSessionInUse):
			t.Fatalf("PutNode %s: %v", nodes[i].FQDN, err)
		}
	}
	if winner == "" {
		t.Fatal("no node got session 4242")
	}
	for _, s := range handles {
		if got, err := s.LookupSession(context.Background(), 4242); err != nil || got.FQDN != winner {
			t.Fatalf("session 4242 resolves to %q, %v; winner %s", got.FQDN, err, winner)
		}
	}
}

func testConcurrentSessionClaim(t *testing.T, h Harness) {
	claimConcurrently(t, []store.Store{open(t, h.Fresh(t))})
}

func testTwoInstancesSessions(t *testing.T, h Harness) {
	o := h.Fresh(t)
	a, b := open(t, o), open(t, o)
	claimConcurrently(t, []store.Store{a, b})

	// What one process writes, the other reads, deletes and sees deleted.
	ctx := context.Background()
	n := fullNode(t, a, "roamer.example", 77)
	if err := a.PutNode(ctx, n); err != nil {
		t.Fatal(err)
	}
	if got, err := b.LookupSession(ctx, 77); err != nil || !equalNode(got, n) {
		t.Fatalf("other instance LookupSession(77) = %+v, %v", got, err)
	}
	if err := b.DeleteSession(ctx, 77); err != nil {
		t.Fatal(err)
	}
	if _, err := a.LookupSession(ctx, 77); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("session deleted by the other instance: err = %v, want ErrNotFound", err)
	}
}

// otherLocator is a locator unlike fullNode's in every field.
func otherLocator(i int) store.LocatorUpdate {
	return store.LocatorUpdate{
		Locator: store.Locator{
			Observed4: netip.AddrPortFrom(netip.MustParseAddr("198.51.100.9"), uint16(1000+i)),
			Locals:    []netip.AddrPort{netip.MustParseAddrPort("10.9.9.9:5000")},
			NAT4:      3, HasIPv4: true,
		},
		HomeNMS: fmt.Sprintf("nms-%d", 2+i),
		Updated: time.Unix(1_850_000_000, int64(i)),
	}
}

func testUpdateLocator(t *testing.T, h Harness) {
	ctx := context.Background()
	s := open(t, h.Fresh(t))
	n := fullNode(t, s, "alice.example.cyphonic", 7)
	if err := s.PutNode(ctx, n); err != nil {
		t.Fatal(err)
	}
	u := otherLocator(0)
	if err := s.UpdateLocator(ctx, n.FQDN, 7, u); err != nil {
		t.Fatalf("UpdateLocator: %v", err)
	}
	want := n
	want.Locator, want.HomeNMS, want.Updated = u.Locator, u.HomeNMS, u.Updated
	if got, err := s.GetNode(ctx, n.FQDN); err != nil || !equalNode(got, want) {
		t.Fatalf("after UpdateLocator:\n got %+v, %v\nwant %+v", got, err, want)
	}
	// The session and its index are untouched.
	if got, err := s.LookupSession(ctx, 7); err != nil || !equalNode(got, want) {
		t.Fatalf("LookupSession(7) = %+v, %v", got, err)
	}
	if err := s.UpdateLocator(ctx, "nobody.example", 7, u); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("UpdateLocator of unknown node: err = %v, want ErrNotFound", err)
	}
	bad := u
	bad.Locator.Locals = make([]netip.AddrPort, 1000)
	if err := s.UpdateLocator(ctx, n.FQDN, 7, bad); !errors.Is(err, store.ErrInvalidNode) {
		t.Fatalf("UpdateLocator with 1000 locals: err = %v, want ErrInvalidNode", err)
	}
}

func testUpdateLocatorStaleSession(t *testing.T, h Harness) {
	ctx := context.Background()
	s := open(t, h.Fresh(t))
	n := fullNode(t, s, "alice.example.cyphonic", 7)
	if err := s.PutNode(ctx, n); err != nil {
		t.Fatal(err)
	}
	// The node logs in again: session 8 replaces 7.
	relogin := n
	relogin.Session.ID = 8
	relogin.Session.NodeToCloud[0] ^= 0xff
	if err := s.PutNode(ctx, relogin); err != nil {
		t.Fatal(err)
	}
	if err := s.UpdateLocator(ctx, n.FQDN, 7, otherLocator(0)); !errors.Is(err, store.ErrSessionChanged) {
		t.Fatalf("UpdateLocator with old session: err = %v, want ErrSessionChanged", err)
	}
	if got, err := s.GetNode(ctx, n.FQDN); err != nil || !equalNode(got, relogin) {
		t.Fatalf("refused update changed the record:\n got %+v, %v\nwant %+v", got, err, relogin)
	}
	// After a logout, no session's update applies.
	if err := s.DeleteSession(ctx, 8); err != nil {
		t.Fatal(err)
	}
	if err := s.UpdateLocator(ctx, n.FQDN, 8, otherLocator(0)); !errors.Is(err, store.ErrSessionChanged) {
		t.Fatalf("UpdateLocator after logout: err = %v, want ErrSessionChanged", err)
	}
}

// loginsRaceUpdates has one node log in again and again (PutNode with a
// new session, as AS does) while updaters read its record and update its
// locator with the session they read, as NMS does, through the handles in
// turn. No login's session may be lost: after each login, the record holds
// exactly what the login wrote, but for the locator.
func loginsRaceUpdates(t *testing.T, handles []store.Store) {
	const (
		logins   = 40
		updaters = 4
	)
	ctx := context.Background()
	n := fullNode(t, handles[0], "churn.example.cyphonic", 1)
	if err := handles[0].PutNode(ctx, n); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	updErrs := make([]error, updaters)
	for w := range updaters {
		s := handles[w%len(handles)]
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-done:
					return
				default:
				}
				cur, err := s.GetNode(ctx, n.FQDN)
				if err != nil {
					updErrs[w] = err
					return
				}
				err = s.UpdateLocator(ctx, n.FQDN, cur.Session.ID, otherLocator(w*1000+i%1000))
				if err != nil && !errors.Is(err, store.ErrSessionChanged) {
					updErrs[w] = err
					return
				}
			}
		})
	}
	var loginErr error
	for i := 2; i < 2+logins && loginErr == nil; i++ {
		s := handles[i%len(handles)]
		login := n
		login.Session.ID = store.SessionID(i)
		login.Session.CloudToNode[0] = byte(i)
		if err := s.PutNode(ctx, login); err != nil {
			loginErr = err
			break
		}
		got, err := s.GetNode(ctx, n.FQDN)
		switch {
		case err != nil:
			loginErr = err
		case got.Session.ID != login.Session.ID || got.Session.CloudToNode != login.Session.CloudToNode:
			loginErr = fmt.Errorf("login %d lost: record holds session %d", i, got.Session.ID)
		case got.CertSerial != login.CertSerial || got.VIP6 != login.VIP6 || got.VIP4 != login.VIP4:
			loginErr = fmt.Errorf("login %d: record changed beyond its locator: %+v", i, got)
		}
	}
	close(done)
	wg.Wait()
	if loginErr != nil {
		t.Fatal(loginErr)
	}
	for w, err := range updErrs {
		if err != nil {
			t.Fatalf("updater %d: %v", w, err)
		}
	}
	last := store.SessionID(1 + logins)
	for _, s := range handles {
		if got, err := s.LookupSession(ctx, last); err != nil || got.Session.ID != last {
			t.Fatalf("LookupSession(%d) = %+v, %v", last, got, err)
		}
	}
	if err := handles[0].UpdateLocator(ctx, n.FQDN, last, otherLocator(0)); err != nil {
		t.Fatalf("UpdateLocator with the current session: %v", err)
	}
}

func testLoginsRaceUpdateLocator(t *testing.T, h Harness) {
	loginsRaceUpdates(t, []store.Store{open(t, h.Fresh(t))})
}

func testTwoInstancesLoginsRaceUpdateLocator(t *testing.T, h Harness) {
	o := h.Fresh(t)
	loginsRaceUpdates(t, []store.Store{open(t, o), open(t, o)})
}

func testCanceledContext(t *testing.T, h Harness) {
	s := open(t, h.Fresh(t))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := s.PutNode(ctx, store.Node{FQDN: "alice.example"}); !errors.Is(err, context.Canceled) {
		t.Fatalf("PutNode with canceled context: err = %v", err)
	}
	if _, err := s.GetNode(ctx, "alice.example"); !errors.Is(err, context.Canceled) {
		t.Fatalf("GetNode with canceled context: err = %v", err)
	}
	if err := s.UpdateLocator(ctx, "alice.example", 1, store.LocatorUpdate{}); !errors.Is(err, context.Canceled) {
		t.Fatalf("UpdateLocator with canceled context: err = %v", err)
	}
}

func wantVIPOwner(t *testing.T, s store.Store, vip netip.Addr, fqdn string) {
	t.Helper()
	n, err := s.LookupVIP(context.Background(), vip)
	if fqdn == "" {
		if !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("LookupVIP(%v) = %q, %v; want ErrNotFound", vip, n.FQDN, err)
		}
		return
	}
	if err != nil || n.FQDN != fqdn || !n.HasVIP(vip) {
		t.Fatalf("LookupVIP(%v) = %+v, %v; want %s's record", vip, n, err, fqdn)
	}
}

func testLookupVIP(t *testing.T, h Harness) {
	ctx := context.Background()
	s := open(t, h.Fresh(t))
	a, b := fullNode(t, s, name(1), 7), fullNode(t, s, name(2), 8)
	for _, n := range []store.Node{a, b} {
		if err := s.PutNode(ctx, n); err != nil {
			t.Fatal(err)
		}
	}
	got, err := s.LookupVIP(ctx, a.VIP6)
	if err != nil || !equalNode(got, a) {
		t.Fatalf("LookupVIP(%v):\n got %+v, %v\nwant %+v", a.VIP6, got, err, a)
	}
	wantVIPOwner(t, s, a.VIP4, a.FQDN)
	wantVIPOwner(t, s, netip.AddrFrom16(a.VIP4.As16()), a.FQDN) // IPv4-mapped
	wantVIPOwner(t, s, b.VIP6, b.FQDN)
	wantVIPOwner(t, s, b.VIP4, b.FQDN)
	// Never recorded, outside the overlay, or no address at all.
	c := VIPs(name(3))
	for _, v := range []netip.Addr{c[0], c[1], netip.MustParseAddr("192.0.2.1"), {}} {
		wantVIPOwner(t, s, v, "")
	}
	// A session's end keeps the record, so the VIP still names its node
	// (NMS then answers that the node is offline).
	if err := s.DeleteSession(ctx, a.Session.ID); err != nil {
		t.Fatal(err)
	}
	wantVIPOwner(t, s, a.VIP6, a.FQDN)
	// Locator updates leave the index alone.
	if err := s.UpdateLocator(ctx, b.FQDN, b.Session.ID, otherLocator(1)); err != nil {
		t.Fatal(err)
	}
	wantVIPOwner(t, s, b.VIP4, b.FQDN)
}

func testLookupVIPMoves(t *testing.T, h Harness) {
	ctx := context.Background()
	s := open(t, h.Fresh(t))
	a, b := fullNode(t, s, name(1), 7), fullNode(t, s, name(2), 8)
	for _, n := range []store.Node{a, b} {
		if err := s.PutNode(ctx, n); err != nil {
			t.Fatal(err)
		}
	}
	// a's record now names other VIPs (a certificate reissued by another
	// CA): the old ones lead nowhere, the new ones to a.
	p := VIPs(name(4))
	moved := a
	moved.VIP6, moved.VIP4 = p[0], p[1]
	if err := s.PutNode(ctx, moved); err != nil {
		t.Fatal(err)
	}
	wantVIPOwner(t, s, a.VIP6, "")
	wantVIPOwner(t, s, a.VIP4, "")
	wantVIPOwner(t, s, p[0], a.FQDN)
	wantVIPOwner(t, s, p[1], a.FQDN)
	// b's record claims a's VIP6 too: the record written last owns it,
	// and a's dropping it later does not take it from b.
	clash := b
	clash.VIP6 = p[0]
	if err := s.PutNode(ctx, clash); err != nil {
		t.Fatal(err)
	}
	wantVIPOwner(t, s, p[0], b.FQDN)
	wantVIPOwner(t, s, b.VIP6, "")
	wantVIPOwner(t, s, p[1], a.FQDN)
	bare := store.Node{FQDN: a.FQDN}
	if err := s.PutNode(ctx, bare); err != nil {
		t.Fatal(err)
	}
	wantVIPOwner(t, s, p[0], b.FQDN)
	wantVIPOwner(t, s, p[1], "")
	// b goes back to its own VIP6: the one it took leads nowhere.
	if err := s.PutNode(ctx, b); err != nil {
		t.Fatal(err)
	}
	wantVIPOwner(t, s, p[0], "")
	wantVIPOwner(t, s, b.VIP6, b.FQDN)
}

func testLookupVIPSurvivesReopen(t *testing.T, h Harness) {
	ctx := context.Background()
	o := h.Fresh(t)
	s, err := o()
	if err != nil {
		t.Fatal(err)
	}
	a := fullNode(t, s, name(1), 7)
	if err := s.PutNode(ctx, a); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = open(t, o)
	wantVIPOwner(t, s, a.VIP6, a.FQDN)
	wantVIPOwner(t, s, a.VIP4, a.FQDN)
}

func testTwoInstancesLookupVIP(t *testing.T, h Harness) {
	ctx := context.Background()
	o := h.Fresh(t)
	s1, s2 := open(t, o), open(t, o)
	a := fullNode(t, s1, name(1), 7)
	if err := s1.PutNode(ctx, a); err != nil {
		t.Fatal(err)
	}
	wantVIPOwner(t, s2, a.VIP6, a.FQDN)
	wantVIPOwner(t, s2, a.VIP4, a.FQDN)
}
