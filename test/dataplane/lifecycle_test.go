package dataplane_test

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/cyphonic/cyphonic-go/actors/dataplane"
	rt "github.com/cyphonic/cyphonic-go/actors/supervise"
	"github.com/cyphonic/cyphonic-go/messages"
	"github.com/cyphonic/cyphonic-go/transport/seal"
)

// waitFor polls cond until it holds; the deadline only turns a hang into
// a failure.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(failsafe)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("waiting for %s: gave up", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// status returns n's view of its peer fqdn.
func status(t testing.TB, n *node, fqdn string) dataplane.PeerStatus {
	t.Helper()
	for _, s := range n.dp.Status() {
		if s.FQDN == fqdn {
			return s
		}
	}
	t.Fatalf("%s has no peer %s", n.fqdn, fqdn)
	return dataplane.PeerStatus{}
}

// actorNode returns the actor tree entry of n's live peer actor for fqdn.
func actorNode(t testing.TB, n *node, fqdn string) rt.Node {
	t.Helper()
	pid := n.dp.Peer(fqdn)
	if pid == nil {
		t.Fatalf("%s: no live peer actor for %s", n.fqdn, fqdn)
	}
	nd, ok := n.sys.Registry().Snapshot().Find(pid.Id)
	if !ok {
		t.Fatalf("%s: %s not in the actor tree", n.fqdn, pid.Id)
	}
	return nd
}

// TestRekey: with short rekey limits, a stream keeps flowing complete and in
// order across several rekeys; the keys really change (new receiver
// indexes on the wire); the session before the current one still opens
// packets (a replayed packet of it is counted as a replay, so it
// authenticated), and the one before that is gone.
func TestRekey(t *testing.T) {
	for _, tc := range []struct {
		name string
		tune func(*dataplane.Config)
	}{
		{"volume", func(c *dataplane.Config) { c.RekeyAfterMessages = 300; c.Tick = 10 * time.Millisecond }},
		{"time", func(c *dataplane.Config) { c.RekeyAfterTime = 100 * time.Millisecond; c.Tick = 10 * time.Millisecond }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newPKI(t)
			tune := func(c *dataplane.Config) {
				c.Workers, c.WorkerHook, c.Keepalive = 3, jitter, 50*time.Millisecond
				tc.tune(c)
			}
			a, b := newNode(t, f, "alice", 1, tune), newNode(t, f, "bob", 2, tune)
			px := newProxy(t, b.addr)
			connect(t, a, b, px.addr(), b.addr)

			const perGen, gens = 1000, 4
			var stuck atomic.Bool
			waitGen := func(n int) {
				deadline := time.Now().Add(failsafe)
				for toB, _ := px.indexes(); toB < n; toB, _ = px.indexes() {
					if time.Now().After(deadline) {
						stuck.Store(true)
						return
					}
					time.Sleep(time.Millisecond)
				}
			}
			// The sender waits at each mark, with packets still in flight,
			// until a new session carries data to bob.
			streamWith(t, a, b, 0, perGen*gens, 32, func(seq uint64) {
				if seq > 0 && seq%perGen == 0 {
					waitGen(int(seq/perGen) + 1)
				}
			})
			if stuck.Load() {
				t.Fatal("no rekey happened")
			}
			toB, _ := px.indexes()
			if toB < gens {
				t.Fatalf("%d sessions carried data, want >= %d", toB, gens)
			}
			for _, n := range []*node{a, b} {
				if st := n.dp.Status()[0]; len(unexpectedDrops(st.Drops)) != 0 || st.State != dataplane.StateUp {
					t.Fatalf("%s after rekeys: %+v", n.fqdn, st)
				}
			}

			if tc.name == "volume" {
				checkRetiredSessions(t, a, b, px, perGen*gens)
			}
		})
	}
}

// checkRetiredSessions: a packet of session g still opens at bob (counted
// as a replay, so it authenticated) after session g+1 replaced it on both
// sides, and is refused (unknown index) once g+2 has. Rekeys here are
// driven by volume, so sessions change only while alice sends.
func checkRetiredSessions(t *testing.T, a, b *node, px *proxy, seq uint64) {
	t.Helper()
	stream(t, a, b, seq, 50, 8)
	seq += 50
	pkt := px.lastToB()
	toB, _ := px.generations()
	g := slices.Index(toB, receiverIndex(pkt))
	if g < 0 {
		t.Fatal("captured packet of no known session")
	}
	// One packet at a time until session n exists, then until bob sends on
	// it (his keepalives go out on the session he installed last).
	nextGen := func(n int) {
		for toB, _ = px.generations(); len(toB) <= n; toB, _ = px.generations() {
			stream(t, a, b, seq, 1, 1)
			seq++
		}
		waitFor(t, "bob to install the new session", func() bool { return px.usedByB(toB[n]) })
	}
	nextGen(g + 1)
	drops := func() uint64 { return status(t, b, a.fqdn).Drops["replay"] }
	before := drops()
	px.inject(t, pkt)
	waitCount(t, "replay drop of the previous session", before+1, drops)

	nextGen(g + 2)
	unknown := func() uint64 { return b.dp.Drops()["unknown-index"] }
	before = unknown()
	px.inject(t, pkt)
	waitCount(t, "unknown-index drop of a retired session", before+1, unknown)
}

// TestCipherNegotiation: nodes with different suite preferences agree on
// one both accept; nodes without a common suite never come up, and the
// responder counts the refusal under its own reason.
func TestCipherNegotiation(t *testing.T) {
	suites := func(s ...seal.Suite) func(*dataplane.Config) {
		return func(c *dataplane.Config) { c.Suites = s }
	}
	aesFirst := suites(seal.AES256GCM, seal.ChaCha20Poly1305)
	for _, tc := range []struct {
		name       string
		alice, bob func(*dataplane.Config)
		want       string
	}{
		{"aes-first vs chacha-only", aesFirst, suites(seal.ChaCha20Poly1305), "ChaCha20-Poly1305"},
		{"chacha-only vs aes-first", suites(seal.ChaCha20Poly1305), aesFirst, "ChaCha20-Poly1305"},
		{"both aes-first", aesFirst, aesFirst, "AES-256-GCM"},
		{"aes-only vs aes-first", suites(seal.AES256GCM), aesFirst, "AES-256-GCM"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newPKI(t)
			a, b := newNode(t, f, "alice", 1, tc.alice), newNode(t, f, "bob", 2, tc.bob)
			connect(t, a, b, b.addr, a.addr)
			stream(t, a, b, 0, 200, 16)
			stream(t, b, a, 0, 200, 16)
			if ca, cb := status(t, a, b.fqdn).Cipher, status(t, b, a.fqdn).Cipher; ca != tc.want || cb != tc.want {
				t.Fatalf("ciphers alice %q bob %q, want %q", ca, cb, tc.want)
			}
		})
	}

	t.Run("no common suite", func(t *testing.T) {
		f := newPKI(t)
		a := newNode(t, f, "alice", 1, suites(seal.AES256GCM))
		b := newNode(t, f, "bob", 2, suites(seal.ChaCha20Poly1305))
		id := tunnelID()
		if err := b.dp.Open(messages.PathInfo{PeerFQDN: a.fqdn, PeerVIP4: a.vip4, Kind: messages.PathDirect,
			Endpoints: []netip.AddrPort{a.addr}, TunnelID: id}); err != nil {
			t.Fatal(err)
		}
		if err := a.dp.Open(messages.PathInfo{PeerFQDN: b.fqdn, PeerVIP4: b.vip4, Kind: messages.PathDirect,
			Endpoints: []netip.AddrPort{b.addr}, Initiator: true, TunnelID: id}); err != nil {
			t.Fatal(err)
		}
		waitCount(t, "no-common-suite refusals", 1, func() uint64 { return b.dp.Drops()["no-common-suite"] })
		if st := status(t, a, b.fqdn); st.State == dataplane.StateUp {
			t.Fatalf("alice up without a common suite: %+v", st)
		}
		if st := status(t, b, a.fqdn); st.State == dataplane.StateUp || st.Cipher != "" {
			t.Fatalf("bob up without a common suite: %+v", st)
		}
	})
}

// backoffEvents collects the supervisor's scheduled restarts in sys.
func backoffEvents(t testing.TB, sys *rt.System) func() []*rt.BackoffEvent {
	var mu sync.Mutex
	var evs []*rt.BackoffEvent
	sub := sys.Actors().EventStream.Subscribe(func(evt any) {
		if e, ok := evt.(*rt.BackoffEvent); ok {
			mu.Lock()
			evs = append(evs, e)
			mu.Unlock()
		}
	})
	t.Cleanup(func() { sys.Actors().EventStream.Unsubscribe(sub) })
	return func() []*rt.BackoffEvent {
		mu.Lock()
		defer mu.Unlock()
		return append([]*rt.BackoffEvent(nil), evs...)
	}
}

// TestSupervisorGivesUp: a peer that never answers is restarted after
// growing delays, each restart asks for a new path, and after MaxRetries it
// is stopped for good: WaitUp says so, Status says why, and the actor tree
// keeps it among the gave-up actors with its failure.
func TestSupervisorGivesUp(t *testing.T) {
	f := newPKI(t)
	var needs atomic.Int32
	const retries = 3
	a := newNode(t, f, "alice", 1, func(c *dataplane.Config) {
		c.Backoff = rt.Backoff{Initial: 20 * time.Millisecond, Max: time.Second, Multiplier: 2, MaxRetries: retries}
		c.HandshakeTimeout = 100 * time.Millisecond
		c.HandshakeRetry = 30 * time.Millisecond
		c.Tick = 10 * time.Millisecond
		c.OnPeerNeedsPath = func(string) { needs.Add(1) }
	})
	events := backoffEvents(t, a.sys)
	const ghost = "ghost.example.cyphonic"
	if err := a.dp.Open(messages.PathInfo{PeerFQDN: ghost, Kind: messages.PathDirect,
		Endpoints: []netip.AddrPort{closedPort(t)}, Initiator: true, TunnelID: tunnelID()}); err != nil {
		t.Fatal(err)
	}
	pid := waitPeer(t, a, ghost)
	ctx, cancel := context.WithTimeout(context.Background(), failsafe)
	defer cancel()
	if err := a.dp.WaitUp(ctx, ghost); !errors.Is(err, dataplane.ErrPeerFailed) {
		t.Fatalf("WaitUp: %v, want ErrPeerFailed", err)
	}

	st := status(t, a, ghost)
	if st.State != dataplane.StateFailed+": handshake timeout" || st.Restarts != retries || st.HandshakeTimeouts < uint64(retries) {
		t.Fatalf("status %+v, want failed: handshake timeout after %d restarts", st, retries)
	}
	if got := needs.Load(); got != retries {
		t.Fatalf("OnPeerNeedsPath called %d times, want %d", got, retries)
	}
	var delays []time.Duration
	for _, e := range events() {
		if e.Child.Id == pid.Id {
			delays = append(delays, e.Delay)
		}
	}
	if len(delays) != retries {
		t.Fatalf("backoff delays %v, want %d", delays, retries)
	}
	for i := 1; i < len(delays); i++ {
		if delays[i] <= delays[i-1] {
			t.Fatalf("backoff delays %v do not grow", delays)
		}
	}
	var gone *rt.Node
	tree := a.sys.Registry().Snapshot()
	for i := range tree.GaveUp {
		if tree.GaveUp[i].ID == pid.Id {
			gone = &tree.GaveUp[i]
		}
	}
	if gone == nil || gone.State != rt.StateGaveUp || gone.Restarts != retries ||
		!strings.Contains(gone.LastFailure, "handshake timeout") {
		t.Fatalf("gave-up entry %+v in %+v", gone, tree.GaveUp)
	}
	if _, live := tree.Find(pid.Id); live {
		t.Fatal("the peer actor is still alive")
	}
}

// closedPort returns a loopback UDP address nobody listens on.
func closedPort(t testing.TB) netip.AddrPort {
	t.Helper()
	c, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.MustParseAddrPort("127.0.0.1:0")))
	if err != nil {
		t.Fatal(err)
	}
	ap := c.LocalAddr().(*net.UDPAddr).AddrPort()
	c.Close()
	return ap
}

// waitPeer waits for the peer actor for fqdn to exist and returns its PID.
func waitPeer(t testing.TB, n *node, fqdn string) (pid *actor.PID) {
	t.Helper()
	waitFor(t, "peer actor "+fqdn, func() bool { pid = n.dp.Peer(fqdn); return pid != nil })
	return pid
}

// TestKeepaliveSilence: when the other node goes silent, the peer fails
// with a keepalive-silence cause, is restarted, and asks for a new path.
func TestKeepaliveSilence(t *testing.T) {
	f := newPKI(t)
	needs := make(chan string, 8)
	a := newNode(t, f, "alice", 1, func(c *dataplane.Config) {
		c.Tick = 10 * time.Millisecond
		c.Keepalive = 50 * time.Millisecond
		c.DeadAfter = time.Second
		c.HandshakeTimeout = failsafe // after the restart it keeps trying, no second failure
		c.OnPeerNeedsPath = func(fqdn string) { needs <- fqdn }
	})
	b := newNode(t, f, "bob", 2, func(c *dataplane.Config) { c.Keepalive = 50 * time.Millisecond; c.Tick = 10 * time.Millisecond })
	connect(t, a, b, b.addr, a.addr)
	stream(t, a, b, 0, 100, 16)

	ctx, cancel := context.WithTimeout(context.Background(), failsafe)
	defer cancel()
	if err := b.dp.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case got := <-needs:
		if got != b.fqdn {
			t.Fatalf("OnPeerNeedsPath(%q)", got)
		}
	case <-ctx.Done():
		t.Fatal("no restart after bob went silent")
	}
	waitPeer(t, a, b.fqdn)
	nd := actorNode(t, a, b.fqdn)
	if nd.Restarts < 1 || !strings.Contains(nd.LastFailure, "keepalive silence") {
		t.Fatalf("actor tree entry %+v, want a restart for keepalive silence", nd)
	}
	if st := status(t, a, b.fqdn); st.Restarts < 1 || st.State == dataplane.StateUp {
		t.Fatalf("status %+v", st)
	}
}

// TestForgeriesCannotKillASession: a flood of forged packets carrying a
// live receiver index does not tear down a session whose peer is heard
// from (even with ticks in which only forgeries arrive); once the peer
// falls silent, the same flood fails the peer with its own cause, before
// keepalive silence would.
func TestForgeriesCannotKillASession(t *testing.T) {
	f := newPKI(t)
	a := newNode(t, f, "alice", 1, func(c *dataplane.Config) { c.Keepalive = 50 * time.Millisecond })
	needs := make(chan string, 8)
	b := newNode(t, f, "bob", 2, func(c *dataplane.Config) {
		c.Tick = 10 * time.Millisecond // most ticks see no keepalive from alice
		c.Keepalive = time.Second      // alice is overdue only after 1s of silence
		c.DeadAfter = failsafe
		c.AuthFailLimit = 5
		c.OnPeerNeedsPath = func(fqdn string) { needs <- fqdn }
	})
	px := newProxy(t, b.addr)
	connect(t, a, b, px.addr(), b.addr)
	stream(t, a, b, 0, 100, 16)
	forged := forge(px.dataPacket(t, false))

	authDrops := func() uint64 { return status(t, b, a.fqdn).Drops["auth"] }
	for authDrops() < 3000 {
		for range 50 {
			px.inject(t, forged)
		}
		time.Sleep(time.Millisecond)
	}
	stream(t, a, b, 100, 100, 16)
	if st := status(t, b, a.fqdn); st.Restarts != 0 || st.State != dataplane.StateUp {
		t.Fatalf("forgeries tore down a live session: %+v", st)
	}

	px.blackhole.Store(true) // alice falls silent
	for len(needs) == 0 {
		for range 50 {
			px.inject(t, forged)
		}
		time.Sleep(time.Millisecond)
	}
	if got := <-needs; got != a.fqdn {
		t.Fatalf("OnPeerNeedsPath(%q)", got)
	}
	waitPeer(t, b, a.fqdn)
	if nd := actorNode(t, b, a.fqdn); nd.Restarts != 1 || !strings.Contains(nd.LastFailure, "authentication failures") {
		t.Fatalf("actor tree entry %+v, want a restart for authentication failures", nd)
	}
}
