package cloudsim

import (
	"context"
	"crypto/rand"
	"net"
	"net/netip"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cyphonic/cyphonic-go/cloud/server"
	"github.com/cyphonic/cyphonic-go/cloud/store"
	"github.com/cyphonic/cyphonic-go/messages"
	"github.com/cyphonic/cyphonic-go/transport/signaling"
)

// slowLookups is a store whose session lookups take delay each (a loaded
// Redis: a round trip and its queue) and are counted: the reads a flood of
// unknown session IDs costs the store.
type slowLookups struct {
	store.Store
	delay   time.Duration
	lookups atomic.Uint64
}

func (s *slowLookups) LookupSession(ctx context.Context, id store.SessionID) (store.Node, error) {
	s.lookups.Add(1)
	select {
	case <-time.After(s.delay):
	case <-ctx.Done():
		return store.Node{}, ctx.Err()
	}
	return s.Store.LookupSession(ctx, id)
}

// unknownSessionPacket is a sealed-looking signaling packet naming session
// id, with random bytes where the ciphertext goes: what anyone can send
// without a key.
func unknownSessionPacket(id uint32) []byte {
	b := make([]byte, messages.SignalingHeaderLen+messages.AEADOverhead+48)
	rand.Read(b)
	messages.SignalingHeader{SessionID: id}.Put(b)
	return b
}

// floodUnknownSessions sends packets naming random session IDs to to, from
// n sources (127.0.0.base..), as fast as one goroutine can until stop is
// closed, counting them in sent.
func floodUnknownSessions(t *testing.T, to netip.AddrPort, base byte, n int, stop <-chan struct{}, sent *atomic.Uint64) *sync.WaitGroup {
	t.Helper()
	pkts := make([][]byte, 1<<14)
	for i := range pkts {
		pkts[i] = unknownSessionPacket(0)
	}
	socks := make([]*net.UDPConn, n)
	for i := range socks {
		socks[i] = attacker(t, base+byte(i))
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		var idb [4]byte
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			p := pkts[i%len(pkts)]
			rand.Read(idb[:])
			copy(p[1:5], idb[:]) // a fresh random ID each packet: no cache helps
			if _, err := socks[i%n].WriteToUDPAddrPort(p, to); err == nil {
				sent.Add(1)
			}
		}
	})
	return &wg
}

// TestUnknownSessionFlood: packets naming random session IDs, which make
// NMS look each ID up in the store before anything is authenticated, at
// the rate one goroutine can send (tens of thousands a second), against a
// cloud whose store takes a few milliseconds a lookup (a loaded Redis; 16
// store workers). Meanwhile alice logs in, registers and sets up a tunnel
// to bob (online before), within a generous deadline. The flood is counted
// by reason, and the store reads it caused stay within the lookup rate
// (counted at the store). Two sizings: a lookup rate below what the store
// could serve (the token bucket binds), and the default rate above it (the
// bound on lookups in flight binds, keeping them to a share of the store
// queue). Without the bounds the flood keeps NMS's store queue full, so
// most of alice's registration and tunnel copies are refused as busy, and
// the store serves the flood as fast as it can.
func TestUnknownSessionFlood(t *testing.T) {
	if testing.Short() {
		t.Skip("floods the loopback for seconds")
	}
	for _, tt := range []struct {
		name  string
		delay time.Duration
		rate  float64
	}{
		{"rate binds", 5 * time.Millisecond, 500},
		{"in-flight bound binds", 20 * time.Millisecond, 5000}, // nms.Config's default rate
	} {
		t.Run(tt.name, func(t *testing.T) { testUnknownSessionFlood(t, tt.delay, tt.rate) })
	}
}

func testUnknownSessionFlood(t *testing.T, delay time.Duration, rate float64) {
	bolt, err := store.OpenBolt(filepath.Join(t.TempDir(), "registry.db"))
	if err != nil {
		t.Fatal(err)
	}
	st := &slowLookups{Store: bolt, delay: delay}
	s := startCloudWith(t, server.Config{Store: st, NMSTuning: server.NMSTuning{LookupRate: rate}})
	bob := nodeAt(t, s, "bob.example.cyphonic", 2)
	online(t, s, bob, messages.NATNone)
	alice := nodeAt(t, s, "alice.example.cyphonic", 3)

	c := &s.NMS.Counters
	judged := func() uint64 { // flood packets NMS dealt with, one way or another
		return c.LookupRate.Load() + c.LookupInFlight.Load() + c.UnknownSession.Load() + c.Busy.Load() + c.Garbage.Load()
	}
	before := st.lookups.Load()
	stop := make(chan struct{})
	var sent atomic.Uint64
	start := time.Now()
	wg := floodUnknownSessions(t, s.NMS.Addrs()[0], 50, 8, stop, &sent)
	stopped := false
	stopFlood := func() {
		if !stopped {
			stopped = true
			close(stop)
			wg.Wait()
		}
	}
	defer stopFlood()
	// The store queue's depth while the flood runs.
	var maxDepth atomic.Int64
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		for {
			select {
			case <-stop:
				return
			case <-time.After(time.Millisecond):
			}
			if q, _ := s.NMS.StoreQueue(); int64(q) > maxDepth.Load() {
				maxDepth.Store(int64(q))
			}
		}
	}()
	// Let the flood take whatever it can of the store queue first.
	eventually(t, "the flood reaches NMS", func() bool { return judged() > 2000 })

	steps := time.Now()
	if _, err := alice.Login(s.AS.Addrs()[0], false); err != nil {
		t.Fatalf("login under the flood: %v", err)
	}
	if _, err := alice.Register(false); err != nil {
		t.Fatalf("register under the flood: %v (busy %d)", err, c.Busy.Load())
	}
	p, err := alice.Tunnel(bob.FQDN, false)
	if err != nil {
		t.Fatalf("tunnel under the flood: %v (busy %d)", err, c.Busy.Load())
	}
	if p.PeerFQDN != bob.FQDN {
		t.Fatalf("path %+v", p)
	}
	took := time.Since(steps)
	stopFlood()
	<-sampled
	// Packets still queued when the flood stopped are judged after it:
	// count until NMS is done with them.
	var settled uint64
	eventually(t, "the flood's packets are all judged", func() bool {
		n := judged()
		q, _ := s.NMS.StoreQueue()
		done := n == settled && q == 0
		settled = n
		if !done {
			time.Sleep(100 * time.Millisecond)
		}
		return done
	})
	elapsed := time.Since(start)
	lookups := st.lookups.Load() - before
	dropped := c.LookupRate.Load() + c.LookupInFlight.Load() + c.UnknownSession.Load()
	_, queueCap := s.NMS.StoreQueue()
	t.Logf("flood: %d packets in %v; store lookups %d, dropped lookup-rate %d lookup-in-flight %d unknown-session %d busy %d; store queue up to %d of %d; alice's steps took %v",
		sent.Load(), elapsed.Round(time.Millisecond), lookups, c.LookupRate.Load(), c.LookupInFlight.Load(), c.UnknownSession.Load(), c.Busy.Load(),
		maxDepth.Load(), queueCap, took.Round(time.Millisecond))
	// The lookups never take more than their share of the store queue
	// (nms.Config's LookupsInFlight, a quarter of it), so nothing
	// authenticated was refused as busy.
	if share := int64(queueCap / 4); maxDepth.Load() > share+16 {
		t.Errorf("store queue reached %d of %d under the flood; the lookups' share is %d", maxDepth.Load(), queueCap, share)
	}
	if b := c.Busy.Load(); b != 0 {
		t.Errorf("%d requests refused as busy under the flood", b)
	}
	// Generous (a few milliseconds unflooded; each of the three requests
	// retransmits for ~5 s before it gives up).
	if took > 8*time.Second {
		t.Errorf("login, register and tunnel took %v under the flood", took)
	}
	// The token bucket's bound: its burst (a quarter second's worth) plus
	// the rate over the flood's whole time.
	if bound := uint64(rate*elapsed.Seconds() + rate/4 + 1); lookups > bound {
		t.Errorf("the flood cost %d store lookups in %v, bound %d", lookups, elapsed, bound)
	}
	if dropped <= lookups {
		t.Errorf("dropped %d flood packets for %d lookups: the flood did not go past the bound", dropped, lookups)
	}
	if got := c.LookupsFound.Load() + c.LookupsUnknown.Load() + c.LookupsFailed.Load(); got != lookups {
		t.Errorf("NMS counted %d lookups answered, the store %d", got, lookups)
	}
}

// TestUnknownSessionNoLockout: the negative cache cannot lock out a node
// that logs in at another cloud process. An observer sees the new
// session's ID in the login's confirmation before the AS has stored it,
// and makes NMS-A look it up then (unknown: cached). The node logs in at
// process B and sends its registration to NMS-A at once: the cached
// answer has lapsed by its first retransmission, so it is registered
// before the second one would go out (1.5 s after the first copy).
func TestUnknownSessionNoLockout(t *testing.T) {
	a, bAS := twoClouds(t)
	c := &a.NMS.Counters
	to := a.NMS.Addrs()[0]
	spy := attacker(t, 60)
	n := nodeAt(t, a, "late.example.cyphonic", 4)
	n.retry = signaling.DefaultRetry() // the real node's schedule, which the cloud's is
	n.OnConfirm = func(id uint32) {
		if _, err := spy.WriteToUDPAddrPort(unknownSessionPacket(id), to); err != nil {
			t.Error(err)
		}
		eventually(t, "NMS-A found the new session unknown", func() bool { return c.LookupsUnknown.Load() >= 1 })
		// Cached: a second copy is not looked up again.
		if _, err := spy.WriteToUDPAddrPort(unknownSessionPacket(id), to); err != nil {
			t.Error(err)
		}
		eventually(t, "NMS-A answers the ID from its negative cache", func() bool { return c.UnknownSession.Load() >= 2 })
	}
	rep, err := n.Login(bAS, false)
	if err != nil {
		t.Fatal(err)
	}
	if rep.NMS[0] == to {
		t.Fatal("logged in at the process whose NMS was to be asked")
	}
	unknownBefore := c.UnknownSession.Load()
	start := time.Now()
	_, err = n.Request(to, messages.Register{Locals: []netip.AddrPort{n.Addr()}, IPv4: true, Port: n.Addr().Port()}, false)
	took := time.Since(start)
	if err != nil {
		t.Fatalf("register at NMS-A: %v", err)
	}
	t.Logf("registered at NMS-A in %v; copies refused from the negative cache: %d", took.Round(time.Millisecond), c.UnknownSession.Load()-unknownBefore)
	if r := n.retry; took >= r.Initial+2*r.Initial { // the second retransmission's time
		t.Fatalf("registered after %v: locked out past the first retransmission", took)
	}
	if c.LookupsFound.Load() < 1 {
		t.Fatal("NMS-A never found the session in the store")
	}
}
