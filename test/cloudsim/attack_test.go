package cloudsim

import (
	"context"
	"crypto/rand"
	"net"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cyphonic/cyphonic-go/cloud/server"
	"github.com/cyphonic/cyphonic-go/messages"
	"github.com/cyphonic/cyphonic-go/pki"
	"github.com/cyphonic/cyphonic-go/test/attack"
	"github.com/cyphonic/cyphonic-go/test/systest"
	"github.com/cyphonic/cyphonic-go/transport/handshake"
	"github.com/cyphonic/cyphonic-go/transport/signaling"
)

// Attacks on the login (issue 9), against a real cloud over loopback.

// forgedLogin builds a login for victim from nothing but its public
// certificate, as anyone who saw it on the wire can: a fresh ephemeral and
// either the victim's static public key (whose private half the forger
// lacks) or the forger's own static key (which the certificate does not
// bind).
func forgedLogin(t testing.TB, victim *Node, ownKey bool) *signaling.Login {
	t.Helper()
	cfg := victim.cfg // the victim's certificate; its Verify only checks the AS
	if ownKey {
		k, err := handshake.GenerateStaticKey(nil)
		if err != nil {
			t.Fatal(err)
		}
		cfg.Static = k
	} else {
		cfg.Static = handshake.StaticKey{Public: victim.Cert.NoiseStatic.Public}
		rand.Read(cfg.Static.Private[:])
	}
	l, err := signaling.StartLogin(cfg, pki.RoleAS.ServiceFQDN(), victim.FQDN, messages.LoginRequest{Software: "mallory"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func attacker(t testing.TB, ip byte) *net.UDPConn {
	t.Helper()
	c, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, ip}), 0)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// replies reads what c receives for d.
func replies(c *net.UDPConn, d time.Duration) [][]byte {
	var out [][]byte
	buf := make([]byte, messages.MaxPacket)
	c.SetReadDeadline(time.Now().Add(d))
	for {
		n, err := c.Read(buf)
		if err != nil {
			return out
		}
		out = append(out, append([]byte(nil), buf[:n]...))
	}
}

// TestForgedLoginKeepsSession: logins forged from alice's public
// certificate, sent again and again, change nothing: alice keeps her
// session (her keepalives are answered), and bob can still set up a new
// tunnel to her. The forger gets at most a challenge it cannot answer.
func TestForgedLoginKeepsSession(t *testing.T) {
	s := startCloud(t, t.TempDir())
	defer s.Close(context.Background())
	asAddr := s.AS.Addrs()[0]
	alice, bob := newNode(t, s, "alice.example.cyphonic"), newNode(t, s, "bob.example.cyphonic")
	online(t, s, alice, messages.NATNone)
	online(t, s, bob, messages.NATNone)
	sid := alice.Reply.SessionID
	mallory := attacker(t, 66)

	const rounds = 10
	for range rounds {
		for _, own := range []bool{false, true} {
			l := forgedLogin(t, alice, own)
			for range 3 { // and its retransmissions
				if _, err := mallory.WriteToUDPAddrPort(l.Packet(), asAddr); err != nil {
					t.Fatal(err)
				}
			}
			for _, r := range replies(mallory, 100*time.Millisecond) {
				if _, err := l.Confirm(r, time.Now()); err == nil {
					t.Fatal("the forger answered the AS's challenge")
				}
			}
		}
	}
	// Every forged login has been handled (challenged, or dropped for a
	// key its certificate does not bind) before we look.
	c := &s.AS.Counters
	eventually(t, "the AS has handled every forged login", func() bool {
		return c.Challenged.Load() >= 2+rounds && c.Garbage.Load() >= rounds
	})
	if got := c.Accepted.Load(); got != 2 {
		t.Fatalf("AS accepted %d logins, want alice's and bob's only", got)
	}
	if ack, err := alice.Keepalive(); err != nil || ack.Observed != alice.Addr() {
		t.Fatalf("alice's keepalive after the forged logins: %+v %v", ack, err)
	}
	if n, err := s.Store().LookupSession(context.Background(), sid); err != nil || n.FQDN != alice.FQDN {
		t.Fatalf("alice's session %d after the forged logins: %+v %v", sid, n, err)
	}
	p, err := bob.Tunnel(alice.FQDN, false)
	if err != nil {
		t.Fatalf("bob -> alice after the forged logins: %v", err)
	}
	if p.PeerFQDN != alice.FQDN || len(p.Endpoints) == 0 || p.Endpoints[0] != alice.Addr() {
		t.Fatalf("path to alice %+v", p)
	}
	if ds := alice.Directions(); len(ds) != 1 || ds[0].PeerFQDN != bob.FQDN {
		t.Fatalf("alice's directions %+v", ds)
	}
}

// TestReplayedLoginNoAmplification: replaying a real login's packets (as
// an attacker would, with the victim's address as their source) never
// draws an answer larger than the packet, and a login packet too small to
// cover its answer draws none.
func TestReplayedLoginNoAmplification(t *testing.T) {
	s := startCloud(t, t.TempDir())
	defer s.Close(context.Background())
	asAddr := s.AS.Addrs()[0]
	alice := newNode(t, s, "alice.example.cyphonic")
	online(t, s, alice, messages.NATNone)
	login, confirm := alice.LoginPackets()
	if login == nil || confirm == nil {
		t.Fatal("no login packets recorded")
	}
	mallory := attacker(t, 67)

	// The smallest login one can build: unpadded, and its request's copy
	// of the certificate (which the AS does not check: it checks the
	// handshake's) cut to one byte. Before padding and the size floor, its
	// answer was larger than it.
	cfg := alice.cfg
	cfg.Prologue = handshake.PrologueLogin
	env, _ := messages.NewEnvelope(messages.NewMsgID(), alice.FQDN, time.Now(), messages.LoginRequest{CertDER: []byte{0x30}})
	app, _ := messages.Marshal(env)
	init, err := handshake.NewInitiator(cfg, pki.RoleAS.ServiceFQDN(), 0)
	if err != nil {
		t.Fatal(err)
	}
	msg1, err := init.Start(app, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	small := append([]byte{byte(messages.TypeLogin)}, msg1...)

	for _, tt := range []struct {
		name string
		pkt  []byte
	}{
		{"login packet", login},
		{"confirmation", confirm},
		{"minimal login", small},
	} {
		t.Run(tt.name, func(t *testing.T) {
			for range 5 {
				if _, err := mallory.WriteToUDPAddrPort(tt.pkt, asAddr); err != nil {
					t.Fatal(err)
				}
			}
			got := replies(mallory, 300*time.Millisecond)
			for _, r := range got {
				if len(r) > len(tt.pkt) {
					t.Errorf("a %d-byte replay drew a %d-byte answer", len(tt.pkt), len(r))
				}
			}
			t.Logf("%d-byte packet sent 5 times: %d answers", len(tt.pkt), len(got))
		})
	}
	if got := s.AS.Counters.Accepted.Load(); got != 1 {
		t.Fatalf("AS accepted %d logins, want 1", got)
	}
	if _, err := alice.Keepalive(); err != nil {
		t.Fatalf("alice's keepalive after the replays: %v", err)
	}
}

// flood sends forged logins for victim from n sources (127.0.0.base..) as
// fast as one goroutine can until stop is closed, and returns how many it
// sent. Each forged login is distinct (its own ID and ephemeral): one the
// AS has not seen costs it a certificate check and the DH of a challenge.
func flood(t testing.TB, victim *Node, to netip.AddrPort, base byte, n int, stop <-chan struct{}, sent *atomic.Uint64) *sync.WaitGroup {
	t.Helper()
	pkts := make([][]byte, 2048)
	for i := range pkts {
		pkts[i] = forgedLogin(t, victim, false).Packet()
	}
	socks := make([]*net.UDPConn, n)
	for i := range socks {
		socks[i] = attacker(t, base+byte(i))
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := socks[i%n].WriteToUDPAddrPort(pkts[i%len(pkts)], to); err == nil {
				sent.Add(1)
			}
		}
	})
	return &wg
}

// TestLoginFlood: forged logins at the rate one core can send, from 16
// sources, for a few seconds: a real node sending from its own address
// logs in within 2 s, alice (online before) keeps her session, and the
// AS's unproven state stays bounded.
func TestLoginFlood(t *testing.T) {
	if testing.Short() {
		t.Skip("floods the loopback for seconds")
	}
	s := startCloudWith(t, server.Config{})
	asAddr := s.AS.Addrs()[0]
	alice := newNode(t, s, "alice.example.cyphonic")
	online(t, s, alice, messages.NATNone)
	carol := nodeAt(t, s, "carol.example.cyphonic", 1)

	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)

	stop := make(chan struct{})
	var sent atomic.Uint64
	wg := flood(t, alice, asAddr, 100, 16, stop, &sent)
	var maxPending atomic.Int64
	var sampler sync.WaitGroup
	sampler.Go(func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(10 * time.Millisecond):
			}
			if p := int64(s.AS.Pending()); p > maxPending.Load() {
				maxPending.Store(p)
			}
		}
	})
	start := time.Now()
	time.Sleep(time.Second) // the flood is on
	t0 := time.Now()
	_, err := carol.Login(asAddr, false)
	latency := time.Since(t0)
	time.Sleep(time.Until(start.Add(3 * time.Second)))
	close(stop)
	wg.Wait()
	sampler.Wait()
	dur := time.Since(start)

	c := &s.AS.Counters
	rate := float64(sent.Load()) / dur.Seconds()
	t.Logf("flood %.0f logins/s for %v from 16 sources; carol logged in in %v; AS: challenged %d, limited %d, busy %d, full %d, duplicates %d, garbage %d, unanswered %d, max pending %d, sources %d, listener drops %d",
		rate, dur.Round(time.Millisecond), latency.Round(time.Millisecond), c.Challenged.Load(), c.Limited.Load(), c.Busy.Load(), c.Full.Load(),
		c.Duplicates.Load(), c.Garbage.Load(), c.Unanswered.Load(), maxPending.Load(), s.AS.Sources(), s.AS.Dropped())
	if err != nil {
		t.Fatalf("carol's login during the flood: %v", err)
	}
	if latency > 2*time.Second {
		t.Fatalf("carol's login took %v during the flood, want < 2 s", latency)
	}
	if got := c.Accepted.Load(); got != 2 {
		t.Fatalf("AS accepted %d logins, want alice's and carol's", got)
	}
	// What the flood may leave: the global budget's burst, then at most
	// each source's share while the AS is under load (a second's worth of
	// slack for the metering).
	if limit := int64(256 + 16*(2*dur.Seconds()+10+2)); maxPending.Load() > limit {
		t.Fatalf("%d logins pending during the flood, want at most %d", maxPending.Load(), limit)
	}
	if _, err := alice.Keepalive(); err != nil {
		t.Fatalf("alice's keepalive after the flood: %v", err)
	}
	runtime.GC()
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	t.Logf("heap in use %d MiB before the flood, %d MiB after", before.HeapInuse>>20, after.HeapInuse>>20)
}

// TestLoginFloodSpoofed: forged logins, each from a source address of its
// own that the attacker does not hold (a raw socket: no answer can reach
// it), at 3k/s - half as much again as the AS's login budget, and well
// within what the race-instrumented AS reads without loss on two shared
// cores - for 4 s. Per-source limits cannot hold such a flood, so before the login cookie it took the
// whole budget, and carol's login never got through. Now the loaded AS
// answers every login without a valid mac2 with a cookie and does no
// work for it: carol, who receives at her address, proves it with her next
// copy and logs in within 2 s, and the flood reaches the Diffie-Hellman
// only until the AS notices the load.
func TestLoginFloodSpoofed(t *testing.T) {
	if testing.Short() {
		t.Skip("floods the loopback for seconds")
	}
	systest.Require(t, systest.Root()) // a raw socket
	s := startCloudWith(t, server.Config{})
	asAddr := s.AS.Addrs()[0]
	alice := newNode(t, s, "alice.example.cyphonic")
	online(t, s, alice, messages.NATNone)
	carol := nodeAt(t, s, "carol.example.cyphonic", 1)

	pkts := make([][]byte, 512) // distinct: each one the AS has not seen costs it a DH
	for i := range pkts {
		pkts[i] = forgedLogin(t, alice, false).Packet()
	}
	spoof, err := attack.NewSpoofer()
	if err != nil {
		t.Fatal(err)
	}
	defer spoof.Close()
	const rate, dur = 3000, 4 * time.Second
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var sent atomic.Uint64
	var wg sync.WaitGroup
	wg.Go(func() {
		sent.Store(spoof.FloodSpoofed(ctx, asAddr, pkts, attack.LoopbackSource, rate*4, dur, time.Second/rate))
	})

	// The flood's first logins reach the DH until the AS sees the load
	// (its budget at half); a second later their challenges are done and
	// the flood is what remains.
	for deadline := time.Now().Add(10 * time.Second); !s.AS.UnderLoad(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the AS is not under load 10 s into the flood: the test tests nothing")
		}
	}
	time.Sleep(time.Second)
	t0 := time.Now()
	_, err = carol.Login(asAddr, false)
	latency := time.Since(t0)
	wg.Wait()

	c := &s.AS.Counters
	t.Logf("spoofed flood: %d logins in %v; carol logged in in %v (err %v); AS: cookies %d, challenged %d, limited %d, busy %d, full %d, garbage %d, pending %d",
		sent.Load(), dur, latency.Round(time.Millisecond), err, c.Cookies.Load(), c.Challenged.Load(), c.Limited.Load(), c.Busy.Load(), c.Full.Load(), c.Garbage.Load(), s.AS.Pending())
	if err != nil {
		t.Fatalf("carol's login during the spoofed flood: %v", err)
	}
	if latency > 2*time.Second {
		t.Fatalf("carol's login took %v during the spoofed flood, want < 2 s", latency)
	}
	if sent.Load() < uint64(rate*dur/time.Second)/2 {
		t.Fatalf("the flood sent only %d logins: the test did not load the AS", sent.Load())
	}
	// The flood reaches the DH only until the budget falls to half (its
	// burst), and what the busy challenge slots let through meanwhile.
	if got, limit := c.Challenged.Load(), uint64(256+64); got > limit+2 {
		t.Fatalf("%d logins challenged, want at most the burst before the load was seen (%d) and alice's and carol's", got, limit)
	}
	if got := c.Cookies.Load(); got < sent.Load()/2 {
		t.Fatalf("%d of %d spoofed logins answered with a cookie", got, sent.Load())
	}
	if got := c.Accepted.Load(); got != 2 {
		t.Fatalf("AS accepted %d logins, want alice's and carol's", got)
	}
	if _, err := alice.Keepalive(); err != nil {
		t.Fatalf("alice's keepalive after the flood: %v", err)
	}
}
