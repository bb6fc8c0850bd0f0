package dataplane_test

import (
	"context"
	"errors"
	"math/rand/v2"
	"net/netip"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cyphonic/cyphonic-go/actors/dataplane"
	rt "github.com/cyphonic/cyphonic-go/actors/supervise"
	"github.com/cyphonic/cyphonic-go/messages"
	"github.com/cyphonic/cyphonic-go/transport/replay"
)

// jitter makes crypto workers finish batches out of order.
func jitter() {
	switch rand.IntN(4) {
	case 0:
		time.Sleep(time.Duration(rand.IntN(300)) * time.Microsecond)
	case 1:
		runtime.Gosched()
	}
}

// TestOrderUnderJitter: 100,000 numbered packets through two data planes
// with jittered parallel crypto workers arrive complete and in order, and
// the sequencers did have batches to put back in order (with one worker
// and no jitter, nothing is held and the test fails).
func TestOrderUnderJitter(t *testing.T) {
	count := uint64(100_000)
	if testing.Short() {
		count = 10_000
	}
	f := newPKI(t)
	tune := func(c *dataplane.Config) { c.Workers = 4; c.WorkerHook = jitter }
	a, b := newNode(t, f, "alice", 1, tune), newNode(t, f, "bob", 2, tune)
	connect(t, a, b, b.addr, a.addr)
	stream(t, a, b, 0, count, 48)
	// The socket writer counts a packet after its write returns, which
	// can be just after bob has read it.
	waitCount(t, "alice's sent and shed packets", count, func() uint64 { return a.dp.Status()[0].TxPackets + loadDrops(a) })
	st := a.dp.Status()
	if len(st) != 1 || st[0].State != dataplane.StateUp || st[0].Endpoint != b.addr {
		t.Fatalf("alice status %+v", st)
	}
	if bs := b.dp.Status(); bs[0].RxPackets+loadDrops(a)+loadDrops(b) < count || len(unexpectedDrops(bs[0].Drops)) != 0 {
		t.Fatalf("bob status %+v", bs)
	}
	// Order only means something if the workers really finished out of
	// order: both sequencers on the path must have held batches back.
	ctx, cancel := context.WithTimeout(context.Background(), failsafe)
	defer cancel()
	aOut, _, err := a.dp.SequencerStats(ctx, b.fqdn)
	if err != nil {
		t.Fatal(err)
	}
	_, bIn, err := b.dp.SequencerStats(ctx, a.fqdn)
	if err != nil {
		t.Fatal(err)
	}
	if aOut.Stats.Held == 0 || bIn.Stats.Held == 0 {
		t.Fatalf("no reordering to restore: alice's sequencer-out %+v, bob's sequencer-in %+v", aOut, bIn)
	}
	t.Logf("held out of order: alice's sequencer-out %d, bob's sequencer-in %d", aOut.Stats.Held, bIn.Stats.Held)
}

// waitCount polls (no timing assertion: only a failsafe) until get() >= want.
func waitCount(t *testing.T, what string, want uint64, get func() uint64) {
	t.Helper()
	deadline := time.Now().Add(failsafe)
	for get() < want {
		if time.Now().After(deadline) {
			t.Fatalf("%s: %d, want %d", what, get(), want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestHostilePacketsDropped: replayed, forged and truncated packets injected
// on the path are dropped and counted by reason, and the tunnel keeps working.
func TestHostilePacketsDropped(t *testing.T) {
	f := newPKI(t)
	a, b := newNode(t, f, "alice", 1, nil), newNode(t, f, "bob", 2, nil)
	px := newProxy(t, b.addr)
	connect(t, a, b, px.addr(), b.addr)
	stream(t, a, b, 0, 100, 16)
	good := px.dataPacket(t, false)

	peerDrops := func(reason string) func() uint64 {
		return func() uint64 { return b.dp.Status()[0].Drops[reason] }
	}
	global := func(reason string) func() uint64 {
		return func() uint64 { return b.dp.Drops()[reason] }
	}
	for range 3 {
		px.inject(t, good) // replay
	}
	waitCount(t, "replay drops", 3, peerDrops("replay"))

	forged := append([]byte(nil), good...)
	forged[len(forged)-1] ^= 1 // tag
	px.inject(t, forged)
	forged = append([]byte(nil), good...)
	forged[40] ^= 0x80 // ciphertext
	px.inject(t, forged)
	waitCount(t, "auth drops", 2, peerDrops("auth"))

	px.inject(t, good[:20]) // shorter than header + tag
	px.inject(t, []byte{byte(messages.TypeData)})
	waitCount(t, "truncated drops", 2, global("truncated"))

	unknown := append([]byte(nil), good...)
	unknown[4] ^= 0xff // receiver index nobody has
	px.inject(t, unknown)
	waitCount(t, "unknown-index drops", 1, global("unknown-index"))

	px.inject(t, []byte{0xee, 1, 2, 3}) // not a packet type
	waitCount(t, "malformed drops", 1, global("malformed"))

	// None of it got through, and real traffic still flows in order.
	stream(t, a, b, 100, 200, 16)
	if st := b.dp.Status()[0]; st.Drops["replay"] != 3 || st.Drops["auth"] != 2 || st.State != dataplane.StateUp {
		t.Fatalf("bob's peer status %+v", st)
	}
}

// TestLostPacketsCounted: packets alice sends that never reach bob (the
// path drops them) are counted as lost in bob's status once their counters
// have left his replay window, and only those: the packets around them
// arrive and are not.
func TestLostPacketsCounted(t *testing.T) {
	f := newPKI(t)
	a, b := newNode(t, f, "alice", 1, nil), newNode(t, f, "bob", 2, nil)
	px := newProxy(t, b.addr)
	connect(t, a, b, px.addr(), b.addr)
	stream(t, a, b, 0, 100, 16)
	lost := func() uint64 { return status(t, b, a.fqdn).Lost }
	if n := lost(); n != 0 {
		t.Fatalf("%d packets lost on a clean path", n)
	}

	const gone = 40
	ctx, cancel := context.WithTimeout(context.Background(), failsafe)
	defer cancel()
	px.blackhole.Store(true)
	for s := range uint64(gone) {
		if err := a.app.Send(ctx, ipv4(a.vip4, b.vip4, 100+s, 200)); err != nil {
			t.Fatal(err)
		}
	}
	waitCount(t, "packets the path dropped", gone, px.holed.Load)
	px.blackhole.Store(false)
	holed := px.holed.Load() // a keepalive may have gone too

	// The gap leaves bob's window once a window's worth more has come.
	// Each Send is a batch of one packet, and a peer queues at most
	// OutInflight (32) batches: 16 in flight keep the stream inside that
	// bound. With 64 the sender outran its own queue on a slow machine
	// and shed 5-19 % as queue-full (the bound working, not a loss).
	stream(t, a, b, 100+gone, replay.WindowSize+2*64, 16)
	waitCount(t, "lost packets", holed, lost)
	// Packets bob shed under load before authenticating them (counted as
	// drops too) never reached his window either.
	if n, shed := lost(), loadDrops(b); n > holed+shed {
		t.Fatalf("bob counts %d packets lost, the path dropped %d and he shed %d", n, holed, shed)
	}
}

// TestSpoofedSourceDropped: a peer with valid keys cannot inject inner
// packets that claim another address (another peer's VIP, or a real one);
// they are authenticated, then dropped and counted, and never reach bob's
// TUN, while alice's real traffic keeps flowing in order.
func TestSpoofedSourceDropped(t *testing.T) {
	f := newPKI(t)
	a, b := newNode(t, f, "alice", 1, nil), newNode(t, f, "bob", 2, nil)
	connect(t, a, b, b.addr, a.addr)
	stream(t, a, b, 0, 100, 16)

	ctx, cancel := context.WithTimeout(context.Background(), failsafe)
	defer cancel()
	for _, src := range []string{"100.64.0.3", "198.51.100.7"} {
		if err := a.app.Send(ctx, ipv4(netip.MustParseAddr(src), b.vip4, 1<<40, 200)); err != nil {
			t.Fatal(err)
		}
	}
	waitCount(t, "spoofed-source drops", 2, func() uint64 { return b.dp.Status()[0].Drops["spoofed-source"] })
	// stream checks that exactly the next 100 packets arrive, in order:
	// a spoofed packet that reached the TUN would break it.
	stream(t, a, b, 100, 100, 16)
}

// TestSupervisionHeals: a crashed peer actor is restarted by its supervisor,
// asks the control plane for a path, re-handshakes, and traffic resumes.
func TestSupervisionHeals(t *testing.T) {
	f := newPKI(t)
	needs := make(chan string, 4)
	a := newNode(t, f, "alice", 1, func(c *dataplane.Config) {
		c.OnPeerNeedsPath = func(fqdn string) { needs <- fqdn }
		c.Tick = 20 * time.Millisecond
		c.HandshakeRetry = 100 * time.Millisecond
	})
	b := newNode(t, f, "bob", 2, nil)
	connect(t, a, b, b.addr, a.addr)
	// 16 in flight, inside the peer's bound of OutInflight (32) one-packet
	// batches: with 32 a slow machine's sender filled its own queue and
	// shed 5-7 % as queue-full (2 runs in 8 on a loaded machine).
	stream(t, a, b, 0, 500, 16)

	pid := a.dp.Peer(b.fqdn)
	a.sys.Root().Send(pid, dataplane.Crash{Reason: "test crash"})
	select {
	case got := <-needs:
		if got != b.fqdn {
			t.Fatalf("OnPeerNeedsPath(%q), want %q", got, b.fqdn)
		}
	case <-time.After(failsafe):
		t.Fatal("restarted peer did not ask for a path")
	}
	waitUp(t, a, b.fqdn)
	stream(t, a, b, 500, 500, 16)

	st := a.dp.Status()[0]
	if st.Restarts != 1 || st.State != dataplane.StateUp {
		t.Fatalf("alice's peer after restart: %+v", st)
	}
	node, ok := a.sys.Registry().Snapshot().Find(pid.Id)
	if !ok || node.Restarts != 1 || node.LastFailure == "" {
		t.Fatalf("actor tree entry %+v (found %v), want 1 restart with its failure", node, ok)
	}
	if _, ok := a.sys.Registry().Snapshot().Find(pid.Id + "/sequencer-out"); !ok {
		t.Fatal("restarted peer has no sequencer-out child")
	}
}

// TestWaitUpUnknownAndClose: WaitUp on a peer never opened gives up with
// ErrUnknownPeer when ctx ends; Close ends a waiting WaitUp.
func TestWaitUpUnknownAndClose(t *testing.T) {
	f := newPKI(t)
	a := newNode(t, f, "alice", 1, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := a.dp.WaitUp(ctx, "nobody.example.cyphonic"); !errors.Is(err, dataplane.ErrUnknownPeer) {
		t.Fatalf("WaitUp on unknown peer: %v, want ErrUnknownPeer", err)
	}
	// A peer that never answers: WaitUp waits until Close.
	if err := a.dp.Open(messages.PathInfo{PeerFQDN: "ghost.example.cyphonic", Kind: messages.PathDirect,
		Endpoints: []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:9")}, Initiator: true, TunnelID: tunnelID()}); err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() { errc <- a.dp.WaitUp(context.Background(), "ghost.example.cyphonic") }()
	if err := a.dp.Close("ghost.example.cyphonic"); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; !errors.Is(err, dataplane.ErrUnknownPeer) {
		t.Fatalf("WaitUp after Close: %v, want ErrUnknownPeer", err)
	}
}

// TestActorTreeShowsDataPath: with the data path in one package, every
// stage that is an actor still is one, and the debug tree shows it: the
// I/O actors, the crypto actor with its workers, and each peer with its two
// sequencers.
func TestActorTreeShowsDataPath(t *testing.T) {
	f := newPKI(t)
	a := newNode(t, f, "alice", 1, func(c *dataplane.Config) { c.Workers = 3 })
	b := newNode(t, f, "bob", 2, nil)
	connect(t, a, b, b.addr, a.addr)

	kinds := map[string]int{}
	var walk func([]rt.Node)
	walk = func(ns []rt.Node) {
		for _, n := range ns {
			kinds[n.Kind]++
			walk(n.Children)
		}
	}
	walk(a.sys.Registry().Snapshot().Actors)
	want := map[string]int{"tun": 1, "udp": 1, "crypto": 1, "crypto-worker": 3, "peers": 1, "peer": 1, "sequencer": 2}
	for k, n := range want {
		if kinds[k] != n {
			t.Errorf("%d actors of kind %q in the tree, want %d (tree kinds %v)", kinds[k], k, n, kinds)
		}
	}
	peer := a.dp.Peer(b.fqdn)
	for _, child := range []string{"/sequencer-out", "/sequencer-in"} {
		if _, ok := a.sys.Registry().Snapshot().Find(peer.Id + child); !ok {
			t.Errorf("peer %s has no %s child", peer.Id, child)
		}
	}
}

// TestLateBatchGivesBackItsSlot: a batch that reaches its sequencer after
// the sequencer gave its slot up (a worker stalled past GapTimeout) is
// dropped and counted, and gives its in-flight slot back. Forgotten with
// the slot still taken, as it was, every late batch shrank the peer's
// in-flight bound for good: after 32 of them the peer sent (or received)
// nothing more, here in the second stream.
func TestLateBatchGivesBackItsSlot(t *testing.T) {
	var stall atomic.Bool
	stall.Store(true)
	var calls atomic.Uint64
	hook := func() {
		if stall.Load() && calls.Add(1)%4 == 0 {
			time.Sleep(5 * time.Millisecond) // far past GapTimeout
		}
	}
	tune := func(c *dataplane.Config) { c.Workers, c.WorkerHook, c.GapTimeout = 2, hook, time.Millisecond }
	f := newPKI(t)
	a, b := newNode(t, f, "alice", 1, tune), newNode(t, f, "bob", 2, tune)
	stall.Store(false)
	connect(t, a, b, b.addr, a.addr)
	stall.Store(true)

	// Push without waiting until both sequencers on the path have refused
	// more late batches than the peer has in-flight slots.
	ctx, cancel := context.WithTimeout(context.Background(), failsafe)
	defer cancel()
	lateOut, lateIn := func() uint64 {
		out, _, err := a.dp.SequencerStats(ctx, b.fqdn)
		if err != nil {
			t.Fatal(err)
		}
		return out.Stats.TooOld
	}, func() uint64 {
		_, in, err := b.dp.SequencerStats(ctx, a.fqdn)
		if err != nil {
			t.Fatal(err)
		}
		return in.Stats.TooOld
	}
	// With the slots leaking, traffic stops before that and the counts
	// stop growing.
	stopDrain := make(chan struct{})
	drained := make(chan struct{})
	go func() {
		defer close(drained)
		for {
			select {
			case <-stopDrain:
				return
			default:
				drain(b)
			}
		}
	}()
	pushUntil := time.Now().Add(10 * time.Second)
	for s := uint64(0); lateOut() <= 40 || lateIn() <= 40; s++ {
		if time.Now().After(pushUntil) {
			t.Fatalf("late batches refused: alice's sequencer-out %d, bob's sequencer-in %d, want > 40 each; alice %+v; bob %+v",
				lateOut(), lateIn(), a.dp.Status(), b.dp.Status())
		}
		for range 512 {
			sctx, scancel := context.WithTimeout(ctx, 100*time.Millisecond)
			err := a.app.Send(sctx, ipv4(a.vip4, b.vip4, s, 200))
			scancel()
			if err != nil && ctx.Err() != nil {
				t.Fatalf("send: %v", err)
			}
		}
	}
	stall.Store(false)
	close(stopDrain)
	<-drained
	// Let what is still queued or in flight from the push arrive (or be
	// shed) before the stream, which takes any stray packet for disorder.
	for quiet := 0; quiet < 3; {
		tx := a.dp.Status()[0].TxPackets
		if drain(b) == 0 && a.dp.Status()[0].TxPackets == tx {
			quiet++
		} else {
			quiet = 0
		}
	}
	if st := a.dp.Status()[0]; st.Drops["queue-delay"] == 0 {
		t.Fatalf("late batches not counted as drops: %+v", st)
	}
	// The bounds are whole again: traffic flows as before (16 in flight,
	// inside the peer's queue bound, as in TestSupervisionHeals).
	stream(t, a, b, 1_000_000, 2000, 16)
}

// drain discards what n's application receives until 50 ms pass without
// a packet, and says how many it discarded.
func drain(n *node) int {
	for got := 0; ; got++ {
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		_, err := n.app.Recv(ctx)
		cancel()
		if err != nil {
			return got
		}
	}
}
