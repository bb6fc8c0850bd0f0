package nodecloud

import (
	"context"
	"encoding/binary"
	"net/netip"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/cyphonic/cyphonic-go/actors/dataplane/hold"
)

// recvSeqs collects the sequence numbers of the ipv4UDP packets n's
// application receives, until ctx ends.
func recvSeqs(ctx context.Context, n *testNode) <-chan uint32 {
	ch := make(chan uint32, 1024)
	go func() {
		defer close(ch)
		for {
			pkt, err := n.app.Recv(ctx)
			if err != nil {
				return
			}
			if len(pkt) == 32 {
				select {
				case ch <- binary.BigEndian.Uint32(pkt[28:]):
				default:
				}
			}
		}
	}()
	return ch
}

// TestTunnelOnFirstPacket: alice sends packets to bob's VIP with no DNS
// query and no tunnel. The first one makes alice ask NMS who holds the
// VIP; the packets wait in the hold queue and all arrive once the tunnel
// is up, in order. Before the hold queue each of them was dropped as
// no-route and no tunnel ever came.
func TestTunnelOnFirstPacket(t *testing.T) {
	c := startCloud(t, t.TempDir(), nil)
	defer c.close(t)
	alice := startNode(t, c, "alice.example.cyphonic")
	bob := startNode(t, c, "bob.example.cyphonic")
	eventually(t, "alice online", online(alice))
	eventually(t, "bob online", online(bob))
	if _, ok := peerState(alice, bob.FQDN()); ok {
		t.Fatal("alice has a tunnel to bob before any packet")
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	got := recvSeqs(ctx, bob)
	src, dst := alice.Session().Status().VIP4, bob.Session().Status().VIP4
	const n = 5
	for seq := uint32(1); seq <= n; seq++ { // sent once each, back to back
		if err := alice.app.Send(ctx, ipv4UDP(src, dst, seq)); err != nil {
			t.Fatal(err)
		}
	}
	var seqs []uint32
	deadline := time.After(10 * time.Second)
	for len(seqs) < n {
		select {
		case s := <-got:
			seqs = append(seqs, s)
		case <-deadline:
			t.Fatalf("bob received %v of %d packets; alice's drops %v, hold %+v", seqs, n, alice.Dataplane().Drops(), alice.Dataplane().HoldStats())
		}
	}
	if want := []uint32{1, 2, 3, 4, 5}; !slices.Equal(seqs, want) {
		t.Fatalf("bob received %v, want %v", seqs, want)
	}
	hs := alice.Dataplane().HoldStats()
	t.Logf("alice's hold queue: %+v; NMS VIP lookups: %d", hs, c.srv.NMS.Counters.VIPLookups.Load())
	// Each packet was held once (while there was no route, or while the
	// tunnel was handshaking) and delivered; one lookup asked for them all.
	if hs.Held != n || hs.Delivered != n || hs.Lookups != 1 {
		t.Fatalf("hold stats %+v, want %d held, %d delivered, 1 lookup", hs, n, n)
	}
	if l := c.srv.NMS.Counters.VIPLookups.Load(); l != 1 {
		t.Fatalf("NMS answered %d VIP lookups, want 1", l)
	}
	if d := alice.Dataplane().Drops(); d["no-route"]+d["hold-full"]+d["hold-expired"]+d["unknown-vip"] != 0 {
		t.Fatalf("alice dropped packets waiting for the tunnel: %v", d)
	}
	// The tunnel is the one a DNS query would have set up: both ways.
	roundTrip(t, bob, alice, 100)
	roundTrip(t, alice, bob, 101)
}

// TestFirstPacketUnknownVIPs: an application scans addresses in the
// overlay prefix that no node holds. NMS is asked about at most a bounded
// number of them, every packet is a counted drop, an address NMS said no
// one holds is not asked about again, and a real peer's tunnel still
// comes up on its first packet right after.
func TestFirstPacketUnknownVIPs(t *testing.T) {
	c := startCloud(t, t.TempDir(), nil)
	defer c.close(t)
	alice := startNode(t, c, "alice.example.cyphonic")
	bob := startNode(t, c, "bob.example.cyphonic")
	eventually(t, "alice online", online(alice))
	eventually(t, "bob online", online(bob))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	src := alice.Session().Status().VIP4
	unused := func(i int) netip.Addr { return netip.AddrFrom4([4]byte{100, 127, byte(i >> 8), byte(i)}) }
	const scan, copies = 500, 3
	start := time.Now()
	for i := range scan {
		for k := range copies {
			if err := alice.app.Send(ctx, ipv4UDP(src, unused(i), uint32(k))); err != nil {
				t.Fatal(err)
			}
		}
	}
	sent := uint64(scan * copies)
	dp := alice.Dataplane()
	dropped := func() uint64 {
		d := dp.Drops()
		return d["hold-full"] + d["unknown-vip"] + d["hold-expired"] + d["no-route"] + d["lookup-rate"]
	}
	// Every packet is accounted for: dropped at once (queue full), or
	// held and dropped when NMS answers that nobody holds the address.
	eventually(t, "every scan packet dropped and counted", func() bool { return dropped() == sent })
	elapsed := time.Since(start)
	lookups := c.srv.NMS.Counters.VIPLookups.Load()
	windows := 1 + int(elapsed/hold.DefaultRetry) + 1 // a burst, then a refill per Retry
	t.Logf("scan of %d addresses (%d packets) in %v: %d NMS lookups; drops %v", scan, sent, elapsed, lookups, dp.Drops())
	if max := uint64(windows * hold.DefaultMaxDests); lookups > max || lookups == 0 {
		t.Fatalf("%d NMS lookups for the scan, want 1..%d", lookups, max)
	}
	if hs := dp.HoldStats(); hs.Lookups != lookups || hs.Delivered != 0 {
		t.Fatalf("hold stats %+v, NMS lookups %d", hs, lookups)
	}
	if dp.Drops()["unknown-vip"] == 0 {
		t.Fatal("no drop counted as unknown-vip")
	}

	// The first address scanned was asked about (the queue was empty):
	// NMS's answer that nobody holds it refuses its packets now, without
	// asking again.
	before, unk := c.srv.NMS.Counters.VIPLookups.Load(), dp.Drops()["unknown-vip"]
	for k := range 5 {
		if err := alice.app.Send(ctx, ipv4UDP(src, unused(0), uint32(10+k))); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, "repeat packets refused", func() bool { return dp.Drops()["unknown-vip"] == unk+5 })
	time.Sleep(100 * time.Millisecond) // a lookup, had one started, would have reached NMS
	if after := c.srv.NMS.Counters.VIPLookups.Load(); after != before {
		t.Fatalf("an address NMS said nobody holds was looked up again (%d -> %d lookups)", before, after)
	}

	// The scan leaves room for a real peer: its first packets get
	// through once the lookup rate allows (an application resends, as a
	// TCP SYN is).
	got := recvSeqs(ctx, bob)
	dst := bob.Session().Status().VIP4
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(2 * hold.DefaultRetry)
	for {
		if err := alice.app.Send(ctx, ipv4UDP(src, dst, 77)); err != nil {
			t.Fatal(err)
		}
		select {
		case <-got:
			return
		case <-tick.C:
		case <-deadline:
			t.Fatalf("bob's packets after the scan did not arrive; drops %v", dp.Drops())
		}
	}
}

// TestFirstPacketLatency measures the time from a first packet to a VIP
// with no tunnel to the first reply (bob's application echoes), over
// several runs, each after both sides closed the tunnel (as after idle).
// It only reports: BENCHMARKS.md, "Tunnel on first packet".
//
//	CYPHONIC_FIRSTPKT_RUNS=20 go test ./test/nodecloud -run TestFirstPacketLatency -v -count 1
func TestFirstPacketLatency(t *testing.T) {
	runs := 10
	if s := os.Getenv("CYPHONIC_FIRSTPKT_RUNS"); s != "" {
		var n int
		for _, ch := range s {
			n = n*10 + int(ch-'0')
		}
		if n > 0 {
			runs = n
		}
	}
	c := startCloud(t, t.TempDir(), nil)
	defer c.close(t)
	alice := startNode(t, c, "alice.example.cyphonic")
	bob := startNode(t, c, "bob.example.cyphonic")
	eventually(t, "alice online", online(alice))
	eventually(t, "bob online", online(bob))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	src, dst := alice.Session().Status().VIP4, bob.Session().Status().VIP4
	go func() { // bob's application echoes every packet
		for {
			pkt, err := bob.app.Recv(ctx)
			if err != nil {
				return
			}
			if len(pkt) == 32 {
				_ = bob.app.Send(ctx, ipv4UDP(dst, src, binary.BigEndian.Uint32(pkt[28:])))
			}
		}
	}()
	replies := recvSeqs(ctx, alice)
	var times []time.Duration
	for run := range runs {
		for _, n := range []*testNode{alice, bob} {
			other := bob.FQDN()
			if n == bob {
				other = alice.FQDN()
			}
			_ = n.Dataplane().Close(other)
			eventually(t, "tunnel closed", func() bool { _, ok := peerState(n, other); return !ok })
		}
		seq := uint32(1000 + run)
		t0 := time.Now()
		if err := alice.app.Send(ctx, ipv4UDP(src, dst, seq)); err != nil {
			t.Fatal(err)
		}
		timeout := time.After(10 * time.Second)
	wait:
		for {
			select {
			case s := <-replies:
				if s == seq {
					times = append(times, time.Since(t0))
					t.Logf("run %d: %v", run, times[len(times)-1])
					break wait
				}
			case <-timeout:
				t.Fatalf("run %d: no reply; drops %v", run, alice.Dataplane().Drops())
			}
		}
	}
	slices.Sort(times)
	t.Logf("first packet to a VIP -> first reply, %d runs: median %v, max %v, min %v",
		len(times), times[len(times)/2], times[len(times)-1], times[0])
}
