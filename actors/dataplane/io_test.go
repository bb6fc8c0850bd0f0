package dataplane

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cyphonic/cyphonic-go/actors/dataplane/batch"
	"github.com/cyphonic/cyphonic-go/tun"
)

func TestBornAt(t *testing.T) {
	now := time.Now()
	for _, tc := range []struct {
		name  string
		stamp int64
		want  time.Time
	}{
		{"no stamp", 0, now},
		{"from the future", now.UnixNano() + int64(time.Second), now},
		{"waited 3ms", now.Add(-3 * time.Millisecond).UnixNano(), now.Add(-3 * time.Millisecond)},
	} {
		if got := bornAt(tc.stamp, now); !got.Equal(tc.want) {
			t.Errorf("%s: bornAt = %v, want %v", tc.name, got, tc.want)
		}
	}
}

// TestTunWriterCoalesces: one write takes whole batches of several peers,
// in fair order, until it holds about MaxBatch packets; the rest waits for
// the next write. Every batch is released (its in-flight count returned).
func TestTunWriterCoalesces(t *testing.T) {
	dev, app := tun.NewMemPair("t0", 1420, 256)
	defer dev.Close()
	pool := batch.NewPool(128)
	q := batch.NewFairQueue(1)
	var inflight atomic.Int32
	flows := []*batch.Flow{batch.NewFlow(4), batch.NewFlow(4), batch.NewFlow(4)}
	for round := range 2 {
		for peer, f := range flows {
			b := pool.Get()
			bufs, sizes, _ := b.ReadSlices(0)
			for i := range 30 {
				bufs[i][0] = 0x45
				bufs[i][1] = byte(peer)
				bufs[i][2] = byte(round)
				sizes[i] = 20
			}
			b.Filled(30, 0)
			b.Born, b.Stats = time.Now(), &batch.Stats{}
			inflight.Add(1)
			b.Track(&inflight)
			if !q.Push(f, b) {
				t.Fatal("push refused")
			}
		}
	}
	w := tunWriter{dev: dev, global: &batch.Counters{}, maxDelay: time.Minute}
	var writes [][2]int // per write: packets, and the peer of its first packet
	for w.fill(q) {
		n := len(w.pkts)
		w.flush()
		first := -1
		for i := range n {
			pkt, err := app.Recv(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if i == 0 {
				first = int(pkt[1])
			}
		}
		writes = append(writes, [2]int{n, first})
	}
	// 6 batches of 30: writes of 90 (3 batches: the third crosses 64), 90.
	want := [][2]int{{90, 0}, {90, 0}}
	if len(writes) != len(want) || writes[0] != want[0] || writes[1] != want[1] {
		t.Fatalf("writes (packets, first peer) = %v, want %v", writes, want)
	}
	if n := inflight.Load(); n != 0 {
		t.Fatalf("%d batches not released", n)
	}
}
