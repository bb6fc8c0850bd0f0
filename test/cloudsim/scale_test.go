package cloudsim

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/cyphonic/cyphonic-go/cloud/server"
	"github.com/cyphonic/cyphonic-go/cloud/store"
	"github.com/cyphonic/cyphonic-go/cloud/store/storetest"
	"github.com/cyphonic/cyphonic-go/messages"
	"github.com/cyphonic/cyphonic-go/pki"
)

// onlineAll logs in and registers n nodes, a few at a time.
func onlineAll(t *testing.T, s *server.Server, prefix string, n int) []*Node {
	t.Helper()
	nodes := make([]*Node, n)
	for i := range nodes {
		nodes[i] = newNode(t, s, fmt.Sprintf("%s%d.example.cyphonic", prefix, i))
	}
	var wg sync.WaitGroup
	errs := make(chan error, n)
	sem := make(chan struct{}, 8)
	for _, nd := range nodes {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			if _, err := nd.Login(s.AS.Addrs()[0], false); err != nil {
				errs <- fmt.Errorf("login %s: %w", nd.FQDN, err)
				return
			}
			if _, err := nd.Register(false); err != nil {
				errs <- fmt.Errorf("register %s: %w", nd.FQDN, err)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	return nodes
}

// onStores runs f once on bbolt and once on Redis (a redis-server of the
// test's own, or storetest.EnvRedis's).
func onStores(t *testing.T, f func(t *testing.T, storeURL string)) {
	t.Run("bbolt", func(t *testing.T) { f(t, "") })
	t.Run("redis", func(t *testing.T) {
		prefix := "cloudsim-" + t.Name() + ":"
		u := storetest.WithPrefix(t, storetest.RedisURL(t), prefix)
		t.Cleanup(func() { storetest.DeletePrefix(t, u, prefix) })
		f(t, u)
	})
}

func gone(s *server.Server, id uint32) bool {
	_, err := s.Store().LookupSession(context.Background(), id)
	return errors.Is(err, store.ErrNotFound)
}

// TestKeepalivesDoNotFillReplyCache: keepalives are idempotent and are not
// cached, so nodes keepaliving far past the reply cache's size never have
// a first copy refused. The cache is made small (64 entries) instead of
// running the ~13k nodes that filled today's 2^18 entries kept for 5 min.
func TestKeepalivesDoNotFillReplyCache(t *testing.T) {
	s := startCloudWith(t, server.Config{NMSTuning: server.NMSTuning{DedupEntries: 64}})
	const N, rounds = 32, 6 // 32 registrations, then 192 keepalives
	nodes := onlineAll(t, s, "ka", N)
	for r := range rounds {
		var wg sync.WaitGroup
		errs := make(chan error, N)
		for _, n := range nodes {
			wg.Go(func() {
				if ack, err := n.Keepalive(); err != nil || ack.Observed != n.Addr() {
					errs <- fmt.Errorf("round %d: %s: %+v %w", r, n.FQDN, ack, err)
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
	}
	st, entries, capacity := s.NMS.Dedup()
	c := &s.NMS.Counters
	// A full cache refuses new entries (Failed) or pushes out live ones
	// (Evicted: a retransmission would then run its transaction twice).
	if c.CacheFull.Load() != 0 || st.Failed != 0 || st.Evicted != 0 {
		t.Fatalf("first copies refused or live replies evicted: cache full %d, store failed %d, evicted %d (entries %d of %d)",
			c.CacheFull.Load(), st.Failed, st.Evicted, entries, capacity)
	}
	if got := c.Keepalives.Load(); got != N*rounds {
		t.Fatalf("NMS ran %d keepalives, want %d", got, N*rounds)
	}
	if entries > N+8 {
		t.Fatalf("cache holds %d entries after %d registrations and only keepalives since", entries, N)
	}
}

// TestReplayedRequestsRefused: what the long-lived cache also did, refuse a
// captured request replayed later, holds without it. A keepalive replayed
// after a newer one, and a registration replayed after every
// retransmission of it would have stopped (sealed with a timestamp 30 s
// old, as a captured packet replayed 30 s later), are dropped unanswered
// and leave the node's record alone.
func TestReplayedRequestsRefused(t *testing.T) {
	s := startCloudWith(t, server.Config{})
	alice := newNode(t, s, "alice.example.cyphonic")
	online(t, s, alice, messages.NATNone)
	nmsAddr := alice.Reply.NMS[0]
	seal := func(body messages.Body, at time.Time) []byte {
		alice.mu.Lock()
		defer alice.mu.Unlock()
		pkt, err := alice.sess.SealMessage(nil, &alice.enc, messages.NewMsgID(), alice.FQDN, at, body)
		if err != nil {
			t.Fatal(err)
		}
		return pkt
	}
	oldKA := seal(messages.Keepalive{}, time.Now())
	oldReg := seal(messages.Register{Locals: []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:9")}, IPv4: true}, time.Now().Add(-30*time.Second))
	if _, err := alice.Keepalive(); err != nil { // newer than oldKA
		t.Fatal(err)
	}
	bg := context.Background()
	before, err := s.Store().GetNode(bg, alice.FQDN)
	if err != nil {
		t.Fatal(err)
	}
	mallory := newNode(t, s, "mallory.example.cyphonic") // only a socket elsewhere
	for _, pkt := range [][]byte{oldKA, oldReg} {
		if err := mallory.Send(nmsAddr, pkt); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, "both replays refused", func() bool { return s.NMS.Counters.Replayed.Load() == 2 })
	after, err := s.Store().GetNode(bg, alice.FQDN)
	if err != nil {
		t.Fatal(err)
	}
	if after.Locator.Observed4 != before.Locator.Observed4 || len(after.Locator.Locals) != len(before.Locator.Locals) || after.Locator.Locals[0] != before.Locator.Locals[0] {
		t.Fatalf("record changed by a replay:\n got %+v\nwant %+v", after.Locator, before.Locator)
	}
	if _, err := alice.Keepalive(); err != nil {
		t.Fatalf("alice after the replays: %v", err)
	}
}

// TestExpiryNeverDropsDeletion: every idle session expiring at once, with
// one store worker and a queue of two, still leaves the store: today each
// expiry was one job into the queue and a refused one was forgotten.
func TestExpiryNeverDropsDeletion(t *testing.T) { onStores(t, testExpiryNeverDropsDeletion) }

func testExpiryNeverDropsDeletion(t *testing.T, storeURL string) {
	s := startCloudWith(t, server.Config{StoreURL: storeURL, SessionIdle: 2 * time.Second, NMSTuning: server.NMSTuning{StoreWorkers: 1, StoreQueue: 2}})
	const N = 40
	nodes := onlineAll(t, s, "exp", N)
	eventually(t, "every session expires", func() bool { return s.NMS.Counters.Expired.Load() == N })
	for _, n := range nodes {
		eventually(t, fmt.Sprintf("session of %s leaves the store", n.FQDN), func() bool { return gone(s, n.Reply.SessionID) })
	}
	if p := s.NMS.PendingDeletes(); p != 0 {
		t.Fatalf("%d deletions still pending", p)
	}
}

// TestLogoutNeverDropsDeletion: logouts while the store workers are
// saturated are all acknowledged and all leave the store. Today a logout
// whose store job was refused had already ended the session: its
// retransmission got SessionExpired and the store kept the session.
func TestLogoutNeverDropsDeletion(t *testing.T) { onStores(t, testLogoutNeverDropsDeletion) }

func testLogoutNeverDropsDeletion(t *testing.T, storeURL string) {
	s := startCloudWith(t, server.Config{StoreURL: storeURL, NMSTuning: server.NMSTuning{StoreWorkers: 1, StoreQueue: 1}})
	const N = 40
	nodes := onlineAll(t, s, "out", N)
	var wg sync.WaitGroup
	errs := make(chan error, N)
	for _, n := range nodes {
		wg.Go(func() {
			// Each with a keepalive racing it for the single worker.
			go n.Request(n.Reply.NMS[0], messages.Keepalive{}, true)
			if env, err := n.Request(n.Reply.NMS[0], messages.Logout{}, true); err != nil || env.Type != messages.MsgLogoutAck {
				errs <- fmt.Errorf("logout %s: %v %w", n.FQDN, env.Type, err)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	for _, n := range nodes {
		eventually(t, fmt.Sprintf("session of %s leaves the store", n.FQDN), func() bool { return gone(s, n.Reply.SessionID) })
	}
	if s.NMS.Sessions() != 0 {
		t.Fatalf("%d sessions left in NMS", s.NMS.Sessions())
	}
}

// TestSweepRepairsStore: sessions a crash left in the store (homed at this
// NMS, which has not seen them since it started, and not written for
// longer than SessionIdle) and sessions past their absolute expiry are
// removed by the periodic sweep; a live session, one homed at another NMS
// that may hold it, and one whose record was just written (a login whose
// key handover has not reached NMS yet) stay.
func TestSweepRepairsStore(t *testing.T) { onStores(t, testSweepRepairsStore) }

func testSweepRepairsStore(t *testing.T, storeURL string) {
	s := startCloudWith(t, server.Config{StoreURL: storeURL, SessionIdle: time.Second, NMSTuning: server.NMSTuning{SweepInterval: 200 * time.Millisecond}})
	alice := newNode(t, s, "alice.example.cyphonic")
	online(t, s, alice, messages.NATNone)
	bg := context.Background()
	me, err := s.Store().GetNode(bg, alice.FQDN)
	if err != nil || me.HomeNMS == "" {
		t.Fatalf("alice's record %+v, %v", me, err)
	}
	ghost := func(fqdn string, id uint32, home string, expires, updated time.Time) {
		v6, v4, err := pki.VIPPair(pki.DefaultVIP6, pki.DefaultVIP4, uint64(id)) // far from what the CA gave
		if err != nil {
			t.Fatal(err)
		}
		n := store.Node{FQDN: fqdn, VIP6: v6, VIP4: v4, HomeNMS: home, Updated: updated,
			Session: store.Session{ID: id, Expires: expires}}
		if err := s.Store().PutNode(bg, n); err != nil {
			t.Fatal(err)
		}
	}
	old := time.Now().Add(-time.Hour)
	ghost("crashed.example.cyphonic", 0x1001, me.HomeNMS, time.Now().Add(time.Hour), old)
	ghost("expired.example.cyphonic", 0x1002, "elsewhere:1", time.Now().Add(-time.Minute), old)
	ghost("other.example.cyphonic", 0x1003, "elsewhere:1", time.Now().Add(time.Hour), old)
	// Written "now" (in the test's future: the sweep must not take it
	// while the test runs).
	ghost("inflight.example.cyphonic", 0x1004, me.HomeNMS, time.Now().Add(time.Hour), time.Now().Add(time.Minute))
	stop := make(chan struct{})
	defer close(stop)
	go func() { // alice stays alive meanwhile
		for {
			select {
			case <-stop:
				return
			case <-time.After(200 * time.Millisecond):
				alice.Keepalive()
			}
		}
	}()
	eventually(t, "the crashed and the expired sessions are swept", func() bool { return gone(s, 0x1001) && gone(s, 0x1002) })
	if gone(s, 0x1003) {
		t.Fatal("a session homed at another NMS was swept")
	}
	if gone(s, 0x1004) {
		t.Fatal("a just-written session (login in progress) was swept")
	}
	if gone(s, alice.Reply.SessionID) {
		t.Fatal("alice's live session was swept")
	}
	if got := s.NMS.Counters.Swept.Load(); got != 2 {
		t.Fatalf("swept %d, want 2", got)
	}
}

// TestTunnelsPrunedOnSessionEnd: NMS's tunnels map forgets a node when its
// session ends, on both sides of each tunnel.
func TestTunnelsPrunedOnSessionEnd(t *testing.T) {
	s := startCloudWith(t, server.Config{SessionIdle: 2 * time.Second})
	nodes := onlineAll(t, s, "tun", 3)
	a, b, c := nodes[0], nodes[1], nodes[2]
	for _, p := range []*Node{b, c} {
		if _, err := a.Tunnel(p.FQDN, false); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, "three nodes in the tunnels map", func() bool { return s.NMS.TunnelNodes() == 3 })
	if _, err := b.Request(b.Reply.NMS[0], messages.Logout{}, false); err != nil {
		t.Fatal(err)
	}
	eventually(t, "b leaves the map", func() bool { return s.NMS.TunnelNodes() == 2 })
	// a and c fall silent: their sessions expire.
	eventually(t, "the map is empty once every session ended", func() bool { return s.NMS.Sessions() == 0 && s.NMS.TunnelNodes() == 0 })
}

// TestOneNodeCannotFillReplyCache: a logged-in node sending request after
// request (each with a fresh message ID, all sealed properly) gets only
// its share of the reply cache; the rest of its requests are dropped and
// counted, and the other nodes' transactions keep their entries.
func TestOneNodeCannotFillReplyCache(t *testing.T) {
	s := startCloudWith(t, server.Config{NMSTuning: server.NMSTuning{DedupEntries: 64, DedupPerNode: 16}})
	nodes := onlineAll(t, s, "fill", 3)
	mallory, alice, bob := nodes[0], nodes[1], nodes[2]
	for range 200 {
		mallory.mu.Lock()
		pkt, err := mallory.sess.SealMessage(nil, &mallory.enc, messages.NewMsgID(), mallory.FQDN, time.Now(), messages.TunnelRequest{PeerFQDN: "nobody.example.cyphonic"})
		mallory.mu.Unlock()
		if err != nil {
			t.Fatal(err)
		}
		if err := mallory.Send(mallory.Reply.NMS[0], pkt); err != nil {
			t.Fatal(err)
		}
	}
	c := &s.NMS.Counters
	eventually(t, "the flood beyond the node's share is refused", func() bool { return c.NodeLimit.Load() >= 200-16 })
	if _, err := alice.Register(false); err != nil {
		t.Fatal(err)
	}
	if _, err := alice.Tunnel(bob.FQDN, false); err != nil {
		t.Fatal(err)
	}
	st, entries, _ := s.NMS.Dedup()
	if c.CacheFull.Load() != 0 || st.Failed != 0 || st.Evicted != 0 {
		t.Fatalf("others' entries lost: cache full %d, failed %d, evicted %d", c.CacheFull.Load(), st.Failed, st.Evicted)
	}
	if entries > 3+16+2 {
		t.Fatalf("%d entries: the flood took more than its share", entries)
	}
}

// TestSteadyKeepaliveNoStoreWork: a keepalive from the mapping the store
// already holds is answered by the NMS worker from its session, with no
// store job at all (before, each one read and decoded the node's record);
// a keepalive from a new mapping still writes it.
func TestSteadyKeepaliveNoStoreWork(t *testing.T) {
	s := startCloudWith(t, server.Config{})
	const N, rounds = 8, 3
	nodes := onlineAll(t, s, "steady", N)
	c := &s.NMS.Counters
	kas, jobs := c.Keepalives.Load(), s.NMS.StoreJobs()
	for r := range rounds {
		for _, n := range nodes {
			if ack, err := n.Keepalive(); err != nil || ack.Observed != n.Addr() {
				t.Fatalf("round %d: %s: %+v %v", r, n.FQDN, ack, err)
			}
		}
	}
	if got := c.Keepalives.Load() - kas; got != N*rounds {
		t.Fatalf("NMS ran %d keepalives, want %d", got, N*rounds)
	}
	if got := s.NMS.StoreJobs() - jobs; got != 0 {
		t.Fatalf("%d steady-state keepalives queued %d store jobs, want none", N*rounds, got)
	}
	n := nodes[0]
	if err := n.Move(); err != nil {
		t.Fatal(err)
	}
	if ack, err := n.Keepalive(); err != nil || ack.Observed != n.Addr() {
		t.Fatalf("keepalive after the move: %+v %v", ack, err)
	}
	rec, err := s.Store().GetNode(context.Background(), n.FQDN)
	if err != nil || rec.Locator.Observed4 != n.Addr() {
		t.Fatalf("locator after the move: %+v %v, want %v", rec.Locator, err, n.Addr())
	}
}
