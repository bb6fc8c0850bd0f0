package dataplane_test

import (
	"context"
	"fmt"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/cyphonic/cyphonic-go/actors/dataplane"
	"github.com/cyphonic/cyphonic-go/actors/leaktest"
	"github.com/cyphonic/cyphonic-go/tun"
)

// withQueues gives a node's data plane queues-1 further TUN queues (each an
// in-memory device of its own, as each queue of a multi-queue TUN is a file
// of its own) and returns every queue's application side, the node's own
// first once it is known (see queueApps).
func withQueues(queues int, apps *[]*tun.MemApp) func(*dataplane.Config) {
	return func(c *dataplane.Config) {
		for range queues - 1 {
			dev, app := tun.NewMemPair(c.Device.Name(), mtu, 4096)
			c.Queues = append(c.Queues, dev)
			*apps = append(*apps, app)
		}
	}
}

// icmpEcho builds an ICMP echo request from src to dst.
func icmpEcho(src, dst netip.Addr) []byte {
	p := ipv4(src, dst, 0, 64)
	p[9], p[20] = 1, 8 // ICMP, echo request
	return p
}

// TestTUNQueues: with a TUN of several queues, each peer's packets other
// than ICMP are written on one queue, the bulk queues taken by the peers in
// turn, the ICMP of every peer only on the last queue (with one queue, all
// on it), each in order; and every queue's reader carries what the host
// sends on that queue back through the tunnel.
func TestTUNQueues(t *testing.T) {
	for _, tc := range []struct {
		queues          int
		bob, carol, icp int // the queue of bob's bulk, carol's bulk, everyone's ICMP
	}{
		{1, 0, 0, 0},
		{2, 0, 0, 1},
		{3, 0, 1, 2},
	} {
		t.Run(fmt.Sprintf("queues=%d", tc.queues), func(t *testing.T) {
			f := newPKI(t)
			var more []*tun.MemApp
			alice := newNode(t, f, "alice", 1, withQueues(tc.queues, &more))
			apps := append([]*tun.MemApp{alice.app}, more...)
			bob := newNode(t, f, "bob", 2, nil)
			carol := newNode(t, f, "carol", 3, nil)
			connect(t, bob, alice, alice.addr, bob.addr) // alice's first peer
			connect(t, carol, alice, alice.addr, carol.addr)

			ctx, cancel := context.WithTimeout(context.Background(), failsafe)
			defer cancel()
			type got struct {
				queue int
				pkt   []byte
			}
			arrived := make(chan got, 1024)
			for q, app := range apps {
				go func() {
					for {
						p, err := app.Recv(ctx)
						if err != nil {
							return
						}
						arrived <- got{q, p}
					}
				}()
			}
			const rounds = 40
			for i := range uint64(rounds) {
				for _, n := range []*node{bob, carol} {
					if err := n.app.Send(ctx, ipv4(n.vip4, alice.vip4, i, 200)); err != nil {
						t.Fatal(err)
					}
					if i%4 == 0 {
						if err := n.app.Send(ctx, icmpEcho(n.vip4, alice.vip4)); err != nil {
							t.Fatal(err)
						}
					}
				}
			}
			want := map[netip.Addr]int{bob.vip4: tc.bob, carol.vip4: tc.carol}
			next := map[netip.Addr]uint64{}
			for seen := 0; seen < 2*(rounds+rounds/4); seen++ {
				var g got
				select {
				case g = <-arrived:
				case <-ctx.Done():
					t.Fatalf("%d packets arrived of %d; next %v; drops %v %v", seen, 2*(rounds+rounds/4), next, alice.dp.Drops(), alice.dp.Status())
				}
				src := netip.AddrFrom4([4]byte(g.pkt[12:16]))
				if g.pkt[9] == 1 {
					if g.queue != tc.icp {
						t.Fatalf("an ICMP packet of %v on queue %d, want %d", src, g.queue, tc.icp)
					}
					continue
				}
				if g.queue != want[src] {
					t.Fatalf("a packet of %v on queue %d, want %d", src, g.queue, want[src])
				}
				if s := seqOf(g.pkt); s != next[src] {
					t.Fatalf("%v's packets out of order: %d after %d", src, s, next[src])
				}
				next[src]++
			}

			// What the host sends on any queue goes out through it.
			for q, app := range apps {
				if err := app.Send(ctx, ipv4(alice.vip4, bob.vip4, uint64(q), 100)); err != nil {
					t.Fatal(err)
				}
			}
			back := map[uint64]bool{}
			for len(back) < len(apps) {
				p, err := bob.app.Recv(ctx)
				if err != nil {
					t.Fatalf("bob got %v of alice's %d queues: %v", back, len(apps), err)
				}
				back[seqOf(p)] = true
			}
		})
	}
}

// TestTUNQueuesStop: Stop ends every queue's reader and writer. Each queue
// is a device of its own whose Read only its own Close wakes (as each
// queue of a real multi-queue TUN is a file of its own), so a data plane
// that closed only its first queue would leave the others' readers
// blocked: Stop would time out and the goroutines leak.
func TestTUNQueuesStop(t *testing.T) {
	for _, queues := range []int{2, 3} {
		t.Run(fmt.Sprintf("queues=%d", queues), func(t *testing.T) {
			before := goleak.IgnoreCurrent()
			f := newPKI(t)
			var more []*tun.MemApp
			alice := newNode(t, f, "alice", 1, withQueues(queues, &more))
			bob := newNode(t, f, "bob", 2, nil)
			connect(t, bob, alice, alice.addr, bob.addr)
			stream(t, bob, alice, 0, 100, 16)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := alice.dp.Stop(ctx); err != nil {
				t.Fatalf("stop: %v", err)
			}
			alice.stop()
			bob.stop()
			goleak.VerifyNone(t, leaktest.Options(before)...)
		})
	}
}

// malformedDevice is a TUN device whose reads also report super-packets the
// device dropped (tun.MalformedCounter), as the offload-raw backend does.
type malformedDevice struct {
	tun.Device
	n atomic.Uint64
}

func (d *malformedDevice) Malformed() uint64 { return d.n.Load() }

// TestTUNMalformedCounted: what the TUN device dropped as malformed shows
// in the data plane's drops as tun-malformed, each drop once, however many
// reads pass between the device's counts.
func TestTUNMalformedCounted(t *testing.T) {
	f := newPKI(t)
	var dev *malformedDevice
	alice := newNode(t, f, "alice", 1, func(c *dataplane.Config) {
		dev = &malformedDevice{Device: c.Device}
		c.Device = dev
	})
	other := netip.MustParseAddr("10.99.0.1")
	for i, step := range []struct{ add, want uint64 }{{5, 5}, {0, 5}, {2, 7}} {
		dev.n.Add(step.add)
		// A read returns only with a packet: send one to an address no
		// peer has, and wait for its no-route drop, so the read that saw
		// the device's count has been taken.
		if err := alice.app.Send(context.Background(), ipv4(alice.vip4, other, uint64(i), 100)); err != nil {
			t.Fatal(err)
		}
		waitCount(t, "no-route drops", uint64(i+1), func() uint64 { return alice.dp.Drops()["no-route"] })
		if got := alice.dp.Drops()["tun-malformed"]; got != step.want {
			t.Fatalf("after read %d: tun-malformed = %d, want %d", i+1, got, step.want)
		}
	}
}
