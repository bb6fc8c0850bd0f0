package dataplane

import (
	"net"
	"testing"
	"time"

	"github.com/cyphonic/cyphonic-go/actors/supervise"
	"github.com/cyphonic/cyphonic-go/transport/udp"
)

// TestUDPWriterCoalesces: the socket writer sends several peers' queued
// batches with one WriteBatch (up to udpWriteBatches batches or about
// maxBatch datagrams), in fair-queue order, each datagram to its own
// peer; counters and in-flight slots come back per batch. One sendmmsg per
// batch made the writer a serial stage of thousands of tiny writes a
// second under many pushing peers.
func TestUDPWriterCoalesces(t *testing.T) {
	for _, tc := range []struct {
		name         string
		peers, round int // batches: peers × rounds, queued before the writer runs
		per          int // datagrams per batch
		writes       int // WriteBatch calls wanted
	}{
		{"one batch alone leaves at once", 1, 1, 2, 1},
		{"ten peers' ACK batches in two writes", 10, 1, 2, 2}, // udpWriteBatches = 8 per write
		{"three peers, two rounds, in one write", 3, 2, 2, 1},
		{"big batches: a write stops at about maxBatch", 3, 1, 40, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bind, err := udp.ListenBind("127.0.0.1:0", "")
			if err != nil {
				t.Fatal(err)
			}
			defer bind.Close()
			d := &Dataplane{cfg: Config{Bind: bind}}
			d.sojourn.reset() // counts the writes
			pool := newBatchPool(256)
			q := newFairQueue(1)
			inflight := supervise.NewLimiter(tc.peers * tc.round)
			sinks := make([]*net.UDPConn, tc.peers)
			flows := make([]*flowQueue, tc.peers)
			stats := make([]*peerStats, tc.peers)
			for p := range tc.peers {
				c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				sinks[p], flows[p], stats[p] = c, newFlow(4), &peerStats{}
			}
			for r := range tc.round {
				for p := range tc.peers {
					b := pool.Get()
					bufs, sizes, _ := b.ReadSlices(0)
					for i := range tc.per {
						bufs[i][0], bufs[i][1], bufs[i][2] = byte(p), byte(r), byte(i)
						sizes[i] = 100
					}
					b.Filled(tc.per, 0)
					b.born, b.stats = time.Now(), stats[p]
					b.route = peerRoute{Addr: sinks[p].LocalAddr().(*net.UDPAddr).AddrPort()}
					inflight.Acquire()
					b.track(inflight)
					if !q.Push(flows[p], b) {
						t.Fatal("push refused")
					}
				}
			}
			w := udpWriter{d: d, maxDelay: time.Minute}
			w.drain(q)

			writes := 0
			for c := range nClasses {
				writes += int(d.sojourn.h[stUDPWrite][c].n.Load())
			}
			if writes != tc.writes {
				t.Errorf("%d WriteBatch calls, want %d", writes, tc.writes)
			}
			buf := make([]byte, 256)
			for p, c := range sinks {
				_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
				for r := range tc.round {
					for i := range tc.per {
						n, err := c.Read(buf)
						if err != nil {
							t.Fatalf("peer %d: datagram %d/%d: %v", p, r, i, err)
						}
						if n != 100 || buf[0] != byte(p) || buf[1] != byte(r) || buf[2] != byte(i) {
							t.Fatalf("peer %d got %d bytes %v, want round %d datagram %d", p, n, buf[:3], r, i)
						}
					}
				}
				want := uint64(tc.round * tc.per)
				if got := stats[p].TxPackets.Load(); got != want || stats[p].TxBytes.Load() != 100*want {
					t.Errorf("peer %d: tx %d packets %d bytes, want %d, %d", p, got, stats[p].TxBytes.Load(), want, 100*want)
				}
			}
			if !inflight.Acquire() {
				t.Fatal("in-flight slots not given back")
			}
		})
	}
}
